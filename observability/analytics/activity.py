"""Reading the activity feed (`activity_events`): filtered and paged listings, counts over time,
and who has read what.

Rows are written by one writer, `observability.auth.audit_event` (and by ingest for events bots
log); this module only reads them, plus the per-user read marks (`activity_reads`). Marking as
read is a state change, so `mark_read` checks the `activity.mark_read` permission itself. The VIP
view of source document 004 orders VIP accounts' events and high/critical severities first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability import auth
from observability.analytics.window import chart_granularity
from observability.store import Store, schema
from observability.store.sqlhelpers import GRANULARITIES, epoch_bucket
from observability.timeutil import Window, resolve_now, window_bounds

HIGH_SEVERITIES = ("high", "critical")
FEED_COLUMNS = ("id", "ts", "severity", "type", "category", "title", "description", "account", "vip",
                "conversation", "read")  # fmt: skip


def _read_by(user_name: str | None) -> sa.Exists:
    a, r = schema.activity_events, schema.activity_reads
    return sa.select(r.c.event_id).where(r.c.event_id == a.c.id, r.c.user_name == (user_name or "")).exists()


def _in_window(window: Window, now: datetime | None) -> sa.ColumnElement[bool]:
    """Events in [now - window, now] (the feed shows an event stamped exactly now)."""
    a = schema.activity_events
    start, end = window_bounds(window, now)
    return sa.and_(a.c.ts >= start, a.c.ts <= end)


def _filters(
    window: Window,
    now: datetime | None,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
) -> list[sa.ColumnElement[bool]]:
    """The feed's filters: the one definition the page, its unread count and its chart share."""
    a = schema.activity_events
    conds = [_in_window(window, now)]
    if severities:
        conds.append(a.c.severity.in_(list(severities)))
    if event_type:
        conds.append(a.c.event_type == event_type)
    if account_id:
        conds.append(a.c.account_id == account_id)
    return conds


def feed_filters(store: Store, now: datetime | None = None, days: int = 7) -> dict[str, list[str]]:
    """Distinct event types and accounts seen in the feed's last `days` days."""
    a = schema.activity_events
    since = resolve_now(now) - timedelta(days=days)
    with store.connect() as conn:
        types = [
            r[0] for r in conn.execute(sa.select(a.c.event_type).where(a.c.ts >= since).distinct()) if r[0]
        ]
        accounts = [
            r[0] for r in conn.execute(sa.select(a.c.account_id).where(a.c.ts >= since).distinct()) if r[0]
        ]
    return {"types": sorted(types), "accounts": sorted(accounts)}


def feed_page(
    store: Store,
    user_name: str | None,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
    unread_only: bool = False,
    page: int = 1,
    page_size: int = 50,
    vip_first: bool = False,
    window: Window = "7d",
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the feed, newest first (keys: FEED_COLUMNS, `read` for `user_name`), and the
    number of events matching the filters. `vip_first` orders VIP accounts' events and high and
    critical severities first."""
    a, acc = schema.activity_events, schema.accounts
    page_size = max(1, min(int(page_size), 200))
    page = max(1, int(page))
    read = _read_by(user_name)
    conds = _filters(window, now, severities, event_type, account_id)
    if unread_only:
        conds.append(~read)
    where = sa.and_(*conds)
    vip = sa.func.coalesce(acc.c.vip, sa.false())
    cols = [a.c.id, a.c.ts, a.c.severity, a.c.event_type, a.c.category, a.c.title, a.c.description,
            a.c.account_id, vip.label("vip"), a.c.conversation_id, read.label("read")]  # fmt: skip
    order = [a.c.ts.desc(), a.c.id]
    if vip_first:
        high = sa.case((a.c.severity.in_(HIGH_SEVERITIES), 0), else_=1)
        order = [sa.case((vip == sa.true(), 0), else_=1), high, *order]
    stmt = (
        sa.select(*cols).select_from(a.outerjoin(acc, acc.c.id == a.c.account_id))
        .where(where).order_by(*order).limit(page_size).offset((page - 1) * page_size)
    )  # fmt: skip
    with store.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(a).where(where)).scalar() or 0)
        rows = [dict(zip(FEED_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]
    for row in rows:
        row["vip"], row["read"] = bool(row["vip"]), bool(row["read"])
    return rows, total


def severity_counts(
    store: Store,
    window: Window = "24h",
    now: datetime | None = None,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
) -> list[dict[str, Any]]:
    """Events per chart bucket and severity over the window and the feed's filters, oldest first:
    `ts` (bucket start, epoch seconds), `severity`, `events`."""
    a = schema.activity_events
    b = epoch_bucket(store, a.c.ts, GRANULARITIES[chart_granularity(window)]).label("ts")
    stmt = sa.select(b, a.c.severity, sa.func.count()).where(
        *_filters(window, now, severities, event_type, account_id)
    )
    with store.connect() as conn:
        rows = conn.execute(stmt.group_by(sa.literal_column("1"), a.c.severity)).all()
    return sorted(({"ts": int(r[0]), "severity": r[1], "events": int(r[2])} for r in rows),
                  key=lambda r: r["ts"])  # fmt: skip


def unread_count(
    store: Store,
    user_name: str | None,
    window: Window = "7d",
    now: datetime | None = None,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
) -> int:
    """Events of the window (and the feed's filters) this user has not marked as read: the
    page's "Unread in range" (catalog `unread_events`)."""
    a = schema.activity_events
    where = [*_filters(window, now, severities, event_type, account_id), ~_read_by(user_name)]
    with store.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(a).where(*where)).scalar() or 0)


def mark_read(store: Store, user_name: str, event_ids: Iterable[str], now: datetime | None = None) -> int:
    """Mark events as read for this user (permission `activity.mark_read`); returns how many of the
    ids name an event: an id no event has is ignored (it was stored, of any length, and counted).
    Marks are per user: nobody else's unread count changes."""
    user = auth.authorize(store, user_name, "activity.mark_read")
    ids = sorted({str(i) for i in event_ids if i and len(str(i)) <= MAX_EVENT_ID})
    if not ids:
        return 0
    now = resolve_now(now)
    e = schema.activity_events
    with store.begin() as conn:
        known = conn.execute(sa.select(e.c.id).where(e.c.id.in_(ids))).scalars().all()
        if known:
            store.insert_ignore(conn, schema.activity_reads, ("event_id", "user_name", "read_at"),
                                [(i, user.name, now) for i in sorted(known)])  # fmt: skip
    return len(known)


MAX_EVENT_ID = 64  # an activity event's id (events.FIELD_LIMITS)


def feed_after(
    store: Store,
    user_name: str | None,
    cursor: tuple[datetime, str] | None = None,
    limit: int = 50,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None]:
    """Keyset paging for the API (newest first): the events after `cursor` (the (ts, id) of the
    last event of the previous page) and the cursor of this page's last event, None at the end.
    Unlike offset paging, a page does not shift when new events arrive meanwhile."""
    a, acc = schema.activity_events, schema.accounts
    limit = max(1, min(int(limit), 200))
    read = _read_by(user_name)
    conds: list[sa.ColumnElement[bool]] = []
    if cursor is not None:
        ts, eid = cursor
        conds.append(sa.or_(a.c.ts < ts, sa.and_(a.c.ts == ts, a.c.id > eid)))
    if severities:
        conds.append(a.c.severity.in_(list(severities)))
    if event_type:
        conds.append(a.c.event_type == event_type)
    if account_id:
        conds.append(a.c.account_id == account_id)
    vip = sa.func.coalesce(acc.c.vip, sa.false())
    cols = [a.c.id, a.c.ts, a.c.severity, a.c.event_type, a.c.category, a.c.title, a.c.description,
            a.c.account_id, vip.label("vip"), a.c.conversation_id, read.label("read")]  # fmt: skip
    stmt = (
        sa.select(*cols).select_from(a.outerjoin(acc, acc.c.id == a.c.account_id))
        .where(sa.and_(sa.true(), *conds)).order_by(a.c.ts.desc(), a.c.id).limit(limit + 1)
    )  # fmt: skip
    with store.connect() as conn:
        rows = [dict(zip(FEED_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["vip"], row["read"] = bool(row["vip"]), bool(row["read"])
    return rows, ((rows[-1]["ts"], rows[-1]["id"]) if more and rows else None)


def events_since(
    store: Store, since: datetime, limit: int = 500, *, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Events stamped in [since, until] (until: no end), oldest first, at most `limit`: what the
    API's WebSocket hubs poll when there is no Redis (they also look back a little, `until` set, and
    skip ids they have sent, because a change's event may commit a moment after a later one)."""
    a = schema.activity_events
    cols = [a.c.id, a.c.ts, a.c.severity, a.c.event_type, a.c.category, a.c.title, a.c.description,
            a.c.account_id, a.c.conversation_id, a.c.user_id, a.c.metadata]  # fmt: skip
    cond = a.c.ts >= since if until is None else sa.and_(a.c.ts >= since, a.c.ts <= until)
    stmt = sa.select(*cols).where(cond).order_by(a.c.ts, a.c.id).limit(limit)
    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]
