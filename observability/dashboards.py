"""Aggregates the console pages need beyond the analytics services: SQL only, never raw rows in bulk.

Every function takes a `Store` (and `now=` where a window is involved) and returns small pandas
frames or dataclasses, so pages can cache them (`observability.ui.data`) and tests can call them
without Streamlit.

Where the data comes from, by window:
- up to 1 hour: raw event tables (exact percentiles, linear interpolation like numpy / percentile_cont);
- up to 6 hours: per-minute rollups (`rollup_*_minute`);
- longer: per-hour rollups (`rollup_*_hour`). Rollup percentiles come from mergeable sketches
  (within 1% relative error); `source_of(window)` names the source so pages can say so.

State-changing functions (`set_monthly_budget`, `mark_activity_read`) take the acting user's name
and check the permission themselves (`observability.auth.authorize`).
"""

from __future__ import annotations

import json
import math
from calendar import monthrange
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from observability import auth, schema
from observability import performance as perf
from observability.settings import DATA_DIR, get_settings
from observability.store import Store
from observability.timeutil import floor_hour, from_epoch, to_naive_utc, utcnow

WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# chart bucket per window (seconds)
BUCKETS = {"15m": 60, "1h": 60, "6h": 60, "24h": 3600, "7d": 3600, "30d": 86400}
QS = (0.5, 0.95, 0.99)
ACTIVE_CONVERSATION_S = 900
BUDGET_KEY = "monthly_budget"
FIRING_STATES = ("firing", "acknowledged")
HIGH_SEVERITIES = ("high", "critical")

# SLA targets of source document 000 (used when data/sla_targets.json is absent)
DEFAULT_SLA_TARGETS: tuple[tuple[str, str, float, float, float], ...] = (
    ("lead_bot", "full_qualification", 500, 2000, 3000),
    ("lead_bot", "process", 300, 1500, 2000),
    ("lead_bot", "handoff", 100, 500, 800),
    ("buyer_bot", "full_qualification", 800, 2500, 3500),
    ("buyer_bot", "process", 400, 1800, 2500),
    ("buyer_bot", "handoff", 100, 500, 800),
    ("seller_bot", "full_qualification", 700, 2500, 3500),
    ("seller_bot", "process", 400, 1800, 2500),
    ("seller_bot", "handoff", 100, 500, 800),
    ("handoff", "execute", 100, 500, 800),
)


# ---- small helpers ----------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return to_naive_utc(now) if now is not None else utcnow()


def window_seconds(window: str | int | float) -> int:
    if isinstance(window, (int, float)):
        return int(window)
    try:
        return WINDOWS[window]
    except KeyError:
        raise ValueError(f"unknown window {window!r}; one of {', '.join(WINDOWS)}") from None


def bucket_seconds(window: str | int) -> int:
    if isinstance(window, str) and window in BUCKETS:
        return BUCKETS[window]
    s = window_seconds(window)
    return 60 if s <= 6 * 3600 else 3600 if s <= 7 * 86400 else 86400


def source_of(window: str | int) -> str:
    """'raw' (exact percentiles) under 24 hours, else 'rollup' (percentiles within 1%)."""
    return "raw" if window_seconds(window) < perf.ROLLUP_WINDOW_S else "rollup"


def source_note(window: str | int) -> str:
    if source_of(window) == "raw":
        return "exact, from raw events (charts over time from per-minute rollups)"
    return "from per-minute and per-hour rollups: sums exact, percentiles within 1%"


def _epoch_bucket(store: Store, col: sa.ColumnElement, step_s: int) -> sa.ColumnElement:
    """Start of the `step_s` bucket holding `col`, as integer epoch seconds."""
    if store.is_postgres:
        return sa.cast(sa.func.floor(sa.extract("epoch", col) / step_s) * step_s, sa.BigInteger)
    return (sa.cast(sa.func.strftime("%s", col), sa.Integer) // step_s) * step_s


def _truthy(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.sum(sa.case((col == sa.true(), 1), else_=0)), 0)


def _falsy(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.sum(sa.case((col == sa.false(), 1), else_=0)), 0)


def _dt(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def _bots_clause(col: sa.ColumnElement, bots: Sequence[str] | None) -> sa.ColumnElement:
    return col.in_(list(bots)) if bots else sa.true()


def _frame(rows: Iterable, columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def percentiles_exact(values: Sequence[float], qs: Sequence[float] = QS) -> list[float | None]:
    """numpy.percentile's linear method; None for no values."""
    if len(values) == 0:
        return [None for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, dtype=float), [q * 100 for q in qs])]


def group_percentiles(
    store: Store,
    conn: sa.Connection,
    table: sa.Table,
    value_col: sa.ColumnElement,
    group_cols: Sequence[sa.ColumnElement],
    where: sa.ColumnElement,
    qs: Sequence[float] = QS,
) -> dict[tuple, list[float | None]]:
    """Exact percentiles (linear interpolation) per group, computed in SQL.

    PostgreSQL: percentile_cont. SQLite: row_number() over each group, fetching only the two order
    statistics around each quantile, so no group's rows leave the database.
    """
    labelled = [c.label(f"g{i}") for i, c in enumerate(group_cols)]
    if store.is_postgres:
        cols = [sa.func.percentile_cont(q).within_group(value_col.asc()) for q in qs]
        stmt = sa.select(*labelled, *cols).select_from(table).where(where)
        if labelled:
            stmt = stmt.group_by(*[sa.literal_column(str(i + 1)) for i in range(len(labelled))])
        out = {}
        for r in conn.execute(stmt):
            out[tuple(r[: len(labelled)])] = [None if v is None else float(v) for v in r[len(labelled) :]]
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
    gcols = [inner.c[f"g{i}"] for i in range(len(labelled))]
    stmt = sa.select(*gcols, inner.c.v, inner.c.rn, inner.c.n).where(sa.or_(*conds))
    stats: dict[tuple, dict[int, float]] = defaultdict(dict)
    sizes: dict[tuple, int] = {}
    for r in conn.execute(stmt):
        key = tuple(r[: len(gcols)])
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


# ---- aggregates over LLM calls and bot operations (the analytics services' read planner) -------

_LLM_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
             "cost_saved_usd")  # fmt: skip
_GRANULARITY = {60: "minute", 3600: "hour", 86400: "day"}


def _stats_frame(agg: perf.Aggregate, keys: Sequence[str], timed: bool, percentiles: bool) -> pd.DataFrame:
    rows = []
    for key, st in agg.groups.items():
        row: dict = {}
        k = list(key)
        if timed:
            row["ts"] = k.pop(0)
        for name, v in zip(keys, k, strict=True):
            row[name] = "(none)" if v is None else v
        row.update(requests=st.count, errors=st.errors, cache_hits=st.cache_hits, sum_ms=st.sum_ms)
        for c, v in st.sums.items():
            row[c] = v
        if percentiles:
            row.update(p50=st.p50, p95=st.p95, p99=st.p99)
        rows.append(row)
    return pd.DataFrame(rows)


def _aggregate(
    family: perf.Family,
    store: Store,
    window: str | int,
    bots: Sequence[str] | None,
    keys: Sequence[str],
    bucket_s: int | None = None,
    now: datetime | None = None,
    percentiles: bool = False,
) -> pd.DataFrame:
    """`performance.aggregate` over [now - window, now) as a frame: [ts], *keys, requests, errors,
    cache_hits, sum_ms, family sums, [p50, p95, p99], plus error/cache-hit rates, mean and cost per
    request. Windows under 24 h read raw rows (exact); longer windows and every time series read
    rollups (sums exact, percentiles within 1%), with raw rows for the ragged edges."""
    end = _now(now)
    start = end - timedelta(seconds=window_seconds(window))
    filters = {"bot": list(bots)} if bots else None
    gran = _GRANULARITY[bucket_s] if bucket_s else None
    agg = perf.aggregate(store, family, start, end, group_by=tuple(keys), filters=filters, granularity=gran,
                         percentiles=percentiles)  # fmt: skip
    df = _stats_frame(agg, keys, bucket_s is not None, percentiles)
    if df.empty and not keys and not bucket_s:
        df = pd.DataFrame([{"requests": 0, "errors": 0, "cache_hits": 0, "sum_ms": 0.0,
                            **{c: 0 for c in family.sums}}])  # fmt: skip
    return _finish(df, bucket_s)


def _llm_aggregate(store: Store, window: str | int, bots: Sequence[str] | None, keys: Sequence[str],
                   bucket_s: int | None = None, now: datetime | None = None,
                   percentiles: bool = False) -> pd.DataFrame:  # fmt: skip
    """LLM calls grouped by `keys` (model, provider, bot, agent) and optionally time buckets."""
    return _aggregate(perf.LLM, store, window, bots, keys, bucket_s, now, percentiles)


def _ops_aggregate(store: Store, window: str | int, bots: Sequence[str] | None, keys: Sequence[str],
                   bucket_s: int | None = None, now: datetime | None = None,
                   percentiles: bool = False) -> pd.DataFrame:  # fmt: skip
    """Bot operations grouped by `keys` (bot, operation) and optionally time buckets."""
    return _aggregate(perf.OPS, store, window, bots, keys, bucket_s, now, percentiles)


def _finish(df: pd.DataFrame, bucket_s: int | None) -> pd.DataFrame:
    if df.empty:
        return df
    for c in df.columns:
        if c in ("requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_write_tokens"):  # fmt: skip
            df[c] = pd.to_numeric(df[c]).fillna(0).astype("int64")
        elif c in ("cost_usd", "cost_saved_usd", "sum_ms", "p50", "p95", "p99"):
            df[c] = pd.to_numeric(df[c]).astype(float)
    if bucket_s and "ts" in df.columns:
        df["ts"] = pd.to_datetime(df["ts"])
        df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    if "requests" in df.columns:
        req = df["requests"].where(df["requests"] > 0)
        df["error_rate"] = (df["errors"] / req).fillna(0.0)
        df["cache_hit_rate"] = (df["cache_hits"] / req).fillna(0.0)
        df["mean_ms"] = (df["sum_ms"] / req).fillna(0.0)
        if "cost_usd" in df.columns:
            df["cost_per_request"] = (df["cost_usd"] / req).fillna(0.0)
    return df


# ---- overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewKpis:
    requests_per_min: float
    error_rate: float
    p95_latency_ms: float | None
    spend_today_usd: float
    active_conversations: int
    firing_alerts: int
    requests_last_5m: int


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def spend_between(store: Store, start: datetime, end: datetime) -> float:
    """LLM spend in [start, end]: whole hours from hour rollups, the ragged edges from raw rows."""
    t, h = schema.llm_calls, schema.rollup_llm_hour
    first_full = floor_hour(start) if start == floor_hour(start) else floor_hour(start) + timedelta(hours=1)
    last_full = floor_hour(end)  # hours [first_full, last_full) are complete
    with store.connect() as conn:
        if first_full >= last_full:
            v = conn.execute(
                sa.select(sa.func.sum(t.c.cost_usd)).where(t.c.ts >= start, t.c.ts <= end)
            ).scalar()
            return float(v or 0.0)
        mid = conn.execute(
            sa.select(sa.func.sum(h.c.cost_usd)).where(h.c.bucket >= first_full, h.c.bucket < last_full)
        ).scalar()
        edges = conn.execute(
            sa.select(sa.func.sum(t.c.cost_usd)).where(
                sa.or_(
                    sa.and_(t.c.ts >= start, t.c.ts < first_full), sa.and_(t.c.ts >= last_full, t.c.ts <= end)
                )
            )
        ).scalar()
    return float(mid or 0.0) + float(edges or 0.0)


def firing_alert_count(store: Store) -> int:
    with store.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.alerts)
                .where(schema.alerts.c.state.in_(FIRING_STATES))
            ).scalar()
            or 0
        )


def active_conversation_count(
    store: Store, now: datetime | None = None, window_s: int = ACTIVE_CONVERSATION_S
) -> int:
    """Conversations with activity in the last `window_s` seconds that are not stopped."""
    c = schema.conversations
    since = _now(now) - timedelta(seconds=window_s)
    with store.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(c)
                .where(c.c.last_activity_at >= since, c.c.state != "stopped")
            ).scalar()
            or 0
        )


def overview_kpis(store: Store, now: datetime | None = None) -> OverviewKpis:
    """Home page headline, from the analytics services: requests/min and error rate over the last
    5 minutes (LLMObservabilityService.dashboard(300)), P95 latency over the last hour (exact,
    latency_report), spend today (UTC), active conversations (last 15 min), firing or acknowledged
    alerts."""
    from observability.llm_observability import LLMObservabilityService

    now = _now(now)
    svc = LLMObservabilityService(store)
    five = svc.dashboard(300, now=now)
    hour = svc.latency_report(None, 3600, now=now)
    today = perf.aggregate(store, perf.LLM, day_start(now), now, percentiles=False, rollups=True).one()
    return OverviewKpis(
        requests_per_min=five.requests_per_minute,
        error_rate=five.error_rate,
        p95_latency_ms=hour.p95 if hour.count else None,
        spend_today_usd=float(today.sums.get("cost_usd", 0) or 0),
        active_conversations=active_conversation_count(store, now),
        firing_alerts=firing_alert_count(store),
        requests_last_5m=five.total_requests,
    )


def requests_series(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """LLM requests and errors per bucket and bot: columns ts, bot, requests, errors, ..."""
    return _llm_aggregate(store, window, bots, ["bot"], bucket_seconds(window), now)


def latency_by_bot(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """LLM latency P50/P95/P99 per bot over the window."""
    return _llm_aggregate(store, window, bots, ["bot"], None, now, percentiles=True)


def known_bots(store: Store) -> list[str]:
    """Bots seen in the rollups and raw operations (for filters); cheap."""
    names: set[str] = set()
    with store.connect() as conn:
        for t in (schema.rollup_llm_hour, schema.rollup_ops_hour):
            names.update(r[0] for r in conn.execute(sa.select(t.c.bot).distinct()) if r[0])
        if not names:
            since = utcnow() - timedelta(hours=1)
            for t in (schema.llm_calls, schema.bot_operations):
                names.update(
                    r[0] for r in conn.execute(sa.select(t.c.bot).where(t.c.ts >= since).distinct()) if r[0]
                )
    return sorted(names)


# ---- bot health -------------------------------------------------------------------------------


def sla_targets() -> pd.DataFrame:
    """SLA targets per bot and operation (data/sla_targets.json if shipped, else source doc 000)."""
    rows: list[tuple] = []
    path = DATA_DIR / "sla_targets.json"
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
            items = raw.get("targets", raw) if isinstance(raw, dict) else raw
            if isinstance(items, dict):  # {"lead_bot": {"process": {"p50": .., ...}}}
                for bot, ops in items.items():
                    for op, t in ops.items():
                        rows.append((bot, op, float(t.get("p50", t.get("p50_ms"))),
                                     float(t.get("p95", t.get("p95_ms"))), float(t.get("p99", t.get("p99_ms")))))  # fmt: skip
            else:
                for t in items:
                    rows.append((t["bot"], t["operation"], float(t.get("p50_ms", t.get("p50"))),
                                 float(t.get("p95_ms", t.get("p95"))), float(t.get("p99_ms", t.get("p99")))))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError):
            rows = []
    if not rows:
        rows = list(DEFAULT_SLA_TARGETS)
    return pd.DataFrame(rows, columns=["bot", "operation", "target_p50", "target_p95", "target_p99"])


def sla_report(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
               now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bot and operation: requests, error and cache-hit rate, P50/P95/P99 against SLA targets.

    `compliant` is True when every measured percentile is within its target, None without a target.
    """
    stats = _ops_aggregate(store, window, bots, ["bot", "operation"], None, now, percentiles=True)
    if stats.empty:
        return stats
    df = stats.merge(sla_targets(), on=["bot", "operation"], how="left")
    ok = (df["p50"] <= df["target_p50"]) & (df["p95"] <= df["target_p95"]) & (df["p99"] <= df["target_p99"])
    df["compliant"] = ok.where(df["target_p95"].notna(), None)
    viol = []
    for r in df.itertuples(index=False):
        v = [f"{p.upper()} {getattr(r, p):,.0f} ms > {getattr(r, 'target_' + p):,.0f} ms"
             for p in ("p50", "p95", "p99")
             if pd.notna(getattr(r, "target_" + p)) and getattr(r, p) is not None and getattr(r, p) > getattr(r, "target_" + p)]  # fmt: skip
        viol.append("; ".join(v))
    df["violations"] = viol
    return df.sort_values(["bot", "operation"]).reset_index(drop=True)


def bot_throughput(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bot: operations, per minute, error rate, cache hit rate and P50/P95/P99 over the window."""
    df = _ops_aggregate(store, window, bots, ["bot"], None, now, percentiles=True)
    if not df.empty:
        df["per_min"] = df["requests"] / (window_seconds(window) / 60.0)
    return df


def ops_latency_series(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                       now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per time bucket and bot: P50/P95/P99 of operation durations, requests, error rate."""
    return _ops_aggregate(store, window, bots, ["bot"], bucket_seconds(window), now, percentiles=True)


def slow_bots(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
              now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Which bot is slow, since when, and what it costs: one row per (bot, operation) whose P95 in
    its latest bucket (one of the last five) is above its SLA target, with the start of that breach
    (the first bucket of the current run of breaching buckets; buckets without operations are
    skipped), its P95 now and the bot's LLM spend over the window."""
    cols = ["bot", "operation", "p95_now", "target_p95", "breaching_since", "buckets", "spend_usd"]
    series = _ops_aggregate(
        store, window, bots, ["bot", "operation"], bucket_seconds(window), now, percentiles=True
    )
    if series.empty:
        return pd.DataFrame(columns=cols)
    series = series.merge(sla_targets(), on=["bot", "operation"], how="inner")
    if series.empty:
        return pd.DataFrame(columns=cols)
    spend = _llm_aggregate(store, window, bots, ["bot"], None, now)
    spend_by_bot = dict(zip(spend["bot"], spend["cost_usd"], strict=False)) if not spend.empty else {}
    last_ts = series["ts"].max()
    out = []
    for (bot, op), g in series.groupby(["bot", "operation"]):
        g = g.sort_values("ts")
        if g["ts"].iloc[-1] < last_ts - pd.Timedelta(seconds=5 * bucket_seconds(window)):
            continue  # no recent data for this pair (buckets without operations are skipped)
        breach = (g["p95"] > g["target_p95"]).tolist()
        if not breach[-1]:
            continue
        i = len(breach) - 1
        while i > 0 and breach[i - 1]:
            i -= 1
        out.append((bot, op, float(g["p95"].iloc[-1]), float(g["target_p95"].iloc[-1]), g["ts"].iloc[i],
                    len(breach) - i, float(spend_by_bot.get(bot, 0.0))))  # fmt: skip
    df = pd.DataFrame(out, columns=cols)
    return df.sort_values("breaching_since").reset_index(drop=True)


def handoff_matrix(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Source -> target: handoffs, success rate, blocked, mean duration."""
    end = _now(now)
    h = schema.handoffs
    where = sa.and_(h.c.ts >= end - timedelta(seconds=window_seconds(window)), h.c.ts <= end)
    if bots:
        where = sa.and_(where, sa.or_(h.c.source.in_(list(bots)), h.c.target.in_(list(bots))))
    stmt = (
        sa.select(
            h.c.source,
            h.c.target,
            sa.func.count(),
            _truthy(h.c.success),
            _truthy(h.c.blocked),
            sa.func.avg(h.c.duration_ms),
        )  # fmt: skip
        .where(where)
        .group_by(h.c.source, h.c.target)
    )
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), ["source", "target", "handoffs", "successes", "blocked", "mean_ms"])
    if df.empty:
        return df
    df["handoffs"] = df["handoffs"].astype(int)
    df["successes"] = df["successes"].astype(int)
    df["blocked"] = df["blocked"].astype(int)
    df["success_rate"] = df["successes"] / df["handoffs"]
    df["mean_ms"] = df["mean_ms"].astype(float)
    return df.sort_values(["source", "target"]).reset_index(drop=True)


# ---- tokens -----------------------------------------------------------------------------------


def token_series(store: Store, window: str = "24h", bots: Sequence[str] | None = None, by: str = "model",
                 now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bucket and model (or bot): requests, cache hits, input/output/cache tokens, cost."""
    if by not in ("model", "bot", "agent"):
        raise ValueError("by must be model, bot or agent")
    return _llm_aggregate(store, window, bots, [by], bucket_seconds(window), now)


def cache_hit_series(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
                     now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bucket: requests, cache hits and the cache hit rate over all selected bots."""
    return _llm_aggregate(store, window, bots, [], bucket_seconds(window), now)


def llm_breakdown(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
                  by: Sequence[str] = ("model",), now: datetime | None = None,
                  percentiles: bool = False) -> pd.DataFrame:  # fmt: skip
    """LLM totals over the window grouped by any of model, provider, bot, agent."""
    df = _llm_aggregate(store, window, bots, list(by), None, now, percentiles=percentiles)
    if df.empty:
        return df
    df["total_tokens"] = df["input_tokens"] + df["output_tokens"]
    return df.sort_values("cost_usd", ascending=False).reset_index(drop=True)


def llm_totals(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
               now: datetime | None = None) -> dict:  # fmt: skip
    """One row of totals over the window, as a dict (requests, tokens, cost, saved, rates)."""
    df = _llm_aggregate(store, window, bots, [], None, now)
    d = df.iloc[0].to_dict() if not df.empty else {}
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def top_conversations(store: Store, window: str = "24h", bots: Sequence[str] | None = None, limit: int = 20,
                      order: str = "tokens", now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Conversations using the most tokens (or cost) in the window; raw rows, aggregated in SQL.

    Windows longer than 24 hours are capped at 24 hours (no per-conversation rollup exists)."""
    end = _now(now)
    secs = min(window_seconds(window), 86400)
    t = schema.llm_calls
    tokens = sa.func.sum(t.c.input_tokens + t.c.output_tokens)
    cost = sa.func.sum(t.c.cost_usd)
    stmt = (
        sa.select(
            t.c.conversation_id,
            sa.func.min(t.c.bot),
            sa.func.count(),
            sa.func.sum(t.c.input_tokens),
            sa.func.sum(t.c.output_tokens),
            sa.func.sum(t.c.cache_read_tokens),
            tokens,
            cost,
        )  # fmt: skip
        .where(
            t.c.ts >= end - timedelta(seconds=secs),
            t.c.ts <= end,
            t.c.conversation_id.is_not(None),
            _bots_clause(t.c.bot, bots),
        )  # fmt: skip
        .group_by(t.c.conversation_id)
        .order_by((tokens if order == "tokens" else cost).desc())
        .limit(limit)
    )
    cols = ["conversation_id", "bot", "requests", "input_tokens", "output_tokens", "cache_read_tokens",
            "total_tokens", "cost_usd"]  # fmt: skip
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), cols)
    if not df.empty:
        for c in cols[2:7]:
            df[c] = df[c].astype("int64")
        df["cost_usd"] = df["cost_usd"].astype(float)
    return df


# ---- cost -------------------------------------------------------------------------------------


def cost_by_day(store: Store, window: str = "30d", bots: Sequence[str] | None = None,
                now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Spend per UTC day and model (hour rollups)."""
    df = _llm_aggregate(store, max(window_seconds(window), 86400 + 1), bots, ["model"], 86400, now)
    if df.empty:
        return df
    start = _now(now) - timedelta(seconds=window_seconds(window))
    return df[df["ts"] >= pd.Timestamp(day_start(start))].reset_index(drop=True)


def cost_anomalies(store: Store, window: str = "7d", bots: Sequence[str] | None = None, z: float = 3.0,
                   by: str = "agent", now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Hourly spend per agent (or bot/model) whose z-score against that agent's hours is >= z.

    Columns: ts (hour start), key, cost_usd, requests, mean, std, z. Hours without calls count
    as zero spend (from the agent's first hour in the window on), so a quiet agent's one expensive
    hour stands out.
    """
    end = _now(now)
    secs = max(window_seconds(window), 86400 + 1)  # always hourly buckets from the hour rollups
    df = _llm_aggregate(store, secs, bots, [by], 3600, end)
    cols = ["ts", by, "cost_usd", "requests", "mean", "std", "z"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    start = pd.Timestamp(floor_hour(end - timedelta(seconds=window_seconds(window))))
    hours = pd.date_range(start, pd.Timestamp(floor_hour(end)), freq="h")
    out = []
    for key, g in df.groupby(by):
        span = hours[hours >= g["ts"].min()]  # zero-fill quiet hours, but not before the agent existed
        s = g.set_index("ts")["cost_usd"].reindex(span, fill_value=0.0)
        if len(s) < 3:
            continue
        mean, std = float(s.mean()), float(s.std(ddof=0))
        if std <= 0:
            continue
        zs = (s - mean) / std
        req = g.set_index("ts")["requests"].reindex(span, fill_value=0)
        for ts, zval in zs[zs >= z].items():
            out.append((ts, key, float(s[ts]), int(req[ts]), mean, std, float(zval)))
    res = pd.DataFrame(out, columns=cols)
    return res.sort_values("z", ascending=False).reset_index(drop=True)


def calls_in_range(store: Store, start: datetime, end: datetime, agent: str | None = None, bot: str | None = None,
                   model: str | None = None, limit: int = 500) -> pd.DataFrame:  # fmt: skip
    """The LLM calls behind a figure (an anomaly's hour): most expensive first, at most `limit`."""
    t = schema.llm_calls
    conds = [t.c.ts >= to_naive_utc(start), t.c.ts < to_naive_utc(end)]
    for col, val in ((t.c.agent, agent), (t.c.bot, bot), (t.c.model, model)):
        if val:
            conds.append(col == val)
    cols = ["trace_id", "ts", "bot", "agent", "decision_type", "model", "input_tokens", "output_tokens",
            "cache_read_tokens", "latency_ms", "cache_hit", "cost_usd", "conversation_id", "success", "error_type"]  # fmt: skip
    stmt = sa.select(*[t.c[c] for c in cols]).where(*conds).order_by(t.c.cost_usd.desc()).limit(limit)
    with store.connect() as conn:
        return _frame(conn.execute(stmt), cols)


def agent_efficiency(store: Store, window: str = "7d", bots: Sequence[str] | None = None,
                     now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Agents ranked by cost per successful request (cheapest first), with tokens per dollar."""
    df = _llm_aggregate(store, window, bots, ["agent"], None, now)
    if df.empty:
        return df
    ok = df["requests"] - df["errors"]
    df["cost_per_success"] = (df["cost_usd"] / ok.where(ok > 0)).fillna(0.0)
    tokens = df["input_tokens"] + df["output_tokens"]
    df["tokens_per_usd"] = (tokens / df["cost_usd"].where(df["cost_usd"] > 0)).fillna(0.0)
    df["agent"] = df["agent"].replace("", "(none)")
    df = df.sort_values(["cost_per_success", "error_rate"]).reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def get_monthly_budget(store: Store) -> float:
    """The manager's monthly budget (control_state 'monthly_budget'), else MONTHLY_BUDGET_USD."""
    with store.connect() as conn:
        v = conn.execute(
            sa.select(schema.control_state.c.value).where(schema.control_state.c.key == BUDGET_KEY)
        ).scalar()
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            v = None
    if isinstance(v, dict) and isinstance(v.get("usd"), (int, float)):
        return float(v["usd"])
    if isinstance(v, (int, float)):
        return float(v)
    return float(get_settings().monthly_budget_usd)


def set_monthly_budget(store: Store, user_name: str, usd: float, now: datetime | None = None) -> float:
    """Set the monthly budget; the user's role must allow `budget.set` (managers, admins)."""
    user = auth.authorize(store, user_name, "budget.set")
    if not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
        raise ValueError("budget must be a non-negative number of dollars")
    now = _now(now)
    old = get_monthly_budget(store)
    cs = schema.control_state
    value = {"usd": float(usd)}
    with store.begin() as conn:
        stmt = store.insert(cs).values(key=BUDGET_KEY, value=value, updated_by=user.name, updated_at=now)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[cs.c.key], set_={"value": value, "updated_by": user.name, "updated_at": now}
            )
        )
        conn.execute(
            sa.insert(schema.activity_events).values(
                id=f"budget-{now.timestamp():.6f}",
                ts=now,
                event_type="budget_changed",
                title=f"Monthly budget set to ${usd:,.2f}",
                description=f"{user.name} changed it from ${old:,.2f}",
                severity="low",
                category="cost",
                user_id=user.name,
                metadata={"old": old, "new": float(usd)},
            )  # fmt: skip
        )
    return float(usd)


@dataclass
class MonthForecast:
    month: str
    mtd_usd: float
    forecast_usd: float
    budget_usd: float
    days_elapsed: float
    days_in_month: int
    daily_run_rate_usd: float
    saved_mtd_usd: float
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)  # day, cost_usd, cumulative

    @property
    def over_budget(self) -> bool:
        return self.forecast_usd > self.budget_usd

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("daily")
        return d


def month_forecast(
    store: Store, now: datetime | None = None, budget_usd: float | None = None
) -> MonthForecast:
    """Month to date and a forecast to month end: MTD + run rate x remaining days, where the run
    rate is the mean daily spend of the last 7 days (or of the month so far when younger)."""
    now = _now(now)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    dim = monthrange(now.year, now.month)[1]
    elapsed = (now - start).total_seconds() / 86400.0
    h = schema.rollup_llm_hour
    day = _epoch_bucket(store, h.c.bucket, 86400).label("day")
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(day, sa.func.sum(h.c.cost_usd), sa.func.sum(h.c.cost_saved_usd))
            .where(h.c.bucket >= start, h.c.bucket <= now)
            .group_by(sa.literal_column("1"))
            .order_by(sa.literal_column("1"))
        ).all()
    daily = pd.DataFrame([(from_epoch(int(r[0])), float(r[1] or 0), float(r[2] or 0)) for r in rows],
                         columns=["day", "cost_usd", "saved_usd"])  # fmt: skip
    mtd = float(daily["cost_usd"].sum()) if not daily.empty else 0.0
    saved = float(daily["saved_usd"].sum()) if not daily.empty else 0.0
    recent_days = min(7.0, elapsed)
    if recent_days > 0:
        since = now - timedelta(days=recent_days)
        rate = spend_between(store, max(since, start), now) / recent_days
    else:
        rate = 0.0
    remaining = max(dim - elapsed, 0.0)
    if not daily.empty:
        daily["cumulative_usd"] = daily["cost_usd"].cumsum()
    return MonthForecast(
        month=f"{now:%Y-%m}", mtd_usd=mtd, forecast_usd=mtd + rate * remaining,
        budget_usd=get_monthly_budget(store) if budget_usd is None else float(budget_usd),
        days_elapsed=elapsed, days_in_month=dim, daily_run_rate_usd=rate, saved_mtd_usd=saved, daily=daily,
    )  # fmt: skip


def unknown_model_calls(store: Store, window: str = "30d", now: datetime | None = None) -> pd.DataFrame:
    """Calls to models missing from the price table (priced at 0 and flagged at ingest).

    Reads rollups (cost 0 with tokens > 0 marks candidates) and confirms with the raw flag on the
    few candidate models only."""
    from observability.pricing import is_known

    end = _now(now)
    src = source_of(window)
    t = schema.rollup_llm_minute if src in ("raw", "minute") else schema.rollup_llm_hour
    start = end - timedelta(seconds=window_seconds(window))
    lo = start if t is schema.rollup_llm_minute else floor_hour(start)
    stmt = (
        sa.select(
            t.c.model,
            t.c.provider,
            sa.func.sum(t.c["count"]),
            sa.func.sum(t.c.input_tokens + t.c.output_tokens),
            sa.func.min(t.c.bucket),
            sa.func.max(t.c.bucket),
        )  # fmt: skip
        .where(t.c.bucket >= lo, t.c.bucket <= end)
        .group_by(t.c.model, t.c.provider)
        .having(sa.func.sum(t.c.cost_usd) == 0)
    )
    cols = ["model", "provider", "calls", "tokens", "first_seen", "last_seen"]
    with store.connect() as conn:
        rows = [r for r in conn.execute(stmt) if not is_known(r[1], r[0])]
        if not rows:  # rollups may lag: look at the last hour of raw rows for flagged calls
            lc = schema.llm_calls
            rows = conn.execute(
                sa.select(
                    lc.c.model,
                    lc.c.provider,
                    sa.func.count(),
                    sa.func.sum(lc.c.input_tokens + lc.c.output_tokens),
                    sa.func.min(lc.c.ts),
                    sa.func.max(lc.c.ts),
                )  # fmt: skip
                .where(
                    lc.c.ts >= max(start, end - timedelta(hours=1)),
                    lc.c.ts <= end,
                    lc.c.price_known == sa.false(),
                )
                .group_by(lc.c.model, lc.c.provider)
            ).all()
    df = _frame(rows, cols)
    if not df.empty:
        df["calls"] = df["calls"].astype(int)
        df["tokens"] = df["tokens"].astype("int64")
    return df.sort_values("calls", ascending=False).reset_index(drop=True) if not df.empty else df


# ---- AI performance / bot analytics -----------------------------------------------------------


def interaction_summary(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                        now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bot (BotMetricsCollector.get_bot_summary's figures): interactions, success rate, mean and
    P95 duration, error rate, cache hit rate. Raw `bot_interactions`, aggregated in SQL."""
    end = _now(now)
    t = schema.bot_interactions
    where = sa.and_(t.c.ts >= end - timedelta(seconds=window_seconds(window)), t.c.ts <= end,
                    _bots_clause(t.c.bot, bots))  # fmt: skip
    stmt = sa.select(t.c.bot, sa.func.count(), _falsy(t.c.success), _truthy(t.c.cache_hit),
                     sa.func.avg(t.c.duration_ms)).where(where).group_by(t.c.bot)  # fmt: skip
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), ["bot", "interactions", "errors", "cache_hits", "mean_ms"])
        if df.empty:
            return df
        pct = group_percentiles(store, conn, t, t.c.duration_ms, [t.c.bot], where)
    df["interactions"] = df["interactions"].astype(int)
    df["errors"] = df["errors"].astype(int)
    df["cache_hits"] = df["cache_hits"].astype(int)
    df["mean_ms"] = df["mean_ms"].astype(float)
    df["error_rate"] = df["errors"] / df["interactions"]
    df["success_rate"] = 1.0 - df["error_rate"]
    df["cache_hit_rate"] = df["cache_hits"] / df["interactions"]
    df[["p50_ms", "p95_ms", "p99_ms"]] = [pct.get((b,), [None, None, None]) for b in df["bot"]]
    return df.sort_values("bot").reset_index(drop=True)


def interaction_series(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                       now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Interactions per bucket and bot, with errors and mean duration."""
    end = _now(now)
    t = schema.bot_interactions
    b = _epoch_bucket(store, t.c.ts, bucket_seconds(window)).label("ts")
    stmt = (
        sa.select(b, t.c.bot, sa.func.count(), _falsy(t.c.success), sa.func.avg(t.c.duration_ms))
        .where(
            t.c.ts >= end - timedelta(seconds=window_seconds(window)),
            t.c.ts <= end,
            _bots_clause(t.c.bot, bots),
        )
        .group_by(sa.literal_column("1"), t.c.bot)
    )
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), ["ts", "bot", "interactions", "errors", "mean_ms"])
    if not df.empty:
        df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="s")
        df["mean_ms"] = df["mean_ms"].astype(float)
        df = df.sort_values("ts").reset_index(drop=True)
    return df


# ---- activity feed ----------------------------------------------------------------------------


def activity_filters(store: Store, now: datetime | None = None, days: int = 7) -> dict[str, list[str]]:
    """Distinct event types, categories and accounts seen in the feed's last `days` days."""
    a = schema.activity_events
    since = _now(now) - timedelta(days=days)
    with store.connect() as conn:
        types = [
            r[0] for r in conn.execute(sa.select(a.c.event_type).where(a.c.ts >= since).distinct()) if r[0]
        ]
        accounts = [
            r[0] for r in conn.execute(sa.select(a.c.account_id).where(a.c.ts >= since).distinct()) if r[0]
        ]
    return {"types": sorted(types), "accounts": sorted(accounts)}


def activity_page(
    store: Store,
    user_name: str | None,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
    unread_only: bool = False,
    page: int = 1,
    page_size: int = 50,
    vip_first: bool = False,
    window: str = "7d",
    now: datetime | None = None,
) -> tuple[pd.DataFrame, int]:
    """One page of the activity feed, newest first, with a `read` column for `user_name`.

    Returns (rows, total matching). `vip_first` orders VIP accounts' events and high/critical
    severities first (the VIP view of source document 004)."""
    a, r, acc = schema.activity_events, schema.activity_reads, schema.accounts
    page_size = max(1, min(int(page_size), 200))
    page = max(1, int(page))
    read = sa.select(r.c.event_id).where(r.c.event_id == a.c.id, r.c.user_name == (user_name or "")).exists()
    end = _now(now)
    conds = [a.c.ts >= end - timedelta(seconds=window_seconds(window)), a.c.ts <= end]
    if severities:
        conds.append(a.c.severity.in_(list(severities)))
    if event_type:
        conds.append(a.c.event_type == event_type)
    if account_id:
        conds.append(a.c.account_id == account_id)
    if unread_only:
        conds.append(~read)
    where = sa.and_(*conds)
    vip = sa.func.coalesce(acc.c.vip, sa.false())
    cols = [a.c.id, a.c.ts, a.c.severity, a.c.event_type, a.c.category, a.c.title, a.c.description,
            a.c.account_id, vip.label("vip"), a.c.conversation_id, read.label("read")]  # fmt: skip
    j = a.outerjoin(acc, acc.c.id == a.c.account_id)
    order = [a.c.ts.desc(), a.c.id]
    if vip_first:
        high = sa.case((a.c.severity.in_(HIGH_SEVERITIES), 0), else_=1)
        order = [sa.case((vip == sa.true(), 0), else_=1), high, *order]
    stmt = sa.select(*cols).select_from(j).where(where).order_by(*order).limit(page_size)
    stmt = stmt.offset((page - 1) * page_size)
    names = ["id", "ts", "severity", "type", "category", "title", "description", "account", "vip",
             "conversation", "read"]  # fmt: skip
    with store.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(a).where(where)).scalar() or 0)
        df = _frame(conn.execute(stmt), names)
    if not df.empty:
        df["vip"] = df["vip"].astype(bool)
        df["read"] = df["read"].astype(bool)
    return df, total


def activity_counts(store: Store, window: str = "24h", now: datetime | None = None) -> pd.DataFrame:
    """Activity events per time bucket and severity."""
    a = schema.activity_events
    end = _now(now)
    b = _epoch_bucket(store, a.c.ts, bucket_seconds(window)).label("ts")
    stmt = (
        sa.select(b, a.c.severity, sa.func.count())
        .where(a.c.ts >= end - timedelta(seconds=window_seconds(window)), a.c.ts <= end)
        .group_by(sa.literal_column("1"), a.c.severity)
    )
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), ["ts", "severity", "events"])
    if not df.empty:
        df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="s")
        df["events"] = df["events"].astype(int)
        df = df.sort_values("ts").reset_index(drop=True)
    return df


def unread_count(store: Store, user_name: str | None, window: str = "7d", now: datetime | None = None) -> int:
    """Events of the window this user has not marked as read."""
    a, r = schema.activity_events, schema.activity_reads
    end = _now(now)
    read = sa.select(r.c.event_id).where(r.c.event_id == a.c.id, r.c.user_name == (user_name or "")).exists()
    since = a.c.ts >= end - timedelta(seconds=window_seconds(window))
    with store.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(a).where(since, a.c.ts <= end, ~read)
            ).scalar()
            or 0
        )


def mark_activity_read(
    store: Store, user_name: str, event_ids: Iterable[str], now: datetime | None = None
) -> int:
    """Mark events as read for this user (`activity.mark_read`); returns how many ids were given."""
    user = auth.authorize(store, user_name, "activity.mark_read")
    ids = sorted({str(i) for i in event_ids if i})
    if not ids:
        return 0
    now = _now(now)
    with store.begin() as conn:
        store.insert_ignore(conn, schema.activity_reads, ("event_id", "user_name", "read_at"),
                            [(i, user.name, now) for i in ids])  # fmt: skip
    return len(ids)


def vip_conversations(
    store: Store, limit: int = 50, now: datetime | None = None, days: int = 7
) -> pd.DataFrame:
    """Conversations of VIP accounts, most recently active first (last `days` days)."""
    c, acc = schema.conversations, schema.accounts
    since = _now(now) - timedelta(days=days)
    cols = [c.c.id, acc.c.name, c.c.account_id, c.c.bot, c.c.state, c.c.operator, c.c.last_activity_at,
            c.c.message_count, c.c.sentiment, c.c.quality_score, c.c.resolved]  # fmt: skip
    stmt = (
        sa.select(*cols).select_from(c.join(acc, acc.c.id == c.c.account_id))
        .where(acc.c.vip == sa.true(), c.c.last_activity_at >= since)
        .order_by(c.c.last_activity_at.desc()).limit(limit)
    )  # fmt: skip
    names = ["conversation", "account_name", "account", "bot", "state", "operator", "last_activity", "messages",
             "sentiment", "quality", "resolved"]  # fmt: skip
    with store.connect() as conn:
        return _frame(conn.execute(stmt), names)


# ---- conversation quality ---------------------------------------------------------------------


def conversation_scores(store: Store, window: str = "24h", bots: Sequence[str] | None = None, limit: int = 200,
                        now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Recently active conversations with the latest quality scores the worker computed."""
    c = schema.conversations
    end = _now(now)
    cols = [c.c.id, c.c.bot, c.c.account_id, c.c.state, c.c.started_at, c.c.last_activity_at, c.c.message_count,
            c.c.sentiment, c.c.sentiment_trend, c.c.topic_drift, c.c.engagement, c.c.resolved, c.c.quality_score]  # fmt: skip
    stmt = (
        sa.select(*cols)
        .where(
            c.c.last_activity_at >= end - timedelta(seconds=window_seconds(window)),
            c.c.last_activity_at <= end,
            _bots_clause(c.c.bot, bots),
        )  # fmt: skip
        .order_by(c.c.last_activity_at.desc())
        .limit(limit)
    )
    names = ["conversation", "bot", "account", "state", "started", "last_activity", "messages", "sentiment",
             "trend", "drift", "engagement", "resolved", "quality"]  # fmt: skip
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), names)
    for col in ("sentiment", "drift", "engagement", "quality"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def quality_summary(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bot: conversations, scored, mean quality/sentiment/engagement/drift, resolution rate."""
    c = schema.conversations
    end = _now(now)
    stmt = (
        sa.select(
            c.c.bot,
            sa.func.count(),
            sa.func.count(c.c.quality_score),
            sa.func.avg(c.c.quality_score),
            sa.func.avg(c.c.sentiment),
            sa.func.avg(c.c.engagement),
            sa.func.avg(c.c.topic_drift),
            _truthy(c.c.resolved),
        )  # fmt: skip
        .where(
            c.c.last_activity_at >= end - timedelta(seconds=window_seconds(window)),
            c.c.last_activity_at <= end,
            _bots_clause(c.c.bot, bots),
        )  # fmt: skip
        .group_by(c.c.bot)
    )
    names = ["bot", "conversations", "scored", "quality", "sentiment", "engagement", "drift", "resolved"]
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), names)
    if not df.empty:
        df["bot"] = df["bot"].fillna("(none)")
        for col in ("quality", "sentiment", "engagement", "drift"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        df["resolution_rate"] = df["resolved"].astype(float) / df["scored"].where(df["scored"] > 0)
    return df


def conversation_messages(store: Store, conversation_id: str, limit: int = 500) -> list[dict]:
    """One conversation's messages in order ({"role", "text", "ts", "bot"}), at most `limit`."""
    m = schema.messages
    stmt = (
        sa.select(m.c.ts, m.c.role, m.c.text, m.c.bot)
        .where(m.c.conversation_id == conversation_id)
        .order_by(m.c.ts, m.c.id)
        .limit(limit)
    )
    with store.connect() as conn:
        return [{"ts": r.ts, "role": r.role, "text": r.text, "bot": r.bot} for r in conn.execute(stmt)]


def handed_off_conversations(store: Store, window: str = "24h", limit: int = 200,
                             now: datetime | None = None) -> tuple[list[list[dict]], list[int]]:  # fmt: skip
    """Recent conversations served by more than one bot, their messages and the index of the first
    message after the bot changed (the handoff), for ConversationAnalytics.handoff_effectiveness.
    Reads at most `limit` conversations."""
    m, c = schema.messages, schema.conversations
    end = _now(now)
    since = end - timedelta(seconds=window_seconds(window))
    multi = (
        sa.select(m.c.conversation_id)
        .where(m.c.ts >= since, m.c.ts <= end, m.c.bot.is_not(None))
        .group_by(m.c.conversation_id)
        .having(sa.func.count(sa.distinct(m.c.bot)) > 1)
        .limit(limit)
    )
    with store.connect() as conn:
        ids = [r[0] for r in conn.execute(multi)]
        if not ids:
            return [], []
        rows = conn.execute(
            sa.select(m.c.conversation_id, m.c.role, m.c.text, m.c.bot)
            .where(m.c.conversation_id.in_(ids))
            .order_by(m.c.conversation_id, m.c.ts, m.c.id)
        ).all()
    del c
    convs: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        convs[r.conversation_id].append({"role": r.role, "text": r.text, "bot": r.bot})
    conversations, indices = [], []
    for msgs in convs.values():
        first_bot, idx = None, None
        for i, msg in enumerate(msgs):
            if msg["bot"]:
                if first_bot is None:
                    first_bot = msg["bot"]
                elif msg["bot"] != first_bot:
                    idx = i
                    break
        if idx is not None:
            conversations.append(msgs)
            indices.append(idx)
    return conversations, indices


def _analytics():  # noqa: ANN202 - ConversationAnalytics instance or None while it is not installed
    try:
        from observability.conversation_analytics import ConversationAnalytics
    except ImportError:
        return None
    return ConversationAnalytics()


def _plain(value: object) -> object:
    """Dataclasses and numpy scalars to plain dicts/floats, so results cache and serialise."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def analyze_conversation(store: Store, conversation_id: str, limit: int = 500) -> dict | None:
    """ConversationAnalytics over one conversation: sentiment trajectory (per message), topic drift,
    engagement, resolution and quality score. None when the conversation has no messages or the
    analytics module is unavailable."""
    msgs = conversation_messages(store, conversation_id, limit)
    ca = _analytics()
    if not msgs or ca is None:
        return None
    plain = [{"role": m["role"], "text": m["text"]} for m in msgs]
    sentiment = _plain(ca.sentiment_trajectory(plain))
    drift = _plain(ca.detect_topic_drift(plain))
    engagement = _plain(ca.engagement_score(plain))
    resolution = _plain(ca.detect_resolution(plain))
    quality = _plain(ca.quality_score(plain))
    scores = _first(sentiment, ("scores", "per_message", "message_scores", "trajectory", "values"))
    return {
        "messages": [{"ts": m["ts"], "role": m["role"], "bot": m["bot"], "text": m["text"]} for m in msgs],
        "sentiment_scores": [float(x) for x in scores] if isinstance(scores, list) else [],
        "sentiment_avg": _number(_first(sentiment, ("overall", "average", "avg", "mean", "score"))),
        "sentiment_trend": _first(sentiment, ("trend", "direction")),
        "drift": _number(_first(drift, ("drift", "drift_score", "score", "value"))),
        "engagement": _number(_first(engagement, ("engagement", "score", "value"))),
        "resolved": bool(_first(resolution, ("resolved", "is_resolved", "detected", "value"))),
        "quality": _number(_first(quality, ("quality", "quality_score", "score", "value"))),
        "raw": {
            "sentiment": sentiment,
            "drift": drift,
            "engagement": engagement,
            "resolution": resolution,
            "quality": quality,
        },
    }


def _first(value: object, keys: Sequence[str]) -> object:
    """`value` itself when it is not a dict, else its first present key among `keys`."""
    if not isinstance(value, dict):
        return value
    for k in keys:
        if k in value:
            return value[k]
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def handoff_effectiveness(
    store: Store, window: str = "24h", limit: int = 50, now: datetime | None = None
) -> dict | None:
    """ConversationAnalytics.handoff_effectiveness over recent handed-off conversations (at most
    `limit`); None without such conversations or without the analytics module."""
    convs, idx = handed_off_conversations(store, window, limit, now)
    ca = _analytics()
    if not convs or ca is None:
        return None
    plain = [[{"role": m["role"], "text": m["text"]} for m in c] for c in convs]
    out = _plain(ca.handoff_effectiveness(plain, idx))
    return out if isinstance(out, dict) else {"result": out}


# ---- adapters over the analytics services (frames for pages; the services stay the truth) -----


def _services():  # noqa: ANN202
    from observability.agent_costs import DecisionCostTracker
    from observability.bot_metrics import BotMetricsCollector
    from observability.llm_observability import LLMObservabilityService
    from observability.performance import PerformanceTracker

    return LLMObservabilityService, PerformanceTracker, BotMetricsCollector, DecisionCostTracker


def sla_compliance(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """PerformanceTracker.check_sla_compliance as a frame (one row per SLA target), with the
    operation counts, error and cache-hit rates of the same window; `bots` filters rows."""
    _, PerformanceTracker, _, _ = _services()
    rows = PerformanceTracker(store).check_sla_compliance(window, now=_now(now))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if bots:
        df = df[df["bot"].isin(list(bots))]
    stats = _ops_aggregate(store, window, bots, ["bot", "operation"], None, now)
    if not stats.empty:
        df = df.merge(stats[["bot", "operation", "errors", "error_rate", "cache_hit_rate"]], on=["bot", "operation"],
                      how="left")  # fmt: skip
    df = df.rename(
        columns={"actual_p50": "p50", "actual_p95": "p95", "actual_p99": "p99", "count": "requests"}
    )
    df["compliant"] = df["compliant"].where(df["requests"] > 0, None)
    df["violations"] = df["violations"].map(lambda v: "; ".join(v) if isinstance(v, list) else (v or ""))
    return df.sort_values(["bot", "operation"]).reset_index(drop=True)


def bot_summaries(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                  now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """BotMetricsCollector.get_system_summary's per-bot summaries (bots with interactions only)."""
    _, _, BotMetricsCollector, _ = _services()
    summary = BotMetricsCollector(store).get_system_summary(window_seconds(window) / 60, now=_now(now))
    rows = [{"bot": b, **s} for b, s in summary["bots"].items() if s["total_interactions"]]
    df = pd.DataFrame(rows)
    if not df.empty and bots:
        df = df[df["bot"].isin(list(bots))].reset_index(drop=True)
    return df


def handoff_summary(store: Store, window: str = "1h", now: datetime | None = None) -> dict:
    """BotMetricsCollector.handoff_summary (totals, success rate, durations, blocked)."""
    _, _, BotMetricsCollector, _ = _services()
    return BotMetricsCollector(store).handoff_summary(window_seconds(window) / 60, now=_now(now))


def cost_report(store: Store, window: str = "7d", bots: Sequence[str] | None = None,
                now: datetime | None = None) -> dict:  # fmt: skip
    """DecisionCostTracker.report: {"ranking": frame, "anomalies": frame, "anomaly_count",
    "z_threshold", "total_cost"}. Anomalies are single calls whose cost is z_threshold standard
    deviations above their agent's mean; `bots` filters the anomaly rows."""
    _, _, _, DecisionCostTracker = _services()
    rep = DecisionCostTracker(store).report(window, now=_now(now))
    ranking = pd.DataFrame(rep.efficiency_ranking)
    anomalies = pd.DataFrame([_plain(a) for a in rep.anomalies])
    if not anomalies.empty:
        anomalies = anomalies.drop(columns=["trace_ids"], errors="ignore")
        if bots:
            anomalies = anomalies[anomalies["bot"].isin(list(bots))].reset_index(drop=True)
    return {"ranking": ranking, "anomalies": anomalies, "anomaly_count": rep.anomaly_count,
            "z_threshold": rep.z_threshold, "total_cost": rep.total_cost}  # fmt: skip


def calls_by_ids(store: Store, trace_ids: Sequence[str]) -> pd.DataFrame:
    """The LLM calls with these trace ids (an anomaly's calls), most expensive first (at most 500)."""
    t = schema.llm_calls
    ids = [str(i) for i in trace_ids if i][:500]
    cols = ["trace_id", "ts", "bot", "agent", "decision_type", "model", "input_tokens", "output_tokens",
            "cache_read_tokens", "latency_ms", "cache_hit", "cost_usd", "conversation_id", "success", "error_type"]  # fmt: skip
    if not ids:
        return pd.DataFrame(columns=cols)
    stmt = sa.select(*[t.c[c] for c in cols]).where(t.c.trace_id.in_(ids)).order_by(t.c.cost_usd.desc())
    with store.connect() as conn:
        return _frame(conn.execute(stmt), cols)


def spend_forecast(store: Store, now: datetime | None = None) -> dict:
    """LLMObservabilityService.spend_forecast (MTD, forecast, budget) plus `daily`: spend per UTC
    day of the month so far with its running total (a frame)."""
    LLMObservabilityService, _, _, _ = _services()
    now = _now(now)
    fc = LLMObservabilityService(store).spend_forecast(now=now)
    start = fc["month_start"]
    agg = perf.aggregate(store, perf.LLM, start, now, granularity="day", percentiles=False)
    daily = pd.DataFrame(
        [(k[0], float(s.sums.get("cost_usd", 0) or 0), float(s.sums.get("cost_saved_usd", 0) or 0))
         for k, s in sorted(agg.groups.items())],
        columns=["day", "cost_usd", "saved_usd"],
    )  # fmt: skip
    if not daily.empty:
        daily["cumulative_usd"] = daily["cost_usd"].cumsum()
    return {**fc, "daily": daily}


def unknown_models(store: Store, window: str = "30d", now: datetime | None = None) -> pd.DataFrame:
    """LLMObservabilityService.unknown_model_calls as a frame."""
    LLMObservabilityService, _, _, _ = _services()
    rows = LLMObservabilityService(store).unknown_model_calls(window_seconds(window), now=_now(now))
    return pd.DataFrame(rows, columns=["model", "provider", "calls", "input_tokens", "output_tokens",
                                       "caller_cost_usd", "first_seen", "last_seen"])  # fmt: skip


def open_alerts(store: Store, limit: int = 20) -> pd.DataFrame:
    """Alerts firing or acknowledged, critical first, newest first."""
    a = schema.alerts
    sev = sa.case((a.c.severity == "critical", 0), (a.c.severity == "warning", 1), else_=2)
    stmt = (
        sa.select(
            a.c.id,
            a.c.state,
            a.c.severity,
            a.c.rule_name,
            a.c.message,
            a.c.value,
            a.c.threshold,
            a.c.fired_at,
            a.c.acknowledged_by,
            a.c.escalation_level,
        )  # fmt: skip
        .where(a.c.state.in_(FIRING_STATES))
        .order_by(sev, a.c.fired_at.desc())
        .limit(limit)
    )
    cols = ["id", "state", "severity", "rule", "message", "value", "threshold", "fired_at", "acknowledged_by",
            "escalation_level"]  # fmt: skip
    with store.connect() as conn:
        return _frame(conn.execute(stmt), cols)


def bots_now(store: Store, now: datetime | None = None) -> pd.DataFrame:
    """One row per bot: LLM requests, error rate and P50/P95 over the last hour (exact), spend
    today (UTC), and whether an SLA breach is ongoing (slow_bots over the last hour)."""
    now = _now(now)
    hour = _llm_aggregate(store, "1h", None, ["bot"], None, now, percentiles=True)
    since_midnight = max(int((now - day_start(now)).total_seconds()), 1)
    today = _llm_aggregate(store, since_midnight, None, ["bot"], None, now)
    cols = ["bot", "requests_1h", "error_rate_1h", "p50_ms", "p95_ms", "spend_today_usd", "slow_operations"]
    if hour.empty and today.empty:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame({"bot": sorted(set(hour.get("bot", [])) | set(today.get("bot", [])))})
    if not hour.empty:
        df = df.merge(hour[["bot", "requests", "error_rate", "p50", "p95"]], on="bot", how="left")
    else:
        df = df.assign(requests=0, error_rate=0.0, p50=None, p95=None)
    spend = today.set_index("bot")["cost_usd"] if not today.empty else pd.Series(dtype=float)
    df["spend_today_usd"] = df["bot"].map(spend).fillna(0.0)
    slow = slow_bots(store, "1h", None, now)
    slow_ops = slow.groupby("bot")["operation"].agg(", ".join) if not slow.empty else pd.Series(dtype=str)
    df["slow_operations"] = df["bot"].map(slow_ops).fillna("")
    df = df.rename(
        columns={"requests": "requests_1h", "error_rate": "error_rate_1h", "p50": "p50_ms", "p95": "p95_ms"}
    )
    df["requests_1h"] = df["requests_1h"].fillna(0).astype(int)
    return df[cols]


_ADDITIVE = ("requests", "errors", "cache_hits", "sum_ms", *_LLM_SUMS)


def regroup(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Re-aggregate an LLM breakdown (e.g. by model, bot and agent) to fewer keys: additive columns
    are summed, rates recomputed; so one query serves several charts."""
    if df.empty:
        return df
    cols = [c for c in _ADDITIVE if c in df.columns]
    out = df.groupby(list(keys), as_index=False, dropna=False)[cols].sum()
    out = _finish(out, None)
    if "input_tokens" in out and "output_tokens" in out:
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    return out.sort_values("cost_usd", ascending=False).reset_index(drop=True) if "cost_usd" in out else out
