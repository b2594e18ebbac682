"""Per-minute and per-hour rollups of `bot_operations` and `llm_calls`.

Ingest marks the minutes it touched in `rollup_dirty`; this step recomputes those minutes from
the raw rows (exact sums and counts, plus a latency sketch whose bucket indexes are computed in
SQL), then recomputes the hours containing them from the minutes. Recomputing instead of adding
makes the step idempotent: a replayed batch, a late event or a crash halfway simply leads to the
same rows on the next run. A dirty mark is cleared only if nobody re-marked the minute meanwhile.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa

from observability import schema
from observability.sketch import LOG_GAMMA, MIN_VALUE, Sketch
from observability.store import Store

log = logging.getLogger(__name__)

CHUNK_MINUTES = 120


def _minute_expr(store: Store, col: sa.ColumnElement) -> sa.ColumnElement:
    if store.is_postgres:
        return sa.func.date_trunc("minute", col)
    return sa.func.strftime("%Y-%m-%d %H:%M:00", col)


def _bucket_expr(store: Store, col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.ceil(sa.func.ln(store.greatest(col, sa.literal(MIN_VALUE))) / sa.literal(LOG_GAMMA))


def _dt(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def _pos(n: int) -> list[sa.ColumnElement]:
    """GROUP BY 1, 2, ... n (both dialects accept positions; expressions would be repeated)."""
    return [sa.literal_column(str(i)) for i in range(1, n + 1)]


def _falsy(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.sum(sa.case((col == sa.false(), 1), else_=0))


def _truthy(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.sum(sa.case((col == sa.true(), 1), else_=0))


SPECS = {
    "ops": {
        "raw": schema.bot_operations,
        "minute": schema.rollup_ops_minute,
        "hour": schema.rollup_ops_hour,
        "keys": ("bot", "operation"),
        "latency": "duration_ms",
        "sums": (),
    },
    "llm": {
        "raw": schema.llm_calls,
        "minute": schema.rollup_llm_minute,
        "hour": schema.rollup_llm_hour,
        "keys": ("model", "provider", "bot", "agent"),
        "latency": "latency_ms",
        "sums": ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                 "cost_usd", "cost_saved_usd"),  # fmt: skip
    },
}


def _key_cols(raw: sa.Table, keys: tuple[str, ...]) -> list[sa.ColumnElement]:
    # NULL bot/agent become '' so they can be part of the rollup's primary key
    return [sa.func.coalesce(raw.c[k], "").label(k) for k in keys]


def recompute_range(store: Store, conn: sa.Connection, kind: str, start: datetime, end: datetime) -> int:
    """Rebuild minute rollups for [start, end) from raw rows; returns the number of rollup rows."""
    spec = SPECS[kind]
    raw, target, keys = spec["raw"], spec["minute"], spec["keys"]
    lat = raw.c[spec["latency"]]
    minute = _minute_expr(store, raw.c.ts).label("bucket")
    key_cols = _key_cols(raw, keys)
    where = sa.and_(raw.c.ts >= start, raw.c.ts < end)
    agg = [
        sa.func.count().label("count"),
        _falsy(raw.c.success).label("errors"),
        _truthy(raw.c.cache_hit).label("cache_hits"),
        sa.func.sum(lat).label("sum_ms"),
        sa.func.min(lat).label("min_ms"),
        sa.func.max(lat).label("max_ms"),
    ] + [sa.func.sum(raw.c[c]).label(c) for c in spec["sums"]]
    group = [minute, *key_cols]
    rows = conn.execute(sa.select(*group, *agg).where(where).group_by(*_pos(len(group)))).all()
    bucket = _bucket_expr(store, lat).label("b")
    sk_rows = conn.execute(
        sa.select(*group, bucket, sa.func.count()).where(where).group_by(*_pos(len(group) + 1))
    ).all()
    sketches: dict[tuple, dict[str, int]] = defaultdict(dict)
    n = len(group)
    for r in sk_rows:
        k = (_dt(r[0]), *r[1:n])
        sketches[k][str(int(r[n]))] = int(r[n + 1])
    conn.execute(sa.delete(target).where(target.c.bucket >= start, target.c.bucket < end))
    values = []
    for r in rows:
        d = dict(r._mapping)
        d["bucket"] = _dt(d["bucket"])
        d["sketch"] = sketches.get((d["bucket"], *(d[k] for k in keys)), {})
        values.append(d)
    if values:
        conn.execute(sa.insert(target), values)
    return len(values)


def recompute_hours(store: Store, conn: sa.Connection, kind: str, hours: set[datetime]) -> None:
    """Rebuild hour rollups from minute rollups (counts summed, sketches merged)."""
    spec = SPECS[kind]
    src, target, keys = spec["minute"], spec["hour"], spec["keys"]
    sum_cols = ("count", "errors", "cache_hits", "sum_ms", *spec["sums"])
    for hour in sorted(hours):
        end = hour + timedelta(hours=1)
        rows = conn.execute(
            sa.select(*[src.c[k] for k in keys], *[src.c[c] for c in sum_cols], src.c.min_ms,
                      src.c.max_ms, src.c.sketch)  # fmt: skip
            .where(src.c.bucket >= hour, src.c.bucket < end)
            .order_by(src.c.bucket)  # a fixed order: float sums come out the same on every rerun
        ).all()
        merged: dict[tuple, dict] = {}
        for r in rows:
            m = r._mapping
            k = tuple(m[c] for c in keys)
            acc = merged.get(k)
            if acc is None:
                acc = merged[k] = {"bucket": hour, **{c: m[c] for c in keys},
                                   **{c: 0 for c in sum_cols}, "min_ms": None, "max_ms": None,
                                   "_sk": Sketch()}  # fmt: skip
            for c in sum_cols:
                acc[c] += m[c] or 0
            if m["min_ms"] is not None:
                acc["min_ms"] = m["min_ms"] if acc["min_ms"] is None else min(acc["min_ms"], m["min_ms"])
            if m["max_ms"] is not None:
                acc["max_ms"] = m["max_ms"] if acc["max_ms"] is None else max(acc["max_ms"], m["max_ms"])
            acc["_sk"].merge(m["sketch"] or {})
        conn.execute(sa.delete(target).where(target.c.bucket == hour))
        if merged:
            values = []
            for acc in merged.values():
                acc["sketch"] = acc.pop("_sk").to_json()
                values.append(acc)
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
        by_kind[kind].append((_dt(minute), mark))
    for kind, items in by_kind.items():
        if kind not in SPECS:
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
        recompute_hours(store, conn, kind, {m.replace(minute=0) for m, _ in chunk})
        for minute, mark in chunk:
            conn.execute(sa.delete(d).where(d.c.kind == kind, d.c.minute == minute, d.c.mark == mark))
