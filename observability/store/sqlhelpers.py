"""Small SQL building blocks the analytics services, the rollup step and the console queries share.

One definition each of: counting true/false flags, GROUP BY positions, time-range clauses, time
buckets (truncated timestamps and epoch-second buckets), the latency-sketch bucket index computed
in SQL, reading a driver's timestamp back as naive UTC, and exact percentiles (linear
interpolation, the definition of `numpy.percentile` and PostgreSQL's `percentile_cont`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from observability.store import Store
from observability.store.sketch import LOG_GAMMA, MIN_VALUE

QUANTILES = (0.5, 0.95, 0.99)
GRANULARITIES: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86_400}


# ---- aggregates and clauses -----------------------------------------------------------------


def count_if(cond: sa.ColumnElement) -> sa.ColumnElement:
    """How many rows meet `cond` (0, never NULL, for no rows)."""
    return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)


def count_true(col: sa.ColumnElement) -> sa.ColumnElement:
    """How many rows have the boolean `col` true."""
    return count_if(col == sa.true())


def count_false(col: sa.ColumnElement) -> sa.ColumnElement:
    """How many rows have the boolean `col` false."""
    return count_if(col == sa.false())


def positions(n: int) -> list[sa.ColumnElement]:
    """GROUP BY 1, 2, ... n (both dialects accept positions; expressions would be repeated)."""
    return [sa.literal_column(str(i)) for i in range(1, n + 1)]


def in_ranges(col: sa.ColumnElement, ranges: Sequence[tuple[datetime, datetime]]) -> sa.ColumnElement:
    """`col` within any of the half-open ranges [a, b)."""
    return sa.or_(*[sa.and_(col >= a, col < b) for a, b in ranges])


# ---- time -----------------------------------------------------------------------------------


def as_datetime(value: object) -> datetime | None:
    """A timestamp as the driver returns it (datetime or ISO text on SQLite) as naive UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def trunc_expr(store: Store, col: sa.ColumnElement, granularity: str) -> sa.ColumnElement:
    """The start of the minute / hour / day containing `col`."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {sorted(GRANULARITIES)}, got {granularity!r}")
    if store.is_postgres:
        return sa.func.date_trunc(granularity, col)
    fmt = {"minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}
    return sa.func.strftime(fmt[granularity], col)


def epoch_bucket(store: Store, col: sa.ColumnElement, step_s: int) -> sa.ColumnElement:
    """Start of the `step_s`-second bucket holding `col`, as integer epoch seconds."""
    if store.is_postgres:
        return sa.cast(sa.func.floor(sa.extract("epoch", col) / step_s) * step_s, sa.BigInteger)
    return (sa.cast(sa.func.strftime("%s", col), sa.Integer) // step_s) * step_s


def bucket_sql_expr(store: Store, col: sa.ColumnElement) -> sa.ColumnElement:
    """The latency sketch's bucket index of `col` (`sketch.bucket_of`), computed in SQL."""
    return sa.func.ceil(sa.func.ln(store.greatest(col, sa.literal(MIN_VALUE))) / sa.literal(LOG_GAMMA))


# ---- exact percentiles ----------------------------------------------------------------------


def exact_percentiles(values: Sequence[float], qs: Sequence[float] = QUANTILES) -> list[float | None]:
    """numpy.percentile's default (linear) method, the same as PostgreSQL's percentile_cont; None
    for each quantile when there are no values."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return [None for _ in qs]
    return [float(x) for x in np.percentile(arr, [q * 100 for q in qs])]


def group_percentiles(
    store: Store,
    conn: sa.Connection,
    table: sa.FromClause,
    value_col: sa.ColumnElement,
    group_cols: Sequence[sa.ColumnElement],
    where: sa.ColumnElement,
    qs: Sequence[float] = QUANTILES,
) -> dict[tuple, list[float | None]]:
    """Exact percentiles (linear interpolation) of `value_col` per group, computed in SQL.

    Keys are the tuples of group values as the driver returns them (`()` without groups).
    PostgreSQL: percentile_cont. SQLite: row_number() over each group, fetching only the two order
    statistics around each quantile, so no group's rows leave the database.
    """
    labelled = [c.label(f"g{i}") for i, c in enumerate(group_cols)]
    ng = len(labelled)
    if store.is_postgres:
        cols = [sa.func.percentile_cont(q).within_group(value_col.asc()) for q in qs]
        stmt = sa.select(*labelled, *cols).select_from(table).where(where)
        if labelled:
            stmt = stmt.group_by(*positions(ng))
        out = {}
        for r in conn.execute(stmt):
            if all(v is None for v in r[ng:]):
                continue  # no rows (an ungrouped aggregate still returns one row)
            out[tuple(r[:ng])] = [None if v is None else float(v) for v in r[ng:]]
        return out
    part = list(group_cols)
    rn = sa.func.row_number().over(partition_by=part or None, order_by=value_col) - 1
    n = sa.func.count().over(partition_by=part or None)
    inner = sa.select(*labelled, value_col.label("v"), rn.label("rn"), n.label("n")).select_from(table)
    inner = inner.where(where).subquery()
    conds = []
    for q in qs:
        lo = sa.cast(q * (inner.c.n - 1), sa.Integer)
        conds += [inner.c.rn == lo, inner.c.rn == lo + 1]
    gcols = [inner.c[f"g{i}"] for i in range(ng)]
    stmt = sa.select(*gcols, inner.c.v, inner.c.rn, inner.c.n).where(sa.or_(*conds))
    stats: dict[tuple, dict[int, float]] = defaultdict(dict)
    sizes: dict[tuple, int] = {}
    for r in conn.execute(stmt):
        key = tuple(r[:ng])
        stats[key][int(r.rn)] = float(r.v)
        sizes[key] = int(r.n)
    out = {}
    for key, by_rank in stats.items():
        n_ = sizes[key]
        vals: list[float | None] = []
        for q in qs:
            pos = q * (n_ - 1)
            lo = int(pos)
            hi = min(lo + 1, n_ - 1)
            a, b = by_rank.get(lo), by_rank.get(hi, by_rank.get(lo))
            vals.append(None if a is None else a + (pos - lo) * ((b if b is not None else a) - a))
        out[key] = vals
    return out
