"""What the console reads about conversations and people's actions on them: the conversation list
(`browse_conversations`: server-side filters, true counts and keyset paging over all of them;
`list_conversations`: held and stopped ones first, for the Emergency page), a transcript, and the
two audit trails.

Reads only: the audit rows are append-only, and this package offers no function that edits or
deletes `interventions` or `emergency_actions`. Times come back timezone-aware (UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.conversation_state import STATE_HUMAN, STATE_STOPPED, shown_state
from observability.redaction import pseudonymize_id
from observability.store import Store, schema
from observability.store.control_state import active_where, system_stopped
from observability.timeutil import as_aware


def _columns() -> list[Any]:
    c, a = schema.conversations, schema.accounts
    return [
        c.c.id,
        c.c.bot,
        c.c.account_id,
        a.c.name.label("account_name"),
        sa.func.coalesce(a.c.vip, sa.false()).label("vip"),
        c.c.state,
        c.c.operator,
        c.c.control_priority,
        c.c.control_since,
        c.c.started_at,
        c.c.last_activity_at,
        c.c.quality_score,
        c.c.sentiment,
        c.c.sentiment_trend,
        c.c.engagement,
        c.c.topic_drift,
        c.c.resolved,
    ]


def _filtered(
    query: sa.Select,
    stopped_all: bool,
    states: Sequence[str] | None,
    search: str | None,
    bots: Sequence[str] | None = None,
    vip: bool | None = None,
    active: bool = False,
) -> sa.Select | None:
    """`query` (over conversations outer-joined to accounts) with the console's filters; None when
    nothing can match (a state filter without `stopped` during a system-wide stop). `active`: only
    the conversations Overview counts as active (`control_state.active_where`)."""
    c, a = schema.conversations, schema.accounts
    query = query.select_from(c.outerjoin(a, a.c.id == c.c.account_id))
    if states:
        if stopped_all:  # every conversation reads "stopped" while the system-wide stop holds
            if STATE_STOPPED not in states:
                return None
        else:
            query = query.where(c.c.state.in_(list(states)))
    if search and search.strip():
        term = search.strip()
        like = f"%{term}%"
        found = [c.c.id.ilike(like), c.c.bot.ilike(like), c.c.account_id.ilike(like), a.c.name.ilike(like)]
        pseudonym = pseudonymize_id(term, max_len=10_000)  # an account stored under a pseudonym
        if pseudonym != term:  # ("bob@example.org" finds "acct:[email 5d41402abc]")
            found.append(c.c.account_id.ilike(f"%{pseudonym}%"))
        query = query.where(sa.or_(*found))
    if bots:
        query = query.where(c.c.bot.in_(list(bots)))
    if vip is not None:
        query = query.where(sa.func.coalesce(a.c.vip, sa.false()) == vip)
    if active:
        query = query.where(active_where(stopped_all))
    return query


def _finish(conn: sa.Connection, rows: list[dict], stopped_all: bool) -> list[dict]:
    """Rows as the console shows them: message counts (of these rows only), aware times, the
    effective state."""
    m = schema.messages
    ids = [r["id"] for r in rows]
    counts = (
        dict(
            conn.execute(
                sa.select(m.c.conversation_id, sa.func.count())
                .where(m.c.conversation_id.in_(ids))
                .group_by(m.c.conversation_id)
            ).all()
        )
        if ids
        else {}
    )
    for r in rows:
        r["messages"] = int(counts.get(r["id"], 0))
        r["vip"] = bool(r["vip"])
        r["effective_state"] = shown_state(stopped_all, r["state"])
        for k in ("control_since", "started_at", "last_activity_at"):
            r[k] = as_aware(r[k])
    return rows


def list_conversations(
    store: Store,
    *,
    states: tuple[str, ...] | list[str] | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[dict]:
    """Conversations by last activity (held and stopped ones first, then VIP accounts), with scores.

    Each row's `effective_state` is what the console shows: `stopped` for every conversation while
    the system-wide stop holds, else the stored `state`."""
    c, a = schema.conversations, schema.accounts
    order_state = sa.case((c.c.state == STATE_HUMAN, 0), (c.c.state == STATE_STOPPED, 1), else_=2)
    with store.connect() as conn:
        stopped_all = system_stopped(conn)
        q = _filtered(sa.select(*_columns()), False, states, search)
        assert q is not None
        q = q.order_by(order_state, sa.func.coalesce(a.c.vip, sa.false()).desc(), c.c.last_activity_at.desc())
        rows = [dict(r._mapping) for r in conn.execute(q.limit(max(1, min(int(limit), 5000))))]
        return _finish(conn, rows, stopped_all)


@dataclass(frozen=True)
class ConversationPage:
    """One page of the conversation list: `rows` newest activity first; `total` and `by_state`
    count every conversation matching the filters (true counts, by the state the console shows);
    `next_cursor` (None on the last page) continues after the last row."""

    rows: list[dict]
    total: int
    by_state: dict[str, int]
    next_cursor: str | None
    system_stopped: bool


def browse_conversations(
    store: Store,
    *,
    states: Sequence[str] | None = None,
    search: str | None = None,
    bots: Sequence[str] | None = None,
    vip: bool | None = None,
    active: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> ConversationPage:
    """Every conversation matching the filters, by last activity then id (newest first), one page
    at a time: keyset paging on (last_activity_at, id), so a page never skips or repeats a row
    however many conversations there are. VIP is a filter (and a field), not an order."""
    c = schema.conversations
    limit = max(1, min(int(limit), 500))
    after = _decode_cursor(cursor)
    with store.connect() as conn:
        stopped_all = system_stopped(conn)
        base = _filtered(sa.select(*_columns()), stopped_all, states, search, bots, vip, active)
        if base is None:
            return ConversationPage([], 0, {}, None, stopped_all)
        q = base
        if after is not None:
            ts, cid = after
            q = q.where(sa.or_(c.c.last_activity_at < ts, sa.and_(c.c.last_activity_at == ts, c.c.id < cid)))
        q = q.order_by(c.c.last_activity_at.desc(), c.c.id.desc()).limit(limit + 1)
        rows = [dict(r._mapping) for r in conn.execute(q)]
        counted = _filtered(
            sa.select(c.c.state, sa.func.count()), stopped_all, states, search, bots, vip, active
        )
        assert counted is not None
        counts = {state: int(n) for state, n in conn.execute(counted.group_by(c.c.state))}
        more = len(rows) > limit
        rows = _finish(conn, rows[:limit], stopped_all)
    total = sum(counts.values())
    by_state = {STATE_STOPPED: total} if stopped_all and total else counts
    last = rows[-1] if rows and more else None
    next_cursor = (
        f"{last['last_activity_at'].replace(tzinfo=None).isoformat()}|{last['id']}" if last else None
    )
    return ConversationPage(rows, total, by_state, next_cursor, stopped_all)


def conversation_matches(
    store: Store,
    conversation_id: str,
    *,
    states: Sequence[str] | None = None,
    search: str | None = None,
    bots: Sequence[str] | None = None,
    vip: bool | None = None,
    active: bool = False,
) -> bool:
    """True when the conversation exists and belongs to the list these filters give."""
    c = schema.conversations
    with store.connect() as conn:
        q = _filtered(sa.select(c.c.id), system_stopped(conn), states, search, bots, vip, active)
        return q is not None and conn.execute(q.where(c.c.id == conversation_id)).first() is not None


def conversation_footprint(store: Store, conversation_id: str) -> dict[str, Any]:
    """What the store holds under a conversation id: whether it has a conversation (messages
    recorded, so a transcript and actions) and how many LLM calls name it. A call recorded or
    exported with only a conversation id has calls but no conversation: its link must say so,
    not open another conversation in its place."""
    c, llm = schema.conversations, schema.llm_calls
    with store.connect() as conn:
        known = conn.execute(sa.select(c.c.id).where(c.c.id == conversation_id)).first() is not None
        calls = conn.execute(
            sa.select(sa.func.count()).select_from(llm).where(llm.c.conversation_id == conversation_id)
        ).scalar()
    return {"known": known, "llm_calls": int(calls or 0)}


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    ts, sep, cid = str(cursor).partition("|")
    try:
        if not sep:
            raise ValueError
        return datetime.fromisoformat(ts), cid
    except ValueError:
        raise ValueError("the page cursor is not valid; start from the first page") from None


def transcript(store: Store, conversation_id: str, *, limit: int = 200) -> list[dict]:
    """The last `limit` messages of a conversation, oldest first (text as stored: redacted)."""
    m = schema.messages
    q = sa.select(m.c.id, m.c.ts, m.c.role, m.c.author, m.c.bot, m.c.text).where(
        m.c.conversation_id == conversation_id
    )
    q = q.order_by(m.c.ts.desc(), m.c.id.desc()).limit(max(1, int(limit)))
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    rows.reverse()
    for r in rows:
        r["ts"] = as_aware(r["ts"])
    return rows


def intervention_history(store: Store, conversation_id: str | None = None, *, limit: int = 200) -> list[dict]:
    """Interventions audit rows, newest first (read-only: there is no edit or delete)."""
    it = schema.interventions
    q = sa.select(it).order_by(it.c.created_at.desc(), it.c.id.desc()).limit(max(1, int(limit)))
    if conversation_id is not None:
        q = q.where(it.c.conversation_id == conversation_id)
    with store.connect() as conn:
        return [_aware_row(r) for r in conn.execute(q)]


def emergency_history(store: Store, *, limit: int = 200) -> list[dict]:
    """Emergency actions audit rows, newest first (read-only: there is no edit or delete)."""
    e = schema.emergency_actions
    q = sa.select(e).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(max(1, int(limit)))
    with store.connect() as conn:
        return [_aware_row(r) for r in conn.execute(q)]


def _aware_row(row: Any) -> dict:
    return {k: as_aware(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}
