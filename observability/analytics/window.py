"""The window and read-plan engine every analytics service reads through: one place that decides
how a window of events is read and aggregated.

How a window is read (DESIGN section 8, issue 3 "Scale"):

- Windows shorter than 24 hours read the raw event rows and aggregate them in SQL. Percentiles are
  exact with linear interpolation: `percentile_cont` on PostgreSQL; on SQLite the two order
  statistics around each quantile are picked per group with `row_number()` and interpolated
  (`sqlhelpers.group_percentiles`, the same definition), so no group's rows leave the database.
- Windows of 24 hours and longer, and every time series, read the rollups: per-hour rows for the
  full hours, per-minute rows for the partial hours at the edges, and raw rows only for the partial
  minutes at the edges and for minutes whose rollup is not computed yet (`rollup_dirty`). Counts,
  sums, min and max stay exact; percentiles come from the merged latency sketches (at most 1%
  relative error), and every result says so (`approximate=True`, `source="rollup"`).
- Sums are aggregated in SQL. Sketches are merged in numpy: parsing rollup JSON is the expensive
  part of a long window (PostgreSQL's `json_each` over a week of hours takes seconds at 10M rows),
  so merged sketches per (bucket, group) are kept in a process-wide cache (`SKETCH_CACHE`) and
  reused while the exact count and latency sum of their rows are unchanged.

All windows are half-open, `[now - window, now)`, in naive UTC (`observability.timeutil` defines
windows and their bounds); the services above build their figures from `aggregate`.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from observability.store import Store, schema
from observability.store.rollups import NO_NAME, Family
from observability.store.sketch import GAMMA, Sketch, parse_sketches
from observability.store.sqlhelpers import (
    QUANTILES,
    as_datetime,
    bucket_sql_expr,
    count_false,
    count_true,
    group_percentiles,
    in_ranges,
    positions,
    trunc_expr,
)
from observability.timeutil import Window, floor_hour, floor_minute, window_seconds

ROLLUP_WINDOW_S = 86_400  # windows at least this long read rollups
MAX_RAW_RANGES = 32  # dirty minutes are merged into at most this many raw ranges per query

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# ---------------------------------------------------------------------------------------------
# Windows: how each is read
# ---------------------------------------------------------------------------------------------


def reads_rollups(window: Window | None) -> bool:
    """Whether a window (seconds when a number; None: all history) is read from rollups
    (approximate percentiles)."""
    return window is None or window_seconds(window) >= ROLLUP_WINDOW_S


def source_note(window: Window | None) -> str:
    """How figures over this window are computed, in words (the pages show it under their filters)."""
    if not reads_rollups(window):
        return "exact, from raw events (charts over time from per-minute rollups)"
    return "from per-minute and per-hour rollups: sums exact, percentiles within 1%"


def chart_granularity(window: Window) -> str:
    """The time bucket of a chart over this window: minutes up to 6 hours, hours up to 7 days,
    days beyond."""
    seconds = window_seconds(window)
    return "minute" if seconds <= 6 * 3600 else "hour" if seconds <= 7 * 86_400 else "day"


def _floor(value: datetime, unit: timedelta) -> datetime:
    if unit == MINUTE:
        return floor_minute(value)
    if unit == HOUR:
        return floor_hour(value)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(value: datetime, unit: timedelta) -> datetime:
    base = _floor(value, unit)
    return base if base == value else base + unit


@dataclass(frozen=True)
class ReadPlan:
    """Disjoint half-open ranges that together cover a window, by where they are read from."""

    raw: tuple[tuple[datetime, datetime], ...]
    minute: tuple[tuple[datetime, datetime], ...]
    hour: tuple[tuple[datetime, datetime], ...]
    day: tuple[tuple[datetime, datetime], ...] = ()


def _merge_minutes(minutes: Sequence[datetime]) -> list[list[datetime]]:
    ranges: list[list[datetime]] = []
    for m in minutes:
        if ranges and ranges[-1][1] == m:
            ranges[-1][1] = m + MINUTE
        else:
            ranges.append([m, m + MINUTE])
    return ranges


def plan_ranges(
    start: datetime,
    end: datetime,
    dirty_minutes: Iterable[datetime] = (),
    *,
    hours: bool = True,
    days: bool = False,
    max_raw_ranges: int = MAX_RAW_RANGES,
) -> ReadPlan:
    """Split [start, end) into raw, minute-, hour- and day-rollup ranges.

    Partial minutes at the edges and minutes whose rollup is stale (`dirty_minutes`) are read raw;
    full UTC days without a stale minute come from day rollups when `days` is true, full hours
    without a stale minute from hour rollups when `hours` is true; the rest from minute rollups. Stale minutes are merged (closest first) into at most `max_raw_ranges` ranges so
    a query never grows unbounded; merged gaps are simply read raw too.
    """
    if end <= start:
        return ReadPlan((), (), ())
    s1, e1 = _ceil(start, MINUTE), floor_minute(end)
    if s1 >= e1:
        return ReadPlan(((start, end),), (), ())
    raw: list[tuple[datetime, datetime]] = []
    if start < s1:
        raw.append((start, s1))
    if e1 < end:
        raw.append((e1, end))
    dirty = _merge_minutes(sorted({floor_minute(m) for m in dirty_minutes if s1 <= m < e1}))
    while len(dirty) > max(1, max_raw_ranges):
        gaps = [dirty[i + 1][0] - dirty[i][1] for i in range(len(dirty) - 1)]
        i = int(np.argmin(gaps))
        dirty[i][1] = dirty[i + 1][1]
        del dirty[i + 1]
    raw.extend((a, b) for a, b in dirty)
    clean: list[tuple[datetime, datetime]] = []
    cursor = s1
    for a, b in dirty:
        if cursor < a:
            clean.append((cursor, a))
        cursor = b
    if cursor < e1:
        clean.append((cursor, e1))
    minute: list[tuple[datetime, datetime]] = []
    hour: list[tuple[datetime, datetime]] = []
    day: list[tuple[datetime, datetime]] = []

    def split(a: datetime, b: datetime, unit: timedelta, into: list, rest: Callable) -> None:
        """[a, b): its whole `unit`s into `into`, the edges to `rest`."""
        u0, u1 = _ceil(a, unit), _floor(b, unit)
        if u0 >= u1:
            rest(a, b)
            return
        if a < u0:
            rest(a, u0)
        into.append((u0, u1))
        if u1 < b:
            rest(u1, b)

    def by_hour(a: datetime, b: datetime) -> None:
        if hours:
            split(a, b, HOUR, hour, lambda x, y: minute.append((x, y)))
        else:
            minute.append((a, b))

    for a, b in clean:
        if days and hours:
            split(a, b, DAY, day, by_hour)
        else:
            by_hour(a, b)
    return ReadPlan(tuple(sorted(raw)), tuple(sorted(minute)), tuple(sorted(hour)), tuple(day))


# ---------------------------------------------------------------------------------------------
# Event families and aggregation
# ---------------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Aggregates of one group: exact counts and sums, percentiles exact or from sketches (ms)."""

    count: int = 0
    errors: int = 0
    cache_hits: int = 0
    sum_ms: float = 0.0
    min_ms: float | None = None
    max_ms: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    sums: dict[str, float] = field(default_factory=dict)
    parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)  # sketch pieces

    @property
    def mean_ms(self) -> float | None:
        return self.sum_ms / self.count if self.count else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def success_rate(self) -> float:
        return 1.0 - self.error_rate if self.count else 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.count if self.count else 0.0

    def outcomes(self) -> dict[str, Any]:
        """Success and error counts and rates, cache hits and hit rate (source document 000's names)."""
        return {
            "success_count": self.count - self.errors,
            "error_count": self.errors,
            "success_rate": self.success_rate,
            "error_rate": self.error_rate,
            "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hit_rate,
        }

    def add(self, count: int, errors: int, hits: int, sum_ms: float, mn: float | None, mx: float | None,
            sums: Mapping[str, float]) -> None:  # fmt: skip
        self.count += int(count or 0)
        self.errors += int(errors or 0)
        self.cache_hits += int(hits or 0)
        self.sum_ms += float(sum_ms or 0.0)
        if mn is not None:
            self.min_ms = float(mn) if self.min_ms is None else min(self.min_ms, float(mn))
        if mx is not None:
            self.max_ms = float(mx) if self.max_ms is None else max(self.max_ms, float(mx))
        for k, v in sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v or 0)

    def add_sketch(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """A piece of the latency sketch (bucket indexes and their counts)."""
        if len(keys):
            self.parts.append((keys, counts))

    @property
    def sketch(self) -> Sketch | None:
        """The merged latency sketch of the rollup path (None on the exact path)."""
        if not self.parts:
            return None
        keys, counts = _merge_parts(self.parts)
        return Sketch(dict(zip(keys.tolist(), counts.tolist(), strict=True)))

    def finish_sketch(self) -> None:
        """Percentiles from the merged sketch pieces, clamped to the exact min and max."""
        if not self.parts:
            return
        keys, counts = _merge_parts(self.parts)
        self.parts = [(keys, counts)]
        qs = sketch_quantiles(keys, counts, QUANTILES)
        lo = self.min_ms if self.min_ms is not None else -math.inf
        hi = self.max_ms if self.max_ms is not None else math.inf
        self.p50, self.p95, self.p99 = (min(max(q, lo), hi) if q is not None else None for q in qs)


def _merge_parts(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    lo = int(keys.min())
    dense = np.bincount(keys - lo, weights=counts).astype(np.int64)
    nz = np.nonzero(dense)[0]
    return nz + lo, dense[nz]


def sketch_quantiles(keys: np.ndarray, counts: np.ndarray, qs: Sequence[float]) -> list[float | None]:
    """`Sketch.quantiles` over sorted bucket indexes and counts (one searchsorted for all ranks)."""
    cum = np.cumsum(counts)
    n = int(cum[-1]) if len(cum) else 0
    if n == 0:
        return [None for _ in qs]
    ranks = []
    for q in qs:
        r = q * (n - 1)
        lo = math.floor(r)
        ranks.append((r, lo, min(lo + 1, n - 1)))
    pos = np.searchsorted(cum, [x for _, lo, hi in ranks for x in (lo + 1, hi + 1)]).tolist()
    out: list[float | None] = []
    for i, (r, lo, _) in enumerate(ranks):
        a = 2.0 * GAMMA ** int(keys[pos[2 * i]]) / (GAMMA + 1.0)
        b = 2.0 * GAMMA ** int(keys[pos[2 * i + 1]]) / (GAMMA + 1.0)
        out.append(a + (r - lo) * (b - a))
    return out


@dataclass
class Aggregate:
    """Stats per group key (a tuple: [time bucket,] group columns), and how they were read."""

    groups: dict[tuple, Stats]
    approximate: bool
    source: str  # "raw" | "rollup"

    def one(self) -> Stats:
        """The single group of an ungrouped aggregate (empty Stats when there was no data)."""
        return self.groups.get((), Stats())


def filter_clause(table: sa.Table, filters: Mapping[str, Any], rollup: bool) -> list[sa.ColumnElement]:
    out = []
    for name, value in filters.items():
        col = table.c[name]
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        named = [v for v in values if v is not None]
        conds = []
        if named:
            conds.append(col.in_(named) if len(named) > 1 else col == named[0])
        if len(named) < len(values):  # None asked for: rows without that name
            conds.append(col == NO_NAME if rollup else col.is_(None))
        out.append(sa.or_(*conds) if len(conds) > 1 else conds[0])
    return out


def _key_value(value: Any) -> Any:
    if value == NO_NAME:
        return None
    return value


def dirty_minutes(
    store: Store, conn: sa.Connection, kind: str, start: datetime, end: datetime
) -> list[datetime]:
    """Minutes of `kind` ('ops' | 'llm') in [start, end) whose rollups are not recomputed yet."""
    d = schema.rollup_dirty
    rows = conn.execute(
        sa.select(d.c.minute).where(d.c.kind == kind, d.c.minute >= floor_minute(start), d.c.minute < end)
    ).scalars()
    return [as_datetime(m) for m in rows]


def aggregate(
    store: Store,
    family: Family,
    start: datetime,
    end: datetime,
    *,
    group_by: Sequence[str] = (),
    filters: Mapping[str, Any] | None = None,
    granularity: str | None = None,
    percentiles: bool = True,
    rollups: bool | None = None,
    conn: sa.Connection | None = None,
) -> Aggregate:
    """Aggregate `family` rows in [start, end) per group in SQL.

    `group_by` / `filters` name columns (filter values may be lists; None matches a missing bot or
    agent). With `granularity` ('minute' | 'hour' | 'day') the first key element is the bucket
    start. `rollups=None` decides by window length (24 hours and longer read rollups); time series
    always read rollups where the family has them. Groups and filters on columns that are not
    rollup keys force the raw path.
    """
    filters = dict(filters or {})
    cols = set(group_by) | set(filters)
    rollup_ok = family.minute is not None and cols <= set(family.keys)
    if rollups is None:
        rollups = granularity is not None or (end - start).total_seconds() >= ROLLUP_WINDOW_S
    rollups = rollups and rollup_ok
    if conn is None:
        with store.connect() as c:
            return aggregate(store, family, start, end, group_by=group_by, filters=filters,
                             granularity=granularity, percentiles=percentiles, rollups=rollups, conn=c)  # fmt: skip
    if not rollups:
        groups = _raw_exact(store, conn, family, start, end, group_by, filters, granularity, percentiles)
        return Aggregate(groups, approximate=False, source="raw")
    plan = plan_ranges(
        start, end, dirty_minutes(store, conn, family.dirty_kind, start, end),
        hours=granularity in (None, "hour", "day"), days=family.day is not None and granularity in (None, "day"),
    )  # fmt: skip
    groups: dict[tuple, Stats] = defaultdict(Stats)
    pieces = [
        (family.raw, plan.raw, False),
        (family.minute, plan.minute, True),
        (family.hour, plan.hour, True),
        (family.day, plan.day, True),
    ]
    for table, ranges, is_rollup in pieces:
        if not ranges:
            continue
        if is_rollup and percentiles:
            _rollup_rows_into(store, conn, family, table, ranges, group_by, filters, granularity, groups)
            continue
        _sums_into(store, conn, family, table, ranges, is_rollup, group_by, filters, granularity, groups)
        if percentiles:
            _raw_sketch_into(store, conn, family, table, ranges, group_by, filters, granularity, groups)
    for s in groups.values():
        s.finish_sketch()
    return Aggregate(dict(groups), approximate=percentiles, source="rollup")


def _group_cols(store: Store, family: Family, table: sa.Table, is_rollup: bool, group_by: Sequence[str],
                granularity: str | None) -> list[sa.ColumnElement]:  # fmt: skip
    time_col = table.c.bucket if is_rollup else table.c.ts
    cols: list[sa.ColumnElement] = []
    if granularity is not None:
        cols.append(trunc_expr(store, time_col, granularity))
    for name in group_by:
        col = table.c[name]
        cols.append(col if is_rollup or name not in family.nullable_keys else sa.func.coalesce(col, NO_NAME))
    return cols


def _key(row: Sequence, n: int, granularity: str | None) -> tuple:
    key = tuple(_key_value(v) for v in row[:n])
    if granularity is not None:
        key = (as_datetime(row[0]), *key[1:])
    return key


def _sums_into(store: Store, conn: sa.Connection, family: Family, table: sa.Table,
               ranges: Sequence[tuple[datetime, datetime]], is_rollup: bool, group_by: Sequence[str],
               filters: Mapping[str, Any], granularity: str | None, groups: dict[tuple, Stats]) -> None:  # fmt: skip
    gcols = _group_cols(store, family, table, is_rollup, group_by, granularity)
    if is_rollup:
        aggs = [sa.func.sum(table.c["count"]), sa.func.sum(table.c.errors), sa.func.sum(table.c.cache_hits),
                sa.func.sum(table.c.sum_ms), sa.func.min(table.c.min_ms), sa.func.max(table.c.max_ms)]  # fmt: skip
        where = [in_ranges(table.c.bucket, ranges)]
    else:
        lat = table.c[family.latency]
        aggs = [sa.func.count(), count_false(table.c.success), count_true(table.c.cache_hit), sa.func.sum(lat),
                sa.func.min(lat), sa.func.max(lat)]  # fmt: skip
        where = [in_ranges(table.c.ts, ranges)]
    aggs += [sa.func.sum(table.c[c] if is_rollup else family.raw_sum(c, table)) for c in family.sums]
    stmt = sa.select(*gcols, *aggs).where(*where, *filter_clause(table, filters, is_rollup))
    if gcols:
        stmt = stmt.group_by(*positions(len(gcols)))
    n = len(gcols)
    for row in conn.execute(stmt):
        if row[n] is None or int(row[n]) == 0:
            continue
        sums = {c: row[n + 6 + i] for i, c in enumerate(family.sums)}
        groups[_key(row, n, granularity)].add(row[n], row[n + 1], row[n + 2], row[n + 3], row[n + 4],
                                              row[n + 5], sums)  # fmt: skip


def _raw_sketch_into(store: Store, conn: sa.Connection, family: Family, table: sa.Table,
                     ranges: Sequence[tuple[datetime, datetime]], group_by: Sequence[str],
                     filters: Mapping[str, Any], granularity: str | None, groups: dict[tuple, Stats]) -> None:  # fmt: skip
    """Sketch pieces of raw rows: bucket indexes computed and counted in SQL."""
    gcols = _group_cols(store, family, table, False, group_by, granularity)
    stmt = (
        sa.select(*gcols, bucket_sql_expr(store, table.c[family.latency]), sa.func.count())
        .where(in_ranges(table.c.ts, ranges), *filter_clause(table, filters, False))
        .group_by(*positions(len(gcols) + 1))
    )
    n = len(gcols)
    per: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for row in conn.execute(stmt).all():
        per[_key(row, n, granularity)].append((int(float(row[n])), int(row[n + 1])))
    for key, pairs in per.items():
        arr = np.array(sorted(pairs), dtype=np.int64)
        groups[key].add_sketch(arr[:, 0], arr[:, 1])


class _SketchCache:
    """Merged rollup sketches per (store, table, bucket, query shape, group), checked on every use.

    Rollup rows of closed minutes and hours rarely change, and parsing their JSON sketches is the
    expensive part of a long window. A merged sketch is kept with the exact count and latency sum
    of the rows it was merged from; a later read fetches those two figures (aggregated in SQL) and
    reuses the sketch while they are unchanged (rows are insert-only: new data changes the count).
    Least recently used entries are dropped beyond `max_entries`.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[tuple, np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, key: tuple, fingerprint: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != fingerprint:
                return None
            self._entries.move_to_end(key)
            return hit[1], hit[2]

    def put(self, key: tuple, fingerprint: tuple, keys: np.ndarray, counts: np.ndarray) -> None:
        with self._lock:
            self._entries[key] = (fingerprint, keys, counts)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


SKETCH_CACHE = _SketchCache()


def clear_sketch_cache() -> None:
    """Forget cached merged sketches (they are re-read from the rollups when needed)."""
    SKETCH_CACHE.clear()


def _rollup_rows_into(store: Store, conn: sa.Connection, family: Family, table: sa.Table,
                      ranges: Sequence[tuple[datetime, datetime]], group_by: Sequence[str],
                      filters: Mapping[str, Any], granularity: str | None, groups: dict[tuple, Stats]) -> None:  # fmt: skip
    """Sums per (rollup bucket, group) in SQL; merged sketches from the cache, parsed only on a miss."""
    gcols = [table.c[g] for g in group_by]
    where = [in_ranges(table.c.bucket, ranges), *filter_clause(table, filters, True)]
    aggs = [sa.func.sum(table.c["count"]), sa.func.sum(table.c.errors), sa.func.sum(table.c.cache_hits),
            sa.func.sum(table.c.sum_ms), sa.func.min(table.c.min_ms), sa.func.max(table.c.max_ms),
            *[sa.func.sum(table.c[c]) for c in family.sums]]  # fmt: skip
    rows = conn.execute(
        sa.select(table.c.bucket, *gcols, *aggs).where(*where).group_by(*positions(1 + len(gcols)))
    ).all()
    shape = (store.namespace_on(conn), table.name, tuple(group_by), repr(sorted(filters.items())))
    ng = len(gcols)
    missing: dict[tuple, tuple[tuple, tuple]] = {}  # (bucket, *group values) -> (cache key, fingerprint)
    targets: dict[tuple, tuple] = {}
    for row in rows:
        bucket = as_datetime(row[0])
        values = tuple(row[1 : 1 + ng])
        gkey = tuple(_key_value(v) for v in values)
        if granularity is not None:
            gkey = (_truncate(bucket, granularity), *gkey)
        count, errors, hits, sum_ms, mn, mx = row[1 + ng : 7 + ng]
        groups[gkey].add(count, errors, hits, sum_ms, mn, mx,
                         {c: row[7 + ng + i] for i, c in enumerate(family.sums)})  # fmt: skip
        ckey = (*shape, bucket, values)
        fingerprint = (int(count), round(float(sum_ms), 3))
        cached = SKETCH_CACHE.get(ckey, fingerprint)
        if cached is not None:
            groups[gkey].add_sketch(*cached)
        else:
            missing[(bucket, *values)] = (ckey, fingerprint)
            targets[(bucket, *values)] = gkey
    if not missing:
        return
    buckets = sorted({k[0] for k in missing})
    bucket_clause = table.c.bucket.in_(buckets) if len(buckets) <= 500 else in_ranges(table.c.bucket, ranges)
    parts: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    fetched = conn.execute(
        sa.select(table.c.bucket, *gcols, sa.cast(table.c.sketch, sa.Text)).where(
            bucket_clause, *filter_clause(table, filters, True)
        )
    ).all()
    wanted = [(k, row[-1]) for row in fetched if (k := (as_datetime(row[0]), *row[1 : 1 + ng])) in missing]
    for (k, _), part in zip(wanted, parse_sketches([v for _, v in wanted]), strict=True):
        parts[k].append(part)
    for k, (ckey, fingerprint) in missing.items():
        if not parts.get(k):
            continue
        keys, counts = _merge_parts(parts[k]) if len(parts[k]) > 1 else _sorted_part(*parts[k][0])
        SKETCH_CACHE.put(ckey, fingerprint, keys, counts)
        groups[targets[k]].add_sketch(keys, counts)


def _sorted_part(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys)
    return keys[order], counts[order]


def _truncate(bucket: datetime, granularity: str) -> datetime:
    if granularity == "minute":
        return bucket.replace(second=0, microsecond=0)
    if granularity == "hour":
        return bucket.replace(minute=0, second=0, microsecond=0)
    return bucket.replace(hour=0, minute=0, second=0, microsecond=0)


def _raw_exact(store: Store, conn: sa.Connection, family: Family, start: datetime, end: datetime,
               group_by: Sequence[str], filters: Mapping[str, Any], granularity: str | None,
               percentiles: bool) -> dict[tuple, Stats]:  # fmt: skip
    table = family.raw
    lat = table.c[family.latency]
    gcols = _group_cols(store, family, table, False, group_by, granularity)
    where = [table.c.ts >= start, table.c.ts < end, *filter_clause(table, filters, False)]
    aggs = [sa.func.count(), count_false(table.c.success), count_true(table.c.cache_hit), sa.func.sum(lat),
            sa.func.min(lat), sa.func.max(lat), *[sa.func.sum(family.raw_sum(c, table)) for c in family.sums]]  # fmt: skip
    pg_pct = percentiles and store.is_postgres
    if pg_pct:
        qs = postgresql.array([sa.literal(q, sa.Float) for q in QUANTILES])
        aggs.append(sa.func.percentile_cont(qs).within_group(lat).label("pct"))
    stmt = sa.select(*gcols, *aggs).where(*where)
    if gcols:
        stmt = stmt.group_by(*positions(len(gcols)))
    n = len(gcols)
    groups: dict[tuple, Stats] = {}
    for row in conn.execute(stmt):
        if not row[n]:
            continue
        s = Stats()
        sums = {c: row[n + 6 + i] for i, c in enumerate(family.sums)}
        s.add(row[n], row[n + 1], row[n + 2], row[n + 3], row[n + 4], row[n + 5], sums)
        if pg_pct:
            pct = row[-1]
            if isinstance(pct, str):  # driver without array typing
                pct = json.loads(pct.replace("{", "[").replace("}", "]"))
            s.p50, s.p95, s.p99 = (float(x) for x in pct)
        groups[_key(row, n, granularity)] = s
    if percentiles and not store.is_postgres and groups:
        # SQLite: the order statistics around each quantile, per group, picked in SQL
        pct = group_percentiles(store, conn, table, lat, gcols, sa.and_(*where), QUANTILES)
        for raw_key, vals in pct.items():
            key = _key(raw_key, n, granularity)
            if key in groups:
                groups[key].p50, groups[key].p95, groups[key].p99 = vals
    return groups
