"""Turn a batch of wire events into rows, in one transaction.

Shared by the SDK's direct-to-SQL path and the worker's stream consumer, so both store exactly the
same thing: events are re-validated (a malformed one is rejected and counted, the rest of its
batch is stored), LLM calls are priced here once and for all, every free-text field is PII-redacted
(`redaction.TEXT_FIELDS`: message text and authors, account names, handoff reasons, error types,
activity titles and descriptions, metadata values), raw rows
are inserted with duplicates ignored, conversations and accounts are upserted, and the minutes
touched are marked for the rollup step.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter

import sqlalchemy as sa

from observability import events as ev
from observability.redaction import redact_events
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.store.database import DuplicateRows
from observability.store.pricing import pricer
from observability.store.wire import TABLE_OF_KIND, check_wire
from observability.timeutil import EPOCH, from_epoch

log = logging.getLogger(__name__)

LLM_COLUMNS = (
    "trace_id", "ts", "bot", "agent", "decision_type", "model", "provider", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms", "cache_hit",
    "cost_usd", "cost_saved_usd", "price_known", "conversation_id", "success", "error_type",
    "cost_flagged_usd", "error_raw",
)  # fmt: skip
SIMPLE_KINDS: dict[str, sa.Table] = {
    kind: table for kind, table in TABLE_OF_KIND.items() if kind not in (ev.KIND_LLM, ev.KIND_ACCOUNT)
}  # stored as they come; LLM calls are priced and accounts upserted


@dataclass
class IngestResult:
    written: Counter = field(default_factory=Counter)  # kind -> events accepted (incl. duplicates)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(self.written.values())


def _ts(seconds: float) -> datetime:
    return from_epoch(seconds)


def _minute(seconds: float) -> int:
    return int(seconds // 60)


def write_batch(store: Store, batch: Iterable[list], settings: Settings | None = None) -> IngestResult:
    """Validate, price and store a batch atomically. Raises StoreUnavailable if the store is down."""
    settings = settings or get_settings()
    result = IngestResult()
    grouped: dict[str, list[list]] = defaultdict(list)
    for event in batch:
        try:
            check_wire(event, settings.sdk_max_text_bytes)
        except ev.EventRejected as exc:
            result.rejected += 1
            if len(result.reasons) < 20:
                result.reasons.append(str(exc))
            log.warning("rejected malformed event at ingest: %s", exc)
            continue
        grouped[event[0]].append(event)
    if grouped:
        refused = _store_isolating(store, grouped, settings)
        for e in refused:
            grouped[e[0]].remove(e)
            result.rejected += 1
    for kind, items in grouped.items():
        result.written[kind] += len(items)
    return result


def is_data_error(exc: BaseException) -> bool:
    """True when the store refused the data itself (not the connection, not the schema)."""
    if isinstance(exc, (TypeError, ValueError, OverflowError)):
        return True
    if isinstance(exc, sa.exc.StatementError):
        if isinstance(exc, sa.exc.DBAPIError):
            return isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError))
        return True  # a bind parameter could not be converted
    if type(exc).__module__.startswith("psycopg"):  # raised by COPY on the raw connection
        import psycopg

        return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))
    return False


CONFLICT_STATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def is_conflict(exc: BaseException) -> bool:
    """True when PostgreSQL rolled the transaction back for a concurrent one (a deadlock's victim):
    the same transaction run again succeeds."""
    return getattr(getattr(exc, "orig", exc), "sqlstate", None) in CONFLICT_STATES


def _store_isolating(store: Store, grouped: dict[str, list[list]], settings: Settings) -> list[list]:
    """Store the events; if the store refuses some data, find the refused events by halving.

    `wire.check_wire` should leave nothing the store refuses; this is the safety net that keeps one
    unforeseen bad event from turning its whole batch into a poison pill that is retried forever.
    Connection and schema errors are raised as they are. Returns the refused events.
    """
    try:
        _store_grouped(store, grouped, settings)
        return []
    except Exception as exc:
        if not is_data_error(exc):
            raise
        events = [e for items in grouped.values() for e in items]
        if len(events) == 1:
            log.warning("rejected event the store refused (%s): %.300s", type(exc).__name__, exc)
            return events
    half = len(events) // 2
    refused = []
    for part in (events[:half], events[half:]):
        sub: dict[str, list[list]] = defaultdict(list)
        for e in part:
            sub[e[0]].append(e)
        refused += _store_isolating(store, sub, settings)
    return refused


def amend_llm_calls(
    store: Store,
    replaced: Iterable[tuple[str, float]],
    events: list[list],
    links: Iterable[tuple[str, float, str | None, str | None]] = (),
    settings: Settings | None = None,
) -> None:
    """Store LLM call events in place of earlier rows of the same calls, in one transaction.

    The OTLP receiver stores a call as soon as its spans arrive, with the context known then, and
    amends the row when a more complete span of the call or an ancestor naming its conversation or
    bot comes in a later export request: a restart between the two loses nothing. `replaced` are the
    (row id, ts) of the rows to drop; `links` are (conversation, ts, bot, account) that attach a
    conversation to its account. Events must have passed `check_wire`. Raises StoreUnavailable.
    """
    settings = settings or get_settings()
    _store_grouped(store, {ev.KIND_LLM: events} if events else {}, settings, list(replaced), list(links))


@dataclass
class CallWrite:
    """One OTLP export request's writes: new call events, and rows amended (`amend_llm_calls`)."""

    events: list[list]
    replaced: list[tuple[str, float]] = field(default_factory=list)
    amended: list[list] = field(default_factory=list)
    links: list[tuple[str, float, str | None, str | None]] = field(default_factory=list)


def write_calls(store: Store, writes: list[CallWrite], settings: Settings | None = None) -> None:
    """Several requests' writes in one transaction (group commit): all are durable or none.

    Events must have passed `check_wire` (the receiver builds them checked). Raises StoreUnavailable
    when the store is down, and the store's own error when it refuses some data: the caller then
    writes the requests one by one (`write_batch`, `amend_llm_calls`), so only the bad one fails.
    """
    settings = settings or get_settings()
    events = [e for w in writes for e in w.events] + [e for w in writes for e in w.amended]
    replaced = [r for w in writes for r in w.replaced]
    links = [x for w in writes for x in w.links]
    grouped = {ev.KIND_LLM: events} if events else {}
    try:  # the receiver's calls are rarely stored already (it merges what it remembers): no savepoint
        _store_grouped(store, grouped, settings, replaced, links, optimistic=True)
    except DuplicateRows:  # rolled back: again, duplicates skipped
        _store_grouped(store, grouped, settings, replaced, links)


def _store_grouped(
    store: Store,
    grouped: dict[str, list[list]],
    settings: Settings,
    replaced: list[tuple[str, float]] | None = None,
    links: list[tuple[str, float, str | None, str | None]] | None = None,
    optimistic: bool = False,
) -> None:
    """Price, redact and insert valid events grouped by kind, in one transaction (`optimistic`: the
    LLM calls without savepoint, `DuplicateRows` when one is stored already)."""
    rows: dict[str, list[tuple]] = {}
    dirty: set[tuple[str, int]] = {("llm", int(ts // 60)) for _, ts in replaced or ()}

    if settings.redact_pii:  # the one redaction step: every free-text field of every kind
        grouped = {kind: redact_events(kind, items, settings) for kind, items in grouped.items()}
    llm = grouped.get(ev.KIND_LLM)
    if llm:
        out = []
        append, epoch, seconds = out.append, EPOCH, timedelta  # the hottest loop
        pricers: dict = {}  # (provider, model) -> its pricing function, looked up once a batch
        ceiling = settings.otlp_cost_ceiling_usd if settings.otlp_cost_ceiling_usd > 0 else float("inf")
        for e in llm:
            (_, tid, ts, bot, agent, dtype, model, provider, it, ot, cr, cw, lat, hit, cost, conv,
             ok, err, raw) = e  # fmt: skip
            price = pricers.get((provider, model))
            if price is None:
                price = pricers[(provider, model)] = pricer(provider, model)
            usd, saved, known = price(it, ot, cr, cw, hit)
            if not (it or ot) and ok and not hit and cost is None:  # `usage_missing`: no real zero
                known = False
            usd, flagged = (usd if cost is None else float(cost)), None
            if usd > ceiling:  # implausible for one call: flagged for a person, not summed into spend
                usd, saved, known, flagged = 0.0, 0.0, False, usd
            append((tid, epoch + seconds(seconds=ts), bot, agent, dtype, model, provider, it, ot, cr, cw,
                    float(lat), hit, usd, saved, known, conv, ok, err, flagged, raw))  # fmt: skip
        dirty.update(("llm", m) for m in {int(ts // 60) for ts in map(itemgetter(2), llm)})
        rows[ev.KIND_LLM] = out

    for kind in SIMPLE_KINDS:
        items = grouped.get(kind)
        if not items:
            continue
        rows[kind] = [(e[1], _ts(e[2]), *e[3:]) for e in items]
        if kind == ev.KIND_OPERATION:
            dirty.update(("ops", _minute(e[2])) for e in items)

    with store.begin() as conn:
        if replaced:
            t = schema.llm_calls
            conn.execute(t.delete().where(t.c.trace_id == sa.bindparam("rid"), t.c.ts == sa.bindparam("rts")),
                         [{"rid": rid, "rts": _ts(ts)} for rid, ts in replaced])  # fmt: skip
        if ev.KIND_LLM in rows:
            if optimistic:
                store.insert_ignore(conn, schema.llm_calls, LLM_COLUMNS, rows[ev.KIND_LLM], savepoint=False)
            else:
                store.insert_ignore(conn, schema.llm_calls, LLM_COLUMNS, rows[ev.KIND_LLM])
        for kind, table in SIMPLE_KINDS.items():
            if kind in rows:
                cols = ev.FIELDS[kind]
                store.insert_ignore(conn, table, cols, rows[kind])
        if ev.KIND_MESSAGE in rows:
            _upsert_conversations(store, conn, rows[ev.KIND_MESSAGE])
        if ev.KIND_ACCOUNT in grouped:
            _upsert_accounts(store, conn, grouped[ev.KIND_ACCOUNT])
        if links:
            link_rows = [
                (None, _ts(ts), conv, None, None, bot, account, None) for conv, ts, bot, account in links
            ]
            _upsert_conversations(store, conn, link_rows)
        if dirty:
            mark_dirty(store, conn, dirty)


def _upsert_conversations(store: Store, conn: sa.Connection, message_rows: list[tuple]) -> None:
    convs: dict[str, dict] = {}
    for _id, ts, conv, _role, _text, bot, account, _author in message_rows:
        c = convs.get(conv)
        if c is None:
            convs[conv] = {"id": conv, "account_id": account, "bot": bot, "state": "ai",
                           "started_at": ts, "last_activity_at": ts, "message_count": 0}  # fmt: skip
            continue
        if ts < c["started_at"]:
            c["started_at"] = ts
        if ts >= c["last_activity_at"]:
            c["last_activity_at"] = ts
            c["bot"] = bot or c["bot"]
        c["account_id"] = c["account_id"] or account
    t = schema.conversations
    stmt = store.insert(t).values(sorted(convs.values(), key=lambda r: r["id"]))
    x = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "started_at": store.least(t.c.started_at, x.started_at),
            "last_activity_at": store.greatest(t.c.last_activity_at, x.last_activity_at),
            "bot": sa.case(
                (x.last_activity_at >= t.c.last_activity_at, sa.func.coalesce(x.bot, t.c.bot)),
                else_=t.c.bot,
            ),
            "account_id": sa.func.coalesce(t.c.account_id, x.account_id),
        },
    )
    conn.execute(stmt)


def _upsert_accounts(store: Store, conn: sa.Connection, items: list[list]) -> None:
    latest: dict[str, list] = {}
    for e in items:
        cur = latest.get(e[1])
        if cur is None or e[2] >= cur[2]:
            latest[e[1]] = e
    t = schema.accounts
    values = [
        {"id": e[1], "updated_at": _ts(e[2]), "name": e[3], "vip": bool(e[4])}
        for e in sorted(latest.values(), key=lambda e: e[1])
    ]
    stmt = store.insert(t).values(values)
    x = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={"name": sa.func.coalesce(x.name, t.c.name), "vip": x.vip, "updated_at": x.updated_at},
        where=x.updated_at >= t.c.updated_at,
    )
    conn.execute(stmt)


def mark_dirty(store: Store, conn: sa.Connection, minutes: set[tuple[str, int]]) -> None:
    """Mark rollup minutes for recomputation; a fresh `mark` tells the rollup step it changed."""
    mark = uuid.uuid4().hex
    values = [{"kind": k, "minute": EPOCH + timedelta(minutes=m), "mark": mark} for k, m in sorted(minutes)]
    stmt = _MARK_DIRTY.get(store.is_postgres)
    if stmt is None:  # one statement per dialect, rows as parameters: compiled once, not per batch
        stmt = store.insert(schema.rollup_dirty)
        stmt = _MARK_DIRTY[store.is_postgres] = stmt.on_conflict_do_update(
            index_elements=["kind", "minute"], set_={"mark": stmt.excluded.mark}
        )
    conn.execute(stmt, values)


_MARK_DIRTY: dict[bool, sa.Insert] = {}
