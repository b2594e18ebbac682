"""An account's LLM usage over a window: calls, errors, tokens, spend and latency percentiles.

An account's calls are the calls of its conversations (`rollups.account_calls`). Read like every
other window (`window.py`): shorter than 24 hours, the raw calls with exact percentiles; 24 hours
and longer, the full UTC days from `rollup_account_day`, the other full hours from
`rollup_account_hour` (sums exact, percentiles from the merged sketches within 1%) and the partial
hours at the edges, and hours with a minute not rolled up yet, from the raw calls. The work is
bounded by the days and hours of the window, not by how many calls the account made, which is what
lets a per-account view stay fast as the store grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from observability.analytics.window import (
    Stats,
    dirty_minutes,
    plan_ranges,
    reads_rollups,
)
from observability.store import Store, schema
from observability.store.rollups import ACCOUNT_SUMS, account_calls
from observability.store.sketch import parse_sketches
from observability.store.sqlhelpers import (
    QUANTILES,
    bucket_sql_expr,
    count_false,
    group_percentiles,
    in_ranges,
    positions,
)
from observability.timeutil import Window, window_bounds


@dataclass
class AccountUsage:
    account_id: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    mean_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    approximate: bool  # percentiles from rollup sketches (within 1%)
    source: str  # "raw" | "rollup"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def account_llm_usage(
    store: Store, account_id: str, window: Window | None = "7d", *, now: datetime | None = None
) -> AccountUsage:
    """The account's LLM calls in the window (see the module docstring for how it is read)."""
    start, end = window_bounds(window, now)
    rollup = reads_rollups(window)
    st = Stats()
    with store.connect() as conn:
        raw_ranges: tuple[tuple[datetime, datetime], ...] = ((start, end),)
        if rollup:
            plan = plan_ranges(start, end, dirty_minutes(store, conn, "llm", start, end), days=True)
            raw_ranges = tuple(sorted(plan.raw + plan.minute))
            for table, ranges in (
                (schema.rollup_account_day, plan.day),
                (schema.rollup_account_hour, plan.hour),
            ):
                if ranges:
                    _rollup_into(conn, table, account_id, ranges, st)
        if raw_ranges:
            _raw_into(store, conn, account_id, raw_ranges, st, exact=not rollup)
    if rollup:
        st.finish_sketch()
    return AccountUsage(
        account_id=account_id, calls=st.count, errors=st.errors,
        input_tokens=int(st.sums.get("input_tokens", 0)), output_tokens=int(st.sums.get("output_tokens", 0)),
        cost_usd=float(st.sums.get("cost_usd", 0.0)), mean_latency_ms=st.mean_ms, p50_latency_ms=st.p50,
        p95_latency_ms=st.p95, p99_latency_ms=st.p99, approximate=rollup, source="rollup" if rollup else "raw",
    )  # fmt: skip


def _rollup_into(conn: sa.Connection, r: sa.Table, account_id: str, ranges: tuple[tuple[datetime, datetime], ...],
                 st: Stats) -> None:  # fmt: skip
    rows = conn.execute(
        sa.select(r.c.calls, r.c.errors, r.c.sum_ms, r.c.min_ms, r.c.max_ms, *[r.c[k] for k in ACCOUNT_SUMS],
                  sa.cast(r.c.sketch, sa.Text))
        .where(r.c.account_id == account_id, in_ranges(r.c.bucket, ranges))
    ).all()  # fmt: skip
    for row in rows:
        st.add(row[0], row[1], 0, row[2], row[3], row[4], {k: row[5 + i] for i, k in enumerate(ACCOUNT_SUMS)})
    for keys, counts in parse_sketches([row[-1] for row in rows]):
        if len(keys):
            order = np.argsort(keys)
            st.add_sketch(keys[order], counts[order])


def _raw_into(store: Store, conn: sa.Connection, account_id: str, ranges: tuple[tuple[datetime, datetime], ...],
              st: Stats, *, exact: bool) -> None:  # fmt: skip
    raw, conv = schema.llm_calls, schema.conversations
    src, _ = account_calls(store, ranges[0][0], ranges[-1][1])
    where = sa.and_(conv.c.account_id == account_id, in_ranges(raw.c.ts, ranges))
    lat = raw.c.latency_ms
    row = conn.execute(
        sa.select(sa.func.count(), count_false(raw.c.success), sa.func.sum(lat), sa.func.min(lat), sa.func.max(lat),
                  *[sa.func.sum(raw.c[k]) for k in ACCOUNT_SUMS])
        .select_from(src).where(where)
    ).one()  # fmt: skip
    if not row[0]:
        return
    st.add(row[0], row[1], 0, row[2], row[3], row[4], {k: row[5 + i] for i, k in enumerate(ACCOUNT_SUMS)})
    if exact:
        pct = group_percentiles(store, conn, src, lat, (), where, QUANTILES).get(())
        if pct:
            st.p50, st.p95, st.p99 = pct
        return
    pairs = conn.execute(
        sa.select(bucket_sql_expr(store, lat), sa.func.count())
        .select_from(src)
        .where(where)
        .group_by(*positions(1))
    ).all()
    arr = np.array(sorted((int(float(b)), int(n)) for b, n in pairs), dtype=np.int64)
    st.add_sketch(arr[:, 0], arr[:, 1])
