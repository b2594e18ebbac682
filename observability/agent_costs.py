"""Per-agent decision costs (source document 000, Agent Cost Tracker), over the one store.

A decision is one LLM call made by an agent: `DecisionCostTracker.record(DecisionCost(...))`
writes it as an `llm_calls` row through the shared ingest path (priced there unless the caller
gives `cost_usd`), so decisions recorded here, by the SDK or by any bot process all count.

`report(window)` gives a `CostReport`:

- per-agent summaries (spend, decisions, tokens, average latency, cost per decision) from the
  rollups, exact for any window;
- cost anomalies: decisions whose cost is more than `z_threshold` (default 3) sample standard
  deviations above their agent's mean over the window (a spike detector; cheap calls are not
  flagged). Agents with fewer than `min_decisions` (default 10) decisions are not judged. Each
  anomaly carries its trace id so the cost page can link to the call;
- an efficiency ranking: cost per decision, cheapest first.

Anomalies need each decision's cost. Per closed hour and agent the tracker keeps the count, mean,
sum of squared deviations and the most expensive decisions (a process-wide cache, checked against
the hour rollups' counts on every use, so late rows invalidate it); only the partial hours at the
window's edges and hours that changed are read raw. A 7-day report therefore reads a few hundred
rollup rows and two partial hours of raw rows once the hours are cached.
"""

from __future__ import annotations

import heapq
import math
import threading
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from observability import events as ev
from observability import schema
from observability.ingest import write_batch
from observability.performance import (
    LLM,
    aggregate,
    as_datetime,
    dirty_minutes,
    resolve_now,
    trunc_expr,
    window_bounds,
    window_to_seconds,
)
from observability.settings import Settings
from observability.sketch import LOG_GAMMA, MIN_VALUE
from observability.store import Store
from observability.timeutil import floor_hour, to_epoch

HOUR = timedelta(hours=1)
TOP_PER_CELL = 50  # most expensive decisions kept per (hour, agent)
CACHE_HOURS = 24 * 45  # per store; least recently used hours are dropped beyond this


@dataclass
class DecisionCost:
    """One agent decision (an LLM call). `cost_usd=None` prices it from the model's price."""

    agent_name: str
    decision_type: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None
    latency_ms: float = 0.0
    model: str = "unspecified"
    provider: str = "unspecified"
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    bot: str | None = None
    conversation_id: str | None = None
    success: bool = True
    error_type: str | None = None
    trace_id: str | None = None
    timestamp: datetime | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class AgentCostSummary:
    agent: str
    total_cost: float
    decisions: int
    total_tokens: int
    input_tokens: int
    output_tokens: int
    avg_cost: float  # cost per decision
    avg_latency_ms: float
    errors: int
    tokens_per_decision: float
    share_of_cost: float
    judged: bool  # enough decisions to judge anomalies
    mean_cost: float | None = None  # over the decisions judged (same as avg_cost)
    std_cost: float | None = None  # sample standard deviation of one decision's cost
    anomalies: int = 0

    @property
    def decision_count(self) -> int:  # the source document's name
        return self.decisions

    @property
    def avg_latency(self) -> float:  # the source document's name
        return self.avg_latency_ms


@dataclass
class CostAnomaly:
    agent: str
    trace_id: str
    ts: datetime | None
    cost_usd: float
    z_score: float
    agent_mean_usd: float
    agent_std_usd: float
    model: str | None = None
    decision_type: str | None = None
    conversation_id: str | None = None
    bot: str | None = None
    trace_ids: list[str] = field(default_factory=list)  # the calls behind it (here: the one call)


@dataclass
class CostReport:
    agent_summaries: dict[str, AgentCostSummary]
    total_cost: float
    total_tokens: int
    total_decisions: int
    anomalies: list[CostAnomaly]  # highest z first, at most `max_anomalies`
    anomaly_count: int  # all anomalies in the window
    anomaly_count_exact: bool  # False: estimated (within ~1%) where an hour had more than the kept top
    efficiency_ranking: list[dict[str, Any]]  # cheapest cost per decision first
    z_threshold: float
    min_decisions: int
    window_seconds: float | None
    generated_at: datetime
    source: str = "rollup"

    @property
    def efficiency_rankings(self) -> dict[str, float]:
        """The source document's shape: agent -> cost per decision, most efficient first."""
        return {r["agent"]: r["cost_per_decision"] for r in self.efficiency_ranking}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Per (hour, agent) cost moments
# ---------------------------------------------------------------------------------------------


@dataclass
class _Cell:
    n: int
    mean: float
    m2: float  # sum of squared deviations from the mean
    # (cost, trace_id, ts, model, decision_type, conversation_id, bot), most expensive first
    top: list[tuple]
    # cost histogram: log-bucket indexes of micro-dollars (1% wide) and their counts, for counting
    # anomalies beyond the kept top
    buckets: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def kept_above(self, limit: float) -> int:
        """How many of the kept most expensive decisions cost more than `limit`."""
        neg = self.__dict__.get("_neg")
        if neg is None or len(neg) != len(self.top):
            neg = self.__dict__["_neg"] = -np.array([d[0] for d in self.top], dtype=float)
        return int(np.searchsorted(neg, -limit, side="left"))

    def count_above(self, limit: float) -> int:
        """How many costs exceed `limit`: exact from the kept top when it reaches below `limit`,
        else estimated from the histogram (the bucket holding `limit` split by log position)."""
        if len(self.top) == self.n or (self.top and self.top[-1][0] <= limit):
            return sum(1 for d in self.top if d[0] > limit)
        x = max(limit * 1e6, MIN_VALUE)
        edge = math.log(x) / LOG_GAMMA
        b = math.ceil(edge)
        above = int(self.counts[self.buckets > b].sum())
        inside = int(self.counts[self.buckets == b].sum())
        frac = b - edge  # share of the straddling bucket above `limit`, on the log scale
        return max(above + round(inside * frac), len(self.top))


_L = schema.llm_calls
DETAIL_COLUMNS = (
    _L.c.cost_usd,
    _L.c.trace_id,
    _L.c.ts,
    _L.c.model,
    _L.c.decision_type,
    _L.c.conversation_id,
    _L.c.bot,
)


def _detail(row: Sequence) -> tuple:
    return (float(row[0]), row[1], as_datetime(row[2]), *row[3:7])


def _combine(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    """Chan et al.'s parallel update of (n, mean, M2)."""
    na, ma, m2a = a
    nb, mb, m2b = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n


class _MomentCache:
    """Closed hours' cells per store, validated by hour-rollup counts on every use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hours: dict[str, OrderedDict[datetime, dict[str, _Cell]]] = {}

    def get(self, ns: str, hour: datetime) -> dict[str, _Cell] | None:
        with self._lock:
            hours = self._hours.get(ns)
            if hours is None or hour not in hours:
                return None
            hours.move_to_end(hour)
            return hours[hour]

    def put(self, ns: str, hour: datetime, cells: dict[str, _Cell]) -> None:
        with self._lock:
            hours = self._hours.setdefault(ns, OrderedDict())
            hours[hour] = cells
            hours.move_to_end(hour)
            while len(hours) > CACHE_HOURS:
                hours.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._hours.clear()


_CACHE = _MomentCache()


def clear_cache() -> None:
    """Forget cached hour moments (they are re-read from the store when needed)."""
    _CACHE.clear()


def _ranges_clause(col: sa.ColumnElement, ranges: Sequence[tuple[datetime, datetime]]) -> sa.ColumnElement:
    return sa.or_(*[sa.and_(col >= a, col < b) for a, b in ranges])


def _merge(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[list[datetime]] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] >= a:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _read_cells(
    store: Store, conn: sa.Connection, ranges: Sequence[tuple[datetime, datetime]], hourly: bool
) -> dict[datetime, dict[str, _Cell]]:
    """Cells per hour (or per range start for edge ranges) from raw rows, two grouped queries."""
    t = schema.llm_calls
    if not ranges:
        return {}
    out: dict[datetime, dict[str, _Cell]] = defaultdict(dict)
    if hourly:
        period = trunc_expr(store, t.c.ts, "hour")
    else:
        period = sa.case(*[(sa.and_(t.c.ts >= a, t.c.ts < b), sa.literal(a)) for a, b in ranges])
    where = (_ranges_clause(t.c.ts, ranges), t.c.agent.is_not(None), t.c.agent != "")
    cost = t.c.cost_usd
    sums = conn.execute(
        sa.select(period, t.c.agent, sa.func.count(), sa.func.sum(cost), sa.func.sum(cost * cost))
        .where(*where)
        .group_by(sa.literal_column("1"), sa.literal_column("2"))
    ).all()
    for p, agent, n, s1, s2 in sums:
        n, s1, s2 = int(n), float(s1 or 0), float(s2 or 0)
        mean = s1 / n
        out[as_datetime(p)][agent] = _Cell(n, mean, max(s2 - s1 * mean, 0.0), [])
    rn = (
        sa.func.row_number()
        .over(partition_by=(period, t.c.agent), order_by=(cost.desc(), t.c.trace_id))
        .label("rn")
    )
    inner = sa.select(period.label("p"), t.c.agent, *DETAIL_COLUMNS, rn).where(*where).subquery()
    top = conn.execute(
        sa.select(inner.c.p, inner.c.agent, *[inner.c[c.name] for c in DETAIL_COLUMNS])
        .where(inner.c.rn <= TOP_PER_CELL)
        .order_by(inner.c.p, inner.c.agent, inner.c.rn)
    ).all()
    for row in top:
        cell = out[as_datetime(row[0])].get(row[1])
        if cell is not None:
            cell.top.append(_detail(row[2:]))
    micro = sa.func.ceil(
        sa.func.ln(store.greatest(cost * 1e6, sa.literal(MIN_VALUE))) / sa.literal(LOG_GAMMA)
    )
    hist: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for p, agent, b, n in conn.execute(
        sa.select(period, t.c.agent, micro, sa.func.count())
        .where(*where)
        .group_by(*[sa.literal_column(str(i)) for i in (1, 2, 3)])
    ).all():
        hist[(as_datetime(p), agent)].append((int(float(b)), int(n)))
    for (p, agent), pairs in hist.items():
        cell = out[p].get(agent)
        if cell is not None:
            arr = np.array(sorted(pairs), dtype=np.int64)
            cell.buckets, cell.counts = arr[:, 0], arr[:, 1]
    return out


# ---------------------------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------------------------


class DecisionCostTracker:
    """Records decisions into the store and reports per-agent costs, anomalies and efficiency."""

    def __init__(
        self,
        store: Store,
        *,
        z_threshold: float = 3.0,
        min_decisions: int = 10,
        settings: Settings | None = None,
    ) -> None:
        if not math.isfinite(z_threshold) or z_threshold <= 0:
            raise ValueError("z_threshold must be a positive number")
        if min_decisions < 2:
            raise ValueError("min_decisions must be at least 2 (a standard deviation needs two values)")
        self.store = store
        self.z_threshold = float(z_threshold)
        self.min_decisions = int(min_decisions)
        self.settings = settings

    # ---- recording ----------------------------------------------------------------------------
    def record(self, decision: DecisionCost) -> str:
        """Store one decision as an LLM call (synchronously, through ingest); returns its trace id.

        Raises ValueError (an `EventRejected`) for invalid fields; nothing is stored then.
        """
        return self.record_many([decision])[0]

    def record_many(self, decisions: Sequence[DecisionCost]) -> list[str]:
        """Store several decisions in one transaction; all or nothing on invalid input."""
        events, ids = [], []
        for d in decisions:
            ev.check_str("agent_name", d.agent_name, required=True, max_len=100)
            ev.check_str("decision_type", d.decision_type, required=True, max_len=100)
            if d.cache_read_tokens + d.cache_write_tokens > d.input_tokens:
                raise ev.EventRejected("cache_read_tokens + cache_write_tokens exceed input_tokens")
            tid = d.trace_id or uuid.uuid4().hex
            ts = to_epoch(d.timestamp) if d.timestamp is not None else to_epoch(resolve_now(None))
            event = [ev.KIND_LLM, tid, ts, d.bot, d.agent_name, d.decision_type, d.model, d.provider,
                     d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
                     float(d.latency_ms) if isinstance(d.latency_ms, (int, float)) else d.latency_ms,
                     False, d.cost_usd, d.conversation_id, d.success, d.error_type]  # fmt: skip
            ev.check_wire(event)
            events.append(event)
            ids.append(tid)
        if events:
            result = write_batch(self.store, events, self.settings)
            if result.rejected:  # pragma: no cover - check_wire above already ran the same checks
                raise ev.EventRejected("; ".join(result.reasons))
        return ids

    # ---- reporting ----------------------------------------------------------------------------
    def report(
        self,
        window: str | float | None = "7d",
        *,
        z_threshold: float | None = None,
        min_decisions: int | None = None,
        max_anomalies: int = 100,
        now: datetime | None = None,
    ) -> CostReport:
        """The cost report for the window ('1h', '24h', '7d', seconds, or None for all history)."""
        z = self.z_threshold if z_threshold is None else float(z_threshold)
        min_n = self.min_decisions if min_decisions is None else int(min_decisions)
        seconds = None if window is None else window_to_seconds(window)
        now = resolve_now(now)
        start, end = window_bounds(seconds, now)
        with self.store.connect() as conn:
            agg = aggregate(self.store, LLM, start, end, group_by=("agent",), percentiles=False, rollups=True,
                            conn=conn)  # fmt: skip
            groups = {k[0]: s for k, s in agg.groups.items() if k[0] is not None}
            if seconds is None and groups:  # all history: start at the first decision's hour
                first = conn.execute(sa.select(sa.func.min(schema.llm_calls.c.ts))).scalar()
                start = floor_hour(as_datetime(first)) if first is not None else start
            cells = self._cells(conn, start, end) if groups else []
            moments, shown, counts, exact = self._anomalies(conn, cells, z, min_n, max_anomalies)
        total_cost = sum(float(s.sums.get("cost_usd", 0) or 0) for s in groups.values())
        summaries: dict[str, AgentCostSummary] = {}
        for agent in sorted(groups):
            s = groups[agent]
            cost = float(s.sums.get("cost_usd", 0) or 0)
            tin, tout = int(s.sums.get("input_tokens", 0) or 0), int(s.sums.get("output_tokens", 0) or 0)
            n, mean, m2 = moments.get(agent, (0, 0.0, 0.0))
            summaries[agent] = AgentCostSummary(
                agent=agent, total_cost=cost, decisions=s.count, total_tokens=tin + tout, input_tokens=tin,
                output_tokens=tout, avg_cost=cost / s.count if s.count else 0.0, avg_latency_ms=s.mean_ms or 0.0,
                errors=s.errors, tokens_per_decision=(tin + tout) / s.count if s.count else 0.0,
                share_of_cost=cost / total_cost if total_cost else 0.0, judged=n >= min_n,
                mean_cost=mean if n else None, std_cost=math.sqrt(m2 / (n - 1)) if n >= 2 else None,
                anomalies=counts.get(agent, 0),
            )  # fmt: skip
        ranking = sorted(summaries.values(), key=lambda a: (a.avg_cost, a.tokens_per_decision, a.agent))
        efficiency = [
            {"rank": i, "agent": a.agent, "cost_per_decision": a.avg_cost, "tokens_per_decision": a.tokens_per_decision,
             "decisions": a.decisions, "total_cost": a.total_cost,
             "success_rate": 1 - a.errors / a.decisions if a.decisions else 0.0,
             "cost_per_1k_tokens": a.total_cost / a.total_tokens * 1000 if a.total_tokens else 0.0}
            for i, a in enumerate(ranking, start=1)
        ]  # fmt: skip
        return CostReport(
            agent_summaries=summaries, total_cost=total_cost, total_tokens=sum(a.total_tokens for a in summaries.values()),
            total_decisions=sum(a.decisions for a in summaries.values()), anomalies=shown,
            anomaly_count=sum(counts.values()), anomaly_count_exact=exact,
            efficiency_ranking=efficiency, z_threshold=z, min_decisions=min_n,
            window_seconds=seconds, generated_at=now, source=agg.source,
        )  # fmt: skip

    def _cells(
        self, conn: sa.Connection, start: datetime, end: datetime
    ) -> list[tuple[tuple[datetime, datetime], dict[str, _Cell]]]:
        """((range start, range end), cells) covering [start, end): cached closed hours + raw rest."""
        h0 = floor_hour(start) if floor_hour(start) == start else floor_hour(start) + HOUR
        h1 = floor_hour(end)
        edges = []
        hours: list[datetime] = []
        if h0 >= h1:
            edges.append((start, end))
        else:
            if start < h0:
                edges.append((start, h0))
            if h1 < end:
                edges.append((h1, end))
            n = int((h1 - h0) / HOUR)
            hours = [h0 + i * HOUR for i in range(n)]
        out: list[tuple[tuple[datetime, datetime], dict[str, _Cell]]] = []
        if hours:
            ns = self.store.namespace
            r = schema.rollup_llm_hour
            counts: dict[datetime, dict[str, int]] = defaultdict(dict)
            for bucket, agent, n in conn.execute(
                sa.select(r.c.bucket, r.c.agent, sa.func.sum(r.c["count"]))
                .where(r.c.bucket >= h0, r.c.bucket < h1, r.c.agent != "")
                .group_by(r.c.bucket, r.c.agent)
            ):
                counts[as_datetime(bucket)][agent] = int(n)
            stale = {floor_hour(m) for m in dirty_minutes(self.store, conn, "llm", h0, h1)}
            missing = []
            for h in hours:
                cached = _CACHE.get(ns, h)
                expected = counts.get(h, {})
                if h in stale or cached is None or {a: c.n for a, c in cached.items()} != expected:
                    missing.append(h)
                else:
                    out.append(((h, h + HOUR), cached))
            if missing:
                fresh = _read_cells(self.store, conn, _merge((h, h + HOUR) for h in missing), hourly=True)
                for h in missing:
                    cells = fresh.get(h, {})
                    _CACHE.put(ns, h, cells)
                    out.append(((h, h + HOUR), cells))
        if edges:
            fresh = _read_cells(self.store, conn, edges, hourly=False)
            out.extend(((a, b), fresh.get(a, {})) for a, b in edges)
        return out

    def _anomalies(
        self, conn: sa.Connection, cells: list, z: float, min_n: int, max_anomalies: int
    ) -> tuple[dict[str, tuple[int, float, float]], list[CostAnomaly], dict[str, int], bool]:
        """Per-agent moments, the `max_anomalies` highest anomalies, counts per agent, and whether
        every count is exact."""
        moments: dict[str, tuple[int, float, float]] = {}
        for _, per_agent in cells:
            for agent, c in per_agent.items():
                moments[agent] = _combine(moments.get(agent, (0, 0.0, 0.0)), (c.n, c.mean, c.m2))
        heap: list[
            tuple
        ] = []  # min-heap of the best `max_anomalies`: (z, trace_id, agent, detail, mean, std)

        def offer(zs: float, agent: str, d: tuple, mean: float, std: float) -> bool:
            """Keep the anomaly if it ranks among the best; False once it cannot (callers stop)."""
            if len(heap) < max_anomalies:
                heapq.heappush(heap, (zs, d[1], agent, d, mean, std))
                return True
            if max_anomalies and zs > heap[0][0]:
                heapq.heapreplace(heap, (zs, d[1], agent, d, mean, std))
                return True
            return False

        counts: dict[str, int] = defaultdict(int)
        overflow: list[tuple] = []  # cells whose anomalies go beyond the kept top
        for (a, b), per_agent in cells:
            for agent, c in per_agent.items():
                n, mean, m2 = moments[agent]
                if n < min_n or n < 2:
                    continue
                std = math.sqrt(m2 / (n - 1))
                if std <= 0:
                    continue
                limit = mean + z * std
                k = c.kept_above(limit)
                for d in c.top[:k]:  # most expensive first
                    if not offer((d[0] - mean) / std, agent, d, mean, std):
                        break
                if k and k == len(c.top) and c.n > k:
                    estimate = c.count_above(limit)
                    overflow.append((a, b, agent, c, mean, std, limit, (c.top[-1][0] - mean) / std, estimate))
                    counts[agent] += estimate
                else:
                    counts[agent] += k
        exact = True
        t = schema.llm_calls
        for a, b, agent, c, mean, std, limit, lowest_kept, estimate in overflow:
            if len(heap) >= max_anomalies and lowest_kept <= heap[0][0]:
                exact = False  # the unkept tail ranks below everything shown: its size is estimated
                continue
            kept = {d[1] for d in c.top}
            rows = conn.execute(
                sa.select(*DETAIL_COLUMNS).where(
                    t.c.ts >= a, t.c.ts < b, t.c.agent == agent, t.c.cost_usd > limit
                )
            ).all()
            tail = [d for d in map(_detail, rows) if d[0] > limit]
            counts[agent] += len(tail) - estimate
            for d in sorted((d for d in tail if d[1] not in kept), key=lambda d: -d[0]):
                if not offer((d[0] - mean) / std, agent, d, mean, std):
                    break
        top = sorted(heap, key=lambda f: (-f[0], f[1]))
        shown = [
            CostAnomaly(agent=agent, trace_id=d[1], ts=d[2], cost_usd=d[0], z_score=zs, agent_mean_usd=mean,
                        agent_std_usd=std, model=d[3], decision_type=d[4], conversation_id=d[5], bot=d[6],
                        trace_ids=[d[1]])
            for zs, _, agent, d, mean, std in top
        ]  # fmt: skip
        return moments, shown, counts, exact

    def decision_type_breakdown(
        self, window: str | float = "24h", *, agent: str | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Spend per (agent, decision type) in the window: decisions, tokens, cost, cost per decision,
        mean latency. Decision types are not a rollup key, so this groups raw rows in SQL: keep the
        window to a day or a week on large stores."""
        start, end = window_bounds(window_to_seconds(window), now)
        t = schema.llm_calls
        conds = [t.c.ts >= start, t.c.ts < end, t.c.agent.is_not(None)]
        if agent is not None:
            conds.append(t.c.agent == agent)
        stmt = (
            sa.select(
                t.c.agent,
                t.c.decision_type,
                sa.func.count(),
                sa.func.sum(t.c.input_tokens + t.c.output_tokens),
                sa.func.sum(t.c.cost_usd),
                sa.func.avg(t.c.latency_ms),
            )  # fmt: skip
            .where(*conds)
            .group_by(t.c.agent, t.c.decision_type)
        )
        with self.store.connect() as conn:
            rows = conn.execute(stmt).all()
        out = [
            {"agent": r[0], "decision_type": r[1], "decisions": int(r[2]), "total_tokens": int(r[3] or 0),
             "total_cost": float(r[4] or 0), "cost_per_decision": float(r[4] or 0) / int(r[2]),
             "avg_latency_ms": float(r[5] or 0)}
            for r in rows
        ]  # fmt: skip
        out.sort(key=lambda r: (-r["total_cost"], r["agent"], str(r["decision_type"])))
        return out
