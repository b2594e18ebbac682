"""Per-minute, per-hour and per-day rollups of `bot_operations` and `llm_calls`, and the event families.

Ingest marks the minutes it touched in `rollup_dirty`; this step recomputes those minutes from
the raw rows (exact sums and counts, plus a latency sketch whose bucket indexes are computed in
SQL), then recomputes the hours containing them from the minutes and their UTC days from the hours
(a week then merges 7 sketches per group instead of 168). Recomputing instead of adding
makes the step idempotent: a replayed batch, a late event or a crash halfway simply leads to the
same rows on the next run. A dirty mark is cleared only if nobody re-marked the minute meanwhile.

For LLM calls the same hours of `rollup_conversation_hour` (per conversation and bot) and of
`rollup_account_hour` (per account of the call's conversation) and of `rollup_unpriced_hour` (calls
the price table did not know) are recomputed straight from the
raw rows, in the same transaction.

A `Family` names a raw event table, its rollup tables and what they hold; the read side
(`observability.analytics.performance.aggregate`) uses the same definitions. Besides plain sums, a rollup
may hold the sum of a raw column's squares (`cost_sq_usd` for `llm_calls.cost_usd`), so the mean
and standard deviation of that column over any window come exactly from the rollups.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from observability.store import Store, schema
from observability.store.sketch import Sketch, parse_sketches_flat
from observability.store.sqlhelpers import (
    as_datetime,
    bucket_sql_expr,
    count_false,
    count_true,
    positions,
    trunc_expr,
)

log = logging.getLogger(__name__)

CHUNK_MINUTES = 120
NO_NAME = ""  # rollups store a missing bot or agent as '' (part of their primary key)


@dataclass(frozen=True)
class Family:
    """A raw event table with (optionally) its minute and hour rollups."""

    name: str
    raw: sa.Table
    latency: str
    keys: tuple[str, ...]  # rollup key columns (also usable for raw grouping)
    sums: tuple[str, ...] = ()  # extra summed columns of the rollups (see `raw_sum`)
    minute: sa.Table | None = None
    hour: sa.Table | None = None
    dirty_kind: str | None = None
    nullable_keys: tuple[str, ...] = ()
    squares: tuple[tuple[str, str], ...] = ()  # (rollup column, raw column): sum of the raw column squared
    day: sa.Table | None = None

    def raw_sum(self, name: str, table: sa.Table | None = None) -> sa.ColumnElement:
        """The raw-row expression whose sum is the rollup column `name`."""
        table = self.raw if table is None else table
        for col, src in self.squares:
            if col == name:
                return table.c[src] * table.c[src]
        return table.c[name]


OPS = Family("ops", schema.bot_operations, "duration_ms", ("bot", "operation"), (),
             schema.rollup_ops_minute, schema.rollup_ops_hour, "ops", day=schema.rollup_ops_day)  # fmt: skip
LLM = Family(
    "llm", schema.llm_calls, "latency_ms", ("model", "provider", "bot", "agent"),
    ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
     "cost_saved_usd", "cost_sq_usd"),
    schema.rollup_llm_minute, schema.rollup_llm_hour, "llm", nullable_keys=("bot", "agent"),
    squares=(("cost_sq_usd", "cost_usd"),), day=schema.rollup_llm_day,
)  # fmt: skip
INTERACTIONS = Family("interactions", schema.bot_interactions, "duration_ms", ("bot",))

# summed columns of `rollup_conversation_hour` (besides calls and errors)
CONVERSATION_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
                     "cost_saved_usd")  # fmt: skip

FAMILIES: dict[str, Family] = {f.dirty_kind: f for f in (OPS, LLM) if f.dirty_kind}


def _key_cols(family: Family) -> list[sa.ColumnElement]:
    # NULL bot/agent become '' so they can be part of the rollup's primary key
    return [sa.func.coalesce(family.raw.c[k], NO_NAME).label(k) for k in family.keys]


def recompute_range(store: Store, conn: sa.Connection, kind: str, start: datetime, end: datetime) -> int:
    """Rebuild minute rollups for [start, end) from raw rows; returns the number of rollup rows."""
    family = FAMILIES[kind]
    raw, target, keys = family.raw, family.minute, family.keys
    lat = raw.c[family.latency]
    minute = trunc_expr(store, raw.c.ts, "minute").label("bucket")
    group = [minute, *_key_cols(family)]
    where = sa.and_(raw.c.ts >= start, raw.c.ts < end)
    agg = [
        sa.func.count().label("count"),
        count_false(raw.c.success).label("errors"),
        count_true(raw.c.cache_hit).label("cache_hits"),
        sa.func.sum(lat).label("sum_ms"),
        sa.func.min(lat).label("min_ms"),
        sa.func.max(lat).label("max_ms"),
    ] + [sa.func.sum(family.raw_sum(c)).label(c) for c in family.sums]
    rows = conn.execute(sa.select(*group, *agg).where(where).group_by(*positions(len(group)))).all()
    bucket = bucket_sql_expr(store, lat).label("b")
    sk_rows = conn.execute(
        sa.select(*group, bucket, sa.func.count()).where(where).group_by(*positions(len(group) + 1))
    ).all()
    sketches: dict[tuple, dict[str, int]] = defaultdict(dict)
    n = len(group)
    for r in sk_rows:
        k = (as_datetime(r[0]), *r[1:n])
        sketches[k][str(int(r[n]))] = int(r[n + 1])
    conn.execute(sa.delete(target).where(target.c.bucket >= start, target.c.bucket < end))
    values = []
    for r in rows:
        d = dict(r._mapping)
        d["bucket"] = as_datetime(d["bucket"])
        d["sketch"] = sketches.get((d["bucket"], *(d[k] for k in keys)), {})
        values.append(d)
    if values:
        conn.execute(sa.insert(target), values)
    return len(values)


def recompute_hours(store: Store, conn: sa.Connection, kind: str, hours: set[datetime]) -> None:
    """Rebuild hour rollups from minute rollups (counts and sums added, sketches merged)."""
    family = FAMILIES[kind]
    _merge_up(conn, family.keys, _sum_cols(family), family.minute, family.hour, hours, timedelta(hours=1))


def recompute_days(store: Store, conn: sa.Connection, kind: str, days: set[datetime]) -> None:
    """Rebuild day rollups (UTC days) from hour rollups, the same way hours come from minutes."""
    family = FAMILIES[kind]
    _merge_up(conn, family.keys, _sum_cols(family), family.hour, family.day, days, timedelta(days=1))


def _sum_cols(family: Family) -> tuple[str, ...]:
    return ("count", "errors", "cache_hits", "sum_ms", *family.sums)


def _merge_up(conn: sa.Connection, keys: tuple[str, ...], sum_cols: tuple[str, ...], src: sa.Table,
              target: sa.Table, periods: set[datetime], length: timedelta) -> None:  # fmt: skip
    for period in sorted(periods):
        end = period + length
        rows = conn.execute(
            sa.select(
                *[src.c[k] for k in keys],
                *[src.c[c] for c in sum_cols],
                src.c.min_ms,
                src.c.max_ms,
                src.c.sketch,
            )  # fmt: skip
            .where(src.c.bucket >= period, src.c.bucket < end)
            .order_by(src.c.bucket)  # a fixed order: float sums come out the same on every rerun
        ).all()
        merged: dict[tuple, dict] = {}
        for r in rows:
            m = r._mapping
            k = tuple(m[c] for c in keys)
            acc = merged.get(k)
            if acc is None:
                acc = merged[k] = {"bucket": period, **{c: m[c] for c in keys},
                                   **{c: 0 for c in sum_cols}, "min_ms": None, "max_ms": None,
                                   "_sk": Sketch()}  # fmt: skip
            for c in sum_cols:
                acc[c] += m[c] or 0
            if m["min_ms"] is not None:
                acc["min_ms"] = m["min_ms"] if acc["min_ms"] is None else min(acc["min_ms"], m["min_ms"])
            if m["max_ms"] is not None:
                acc["max_ms"] = m["max_ms"] if acc["max_ms"] is None else max(acc["max_ms"], m["max_ms"])
            acc["_sk"].merge(m["sketch"] or {})
        conn.execute(sa.delete(target).where(target.c.bucket == period))
        if merged:
            values = []
            for acc in merged.values():
                acc["sketch"] = acc.pop("_sk").to_json()
                values.append(acc)
            conn.execute(sa.insert(target), values)


def recompute_conversation_hours(store: Store, conn: sa.Connection, hours: set[datetime]) -> None:
    """Rebuild `rollup_conversation_hour` for `hours` from the raw LLM calls with a conversation
    (one INSERT .. SELECT per hour; a missing bot is stored as '')."""
    raw, target = schema.llm_calls, schema.rollup_conversation_hour
    bot = sa.func.coalesce(raw.c.bot, NO_NAME)
    for hour in sorted(hours):
        end = hour + timedelta(hours=1)
        conn.execute(sa.delete(target).where(target.c.bucket == hour))
        select = (
            sa.select(
                sa.literal(hour, sa.DateTime).label("bucket"), raw.c.conversation_id, bot.label("bot"),
                sa.func.count(), count_false(raw.c.success),
                *[sa.func.sum(raw.c[k]) for k in CONVERSATION_SUMS], sa.func.min(raw.c.ts), sa.func.max(raw.c.ts),
            )
            .where(raw.c.ts >= hour, raw.c.ts < end, raw.c.conversation_id.is_not(None))
            .group_by(*positions(3)[1:])
        )  # fmt: skip
        cols = [
            "bucket",
            "conversation_id",
            "bot",
            "calls",
            "errors",
            *CONVERSATION_SUMS,
            "first_ts",
            "last_ts",
        ]
        conn.execute(sa.insert(target).from_select(cols, select))


UNPRICED_SUMS = ("input_tokens", "output_tokens", "cost_usd", "cost_flagged_usd")


def usage_missing(t: sa.Table = schema.llm_calls) -> sa.ColumnElement[bool]:
    """An unpriced call whose usage was not reported: successful, no response-cache hit, and not one
    input or output token (no model call reads nothing). Ingest stores such a call unpriced
    (price_known false: its cost is unknown, not $0): an OpenAI stream without
    `stream_options={"include_usage": True}` is the usual cause. The one definition behind
    `rollup_unpriced_hour.usage_missing_calls` and the raw edges of `unknown_model_calls`."""
    return sa.and_(t.c.success, sa.not_(t.c.cache_hit), t.c.input_tokens == 0, t.c.output_tokens == 0)


def unpriced_select(start: datetime, end: datetime, *where: Any) -> sa.Select:
    """Unpriced calls (price_known false) in [start, end) per model and provider: calls, the sums
    of `UNPRICED_SUMS`, the calls among them whose usage was not reported (`usage_missing`), first
    and last call (`where`: further conditions, e.g. a bot filter); the one definition behind
    `rollup_unpriced_hour` and the raw edges of `unknown_model_calls`."""
    t = schema.llm_calls
    return (
        sa.select(t.c.model, t.c.provider, sa.func.count().label("calls"),
                  *[sa.func.sum(t.c[k]).label(k) for k in UNPRICED_SUMS],
                  sa.func.sum(sa.case((usage_missing(t), 1), else_=0)).label("usage_missing_calls"),
                  sa.func.min(t.c.ts).label("first_ts"), sa.func.max(t.c.ts).label("last_ts"))
        .where(t.c.price_known == sa.false(), t.c.ts >= start, t.c.ts < end, *where)
        .group_by(t.c.model, t.c.provider)
    )  # fmt: skip


def recompute_unpriced_hours(store: Store, conn: sa.Connection, hours: set[datetime]) -> None:
    """Rebuild `rollup_unpriced_hour` for `hours` (one INSERT .. SELECT each, on the partial index
    of unpriced calls)."""
    target = schema.rollup_unpriced_hour
    for hour in sorted(hours):
        conn.execute(sa.delete(target).where(target.c.bucket == hour))
        inner = unpriced_select(hour, hour + timedelta(hours=1)).subquery()
        select = sa.select(sa.literal(hour, sa.DateTime), *inner.c)
        cols = [
            "bucket",
            "model",
            "provider",
            "calls",
            *UNPRICED_SUMS,
            "usage_missing_calls",
            "first_ts",
            "last_ts",
        ]
        conn.execute(sa.insert(target).from_select(cols, select))


ACCOUNT_SUMS = ("input_tokens", "output_tokens", "cost_usd")


def account_calls(store: Store, start: datetime, end: datetime) -> tuple[sa.FromClause, sa.ColumnElement]:
    """LLM calls in [start, end) joined to their conversation's account: (from clause, condition).
    The one definition of "an account's calls" for the rollup and for the raw edges of a window."""
    raw, conv = schema.llm_calls, schema.conversations
    src = raw.join(conv, conv.c.id == raw.c.conversation_id)
    return src, sa.and_(raw.c.ts >= start, raw.c.ts < end, conv.c.account_id.is_not(None))


def recompute_account_hours(store: Store, conn: sa.Connection, hours: set[datetime]) -> None:
    """Rebuild `rollup_account_hour` for `hours` from the raw calls of each account's conversations
    (sums in SQL, the sketch's bucket counts in SQL, assembled here as in `recompute_range`).

    The hour's calls are first aggregated per conversation, and only the hour's conversations are
    looked up (by primary key) for their account: a join of the calls with `conversations` would
    hash the whole table every time (0.36 s an hour at 10M calls).

    A conversation that names its account only after its calls' hour was rolled up leaves those
    calls out until that hour is recomputed (a late call in the hour does it)."""
    raw, conv, target = schema.llm_calls, schema.conversations, schema.rollup_account_hour
    lat = raw.c.latency_ms
    for hour in sorted(hours):
        in_hour = (raw.c.ts >= hour, raw.c.ts < hour + timedelta(hours=1), raw.c.conversation_id.is_not(None))
        ids = sa.select(raw.c.conversation_id).where(*in_hour).distinct().subquery("d")
        account = sa.select(conv.c.account_id).where(conv.c.id == ids.c.conversation_id).scalar_subquery()
        # OFFSET 0: looked up once per conversation, not once per joined row
        acct = sa.select(ids.c.conversation_id, account.label("account_id")).offset(0).subquery("m")
        per = (
            sa.select(raw.c.conversation_id, sa.func.count().label("n"), count_false(raw.c.success).label("e"),
                      *[sa.func.sum(raw.c[k]).label(k) for k in ACCOUNT_SUMS], sa.func.sum(lat).label("s"),
                      sa.func.min(lat).label("mn"), sa.func.max(lat).label("mx"))
            .where(*in_hour).group_by(raw.c.conversation_id).subquery("p")
        )  # fmt: skip
        rows = conn.execute(
            sa.select(acct.c.account_id, sa.func.sum(per.c.n), sa.func.sum(per.c.e),
                      *[sa.func.sum(per.c[k]) for k in ACCOUNT_SUMS], sa.func.sum(per.c.s), sa.func.min(per.c.mn),
                      sa.func.max(per.c.mx))
            .select_from(per.join(acct, acct.c.conversation_id == per.c.conversation_id))
            .where(acct.c.account_id.is_not(None)).group_by(acct.c.account_id)
        ).all()  # fmt: skip
        buckets = (
            sa.select(raw.c.conversation_id, bucket_sql_expr(store, lat).label("b"), sa.func.count().label("n"))
            .where(*in_hour).group_by(*positions(2)).subquery("s")
        )  # fmt: skip
        sketches: dict[str, dict[str, int]] = defaultdict(dict)
        for account_id, b, n in conn.execute(
            sa.select(acct.c.account_id, buckets.c.b, sa.func.sum(buckets.c.n))
            .select_from(buckets.join(acct, acct.c.conversation_id == buckets.c.conversation_id))
            .where(acct.c.account_id.is_not(None)).group_by(*positions(2))
        ):  # fmt: skip
            sketches[account_id][str(int(b))] = int(n)
        conn.execute(sa.delete(target).where(target.c.bucket == hour))
        values = [
            {"bucket": hour, "account_id": r[0], "calls": int(r[1]), "errors": int(r[2] or 0),
             **{k: r[3 + i] or 0 for i, k in enumerate(ACCOUNT_SUMS)}, "sum_ms": float(r[6] or 0),
             "min_ms": r[7], "max_ms": r[8], "sketch": sketches.get(r[0], {})}
            for r in rows
        ]  # fmt: skip
        if values:
            conn.execute(sa.insert(target), values)


def recompute_account_days(store: Store, conn: sa.Connection, days: set[datetime]) -> None:
    """Rebuild `rollup_account_day` (UTC days) from `rollup_account_hour`: 30 days of an account
    are then about 30 rows instead of 720 scattered ones.

    The current day is rebuilt on every run that touches it (up to 24 hour rows per account), so
    the sketches are parsed in one pass and merged with numpy, not entry by entry."""
    hour, target = schema.rollup_account_hour, schema.rollup_account_day
    sums = ("calls", "errors", *ACCOUNT_SUMS, "sum_ms")
    for day in sorted(days):
        rows = conn.execute(
            sa.select(hour.c.account_id, *[hour.c[c] for c in sums], hour.c.min_ms, hour.c.max_ms,
                      sa.cast(hour.c.sketch, sa.Text))
            .where(hour.c.bucket >= day, hour.c.bucket < day + timedelta(days=1))
            .order_by(hour.c.bucket)  # a fixed order: float sums come out the same on every rerun
        ).all()  # fmt: skip
        conn.execute(sa.delete(target).where(target.c.bucket == day))
        if not rows:
            continue
        names = sorted({r[0] for r in rows})
        code = {a: i for i, a in enumerate(names)}
        codes = np.fromiter((code[r[0]] for r in rows), np.int64, len(rows))
        n, k = len(names), len(sums)
        # per account, in the rows' (bucket) order: the same float sums on every rerun
        totals = [
            np.bincount(codes, weights=[float(r[1 + i] or 0) for r in rows], minlength=n) for i in range(k)
        ]
        lo = np.full(n, np.inf)
        hi = np.full(n, -np.inf)
        np.minimum.at(lo, codes, [np.inf if r[1 + k] is None else r[1 + k] for r in rows])
        np.maximum.at(hi, codes, [-np.inf if r[2 + k] is None else r[2 + k] for r in rows])
        keys, counts, sizes = parse_sketches_flat([r[-1] for r in rows])
        owner = np.repeat(codes, sizes)
        base = int(keys.min()) if len(keys) else 0
        span = int(keys.max()) - base + 1 if len(keys) else 1
        cells, inverse = np.unique(owner * span + (keys - base), return_inverse=True)  # sorted by account
        merged = np.bincount(inverse, weights=counts).astype(np.int64)
        edges = np.searchsorted(cells // span, np.arange(n + 1))
        values = []
        for i, account_id in enumerate(names):
            cell = slice(edges[i], edges[i + 1])
            values.append({
                "bucket": day, "account_id": account_id,
                **{c: (float(totals[j][i]) if c in ("cost_usd", "sum_ms") else int(totals[j][i]))
                   for j, c in enumerate(sums)},
                "min_ms": None if np.isinf(lo[i]) else float(lo[i]),
                "max_ms": None if np.isinf(hi[i]) else float(hi[i]),
                "sketch": dict(zip((cells[cell] % span + base).astype(str).tolist(), merged[cell].tolist(),
                                   strict=True)),
            })  # fmt: skip
        conn.execute(sa.insert(target), values)


def run(store: Store, max_minutes: int = 20_000) -> int:
    """Recompute every dirty minute (and its hour); returns how many minutes were processed."""
    d = schema.rollup_dirty
    with store.connect() as conn:
        dirty = conn.execute(
            sa.select(d.c.kind, d.c.minute, d.c.mark).order_by(d.c.kind, d.c.minute).limit(max_minutes)
        ).all()
    if not dirty:
        return 0
    by_kind: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for kind, minute, mark in dirty:
        by_kind[kind].append((as_datetime(minute), mark))
    for kind, items in by_kind.items():
        if kind not in FAMILIES:
            continue
        # contiguous chunks of at most CHUNK_MINUTES minutes, one transaction each
        chunk: list[tuple[datetime, str]] = []
        for item in items:
            if chunk and (item[0] - chunk[0][0]) >= timedelta(minutes=CHUNK_MINUTES):
                _process_chunk(store, kind, chunk)
                chunk = []
            chunk.append(item)
        if chunk:
            _process_chunk(store, kind, chunk)
    return len(dirty)


def _process_chunk(store: Store, kind: str, chunk: list[tuple[datetime, str]]) -> None:
    d = schema.rollup_dirty
    start = chunk[0][0]
    end = chunk[-1][0] + timedelta(minutes=1)
    with store.begin() as conn:
        recompute_range(store, conn, kind, start, end)
        hours = {m.replace(minute=0) for m, _ in chunk}
        recompute_hours(store, conn, kind, hours)
        recompute_days(store, conn, kind, {h.replace(hour=0) for h in hours})
        if kind == "llm":
            recompute_conversation_hours(store, conn, hours)
            recompute_account_hours(store, conn, hours)
            recompute_account_days(store, conn, {h.replace(hour=0) for h in hours})
            recompute_unpriced_hours(store, conn, hours)
        for minute, mark in chunk:
            conn.execute(sa.delete(d).where(d.c.kind == kind, d.c.minute == minute, d.c.mark == mark))
