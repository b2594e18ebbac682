"""Per-agent decision costs (source document 000, Agent Cost Tracker), over the one store.

A decision is one LLM call made by an agent: `DecisionCostTracker.record(DecisionCost(...))`
writes it as an `llm_calls` row through the shared ingest path (priced there unless the caller
gives `cost_usd`), so decisions recorded here, by the SDK or by any bot process all count.

`report(window)` gives a `CostReport`:

- per-agent summaries (spend, decisions, tokens, average latency, cost per decision) from the
  rollups, exact for any window;
- cost anomalies: decisions whose cost is more than `z_threshold` (default 3) sample standard
  deviations above their agent's mean over the window AND at least `min_cost_usd` (a spike
  detector that flags what a manager would act on: a 2-cent call is not one, however unusual). Agents with fewer than `min_decisions` (default 10) decisions are not judged. Each
  anomaly carries its trace id so the cost page can link to the call;
- an efficiency ranking: cost per decision, cheapest first.

Everything comes from SQL, exact for any window and with no per-process state: the LLM rollups
hold per (bucket, model, provider, bot, agent) the count, the sum and the sum of squares of the
call cost (`cost_sq_usd`), so one `window.aggregate` over the window (hour rollups, minute
rollups at the edges, raw rows for partial and not-yet-rolled-up minutes) gives each agent's
spend, mean and sample standard deviation. The anomalous calls are then two range scans per
agent of the `(agent, cost_usd, ts)` index on `llm_calls`: `cost_usd > mean + z * sd` within the
window, counted, and each agent's most expensive ones fetched with their details (a call's
z-score grows with its cost within its agent, so the page needs no more than that).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import events as ev
from observability.analytics.window import aggregate
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.store.rollups import LLM
from observability.store.sqlhelpers import as_datetime
from observability.store.wire import check_wire
from observability.timeutil import Window, resolve_now, to_epoch, window_bounds, window_seconds


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
    anomaly_count_exact: bool  # always True: anomalies are counted in SQL (kept for callers that check)
    efficiency_ranking: list[dict[str, Any]]  # cheapest cost per decision first
    z_threshold: float
    min_decisions: int
    window_seconds: float | None
    generated_at: datetime
    source: str = "rollup"
    min_cost_usd: float = 0.0  # the dollar threshold an anomaly also has to reach

    @property
    def efficiency_rankings(self) -> dict[str, float]:
        """The source document's shape: agent -> cost per decision, most efficient first."""
        return {r["agent"]: r["cost_per_decision"] for r in self.efficiency_ranking}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
CALL_COLUMNS = ("trace_id", "ts", "bot", "agent", "decision_type", "model", "provider", "input_tokens",
                "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms", "cache_hit", "cost_usd",
                "conversation_id", "success", "error_type")  # fmt: skip
# below this share of the sum of squares, a variance is rounding noise of `sum(x²) - sum(x)²/n`
# (the costs are all equal): the agent's standard deviation is 0 and nothing is judged anomalous
VARIANCE_NOISE = 1e-12


def cost_moments(count: int, cost_sum: float, cost_sq_sum: float) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) of one call's cost from the count, the sum and the
    sum of squares (as the rollups hold them); None where undefined."""
    if count <= 0:
        return None, None
    mean = cost_sum / count
    if count < 2:
        return mean, None
    m2 = cost_sq_sum - cost_sum * mean
    if m2 <= VARIANCE_NOISE * cost_sq_sum:
        m2 = 0.0
    return mean, math.sqrt(m2 / (count - 1))


def _detail(row: Sequence) -> tuple:
    return (float(row[0]), row[1], as_datetime(row[2]), *row[3:7])


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
        min_cost_usd: float = 0.0,
        settings: Settings | None = None,
    ) -> None:
        if not math.isfinite(z_threshold) or z_threshold <= 0:
            raise ValueError("z_threshold must be a positive number")
        if not math.isfinite(min_cost_usd) or min_cost_usd < 0:
            raise ValueError("min_cost_usd must be zero or more dollars")
        if min_decisions < 2:
            raise ValueError("min_decisions must be at least 2 (a standard deviation needs two values)")
        self.store = store
        self.z_threshold = float(z_threshold)
        self.min_decisions = int(min_decisions)
        self.min_cost_usd = float(min_cost_usd)
        self.settings = settings

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> DecisionCostTracker:
        """The tracker with the console's anomaly thresholds (COST_ANOMALY_Z, COST_ANOMALY_MIN_USD)."""
        return cls(store, z_threshold=settings.cost_anomaly_z, min_cost_usd=settings.cost_anomaly_min_usd,
                   settings=settings)  # fmt: skip

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
            event = ev.llm_call(
                tid, ts, bot=d.bot, agent=d.agent_name, decision_type=d.decision_type, model=d.model,
                provider=d.provider, input_tokens=d.input_tokens, output_tokens=d.output_tokens,
                cache_read_tokens=d.cache_read_tokens, cache_write_tokens=d.cache_write_tokens,
                latency_ms=float(d.latency_ms) if isinstance(d.latency_ms, (int, float)) else d.latency_ms,
                cache_hit=False, cost_usd=d.cost_usd, conversation_id=d.conversation_id, success=d.success,
                error_type=d.error_type,
            )  # fmt: skip
            check_wire(event)
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
        window: Window | None = "7d",
        *,
        z_threshold: float | None = None,
        min_decisions: int | None = None,
        max_anomalies: int = 100,
        anomaly_offset: int = 0,
        min_cost_usd: float | None = None,
        now: datetime | None = None,
    ) -> CostReport:
        """The cost report for the window ('1h', '24h', '7d', a timedelta, seconds, or None for all
        history). `anomalies` holds `max_anomalies` of them from `anomaly_offset` on, highest z
        first (a page of the listing); `anomaly_count` counts them all."""
        z = self.z_threshold if z_threshold is None else float(z_threshold)
        min_cost = self.min_cost_usd if min_cost_usd is None else float(min_cost_usd)
        min_n = self.min_decisions if min_decisions is None else int(min_decisions)
        seconds = None if window is None else window_seconds(window)
        now = resolve_now(now)
        start, end = window_bounds(window, now)
        with self.store.connect() as conn:
            agg = aggregate(self.store, LLM, start, end, group_by=("agent",), percentiles=False, rollups=True,
                            conn=conn)  # fmt: skip
            groups = {k[0]: st for k, st in agg.groups.items() if k[0] is not None}
            moments = {
                agent: cost_moments(st.count, float(st.sums.get("cost_usd", 0) or 0),
                                    float(st.sums.get("cost_sq_usd", 0) or 0))
                for agent, st in groups.items()
            }  # fmt: skip
            judged = {
                agent: (mean, std)
                for agent, (mean, std) in moments.items()
                if groups[agent].count >= min_n and std is not None and std > 0
            }
            shown, counts = self._anomalies(
                conn, start, end, judged, z, min_cost, max_anomalies, anomaly_offset
            )
        total_cost = sum(float(st.sums.get("cost_usd", 0) or 0) for st in groups.values())
        summaries: dict[str, AgentCostSummary] = {}
        for agent in sorted(groups):
            st = groups[agent]
            cost = float(st.sums.get("cost_usd", 0) or 0)
            tin, tout = int(st.sums.get("input_tokens", 0) or 0), int(st.sums.get("output_tokens", 0) or 0)
            mean, std = moments[agent]
            summaries[agent] = AgentCostSummary(
                agent=agent, total_cost=cost, decisions=st.count, total_tokens=tin + tout, input_tokens=tin,
                output_tokens=tout, avg_cost=cost / st.count if st.count else 0.0, avg_latency_ms=st.mean_ms or 0.0,
                errors=st.errors, tokens_per_decision=(tin + tout) / st.count if st.count else 0.0,
                share_of_cost=cost / total_cost if total_cost else 0.0, judged=st.count >= min_n and st.count >= 2,
                mean_cost=mean, std_cost=std, anomalies=counts.get(agent, 0),
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
            anomaly_count=sum(counts.values()), anomaly_count_exact=True,
            efficiency_ranking=efficiency, z_threshold=z, min_decisions=min_n,
            window_seconds=seconds, generated_at=now, source=agg.source, min_cost_usd=min_cost,
        )  # fmt: skip

    def _anomalies(
        self, conn: sa.Connection, start: datetime, end: datetime, judged: dict[str, tuple[float, float]],
        z: float, min_cost: float, limit: int, offset: int = 0,
    ) -> tuple[list[CostAnomaly], dict[str, int]]:  # fmt: skip
        """One page of the window's anomalous calls (highest z first) and their number per agent.
        A call is anomalous when it costs at least `min_cost` dollars AND more than mean + z * sd
        of its agent. Counted per agent on the (agent, cost_usd, ts) index; the page merges each
        agent's most expensive anomalous calls by z-score."""
        t = schema.llm_calls
        counts: dict[str, int] = {}
        cuts = {agent: max(mean + z * std, 0.0) for agent, (mean, std) in judged.items()}
        for agent in sorted(judged):
            where = (t.c.agent == agent, t.c.cost_usd > cuts[agent], t.c.cost_usd >= min_cost,
                     t.c.ts >= start, t.c.ts < end)  # fmt: skip
            counts[agent] = int(
                conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar() or 0
            )
        hit = [a for a in sorted(judged) if counts[a]]
        if not hit or limit <= 0:
            return [], counts
        # within one agent the z-score grows with the cost, so the page is among each agent's
        # `offset + limit` most expensive anomalous calls: a short walk down its index per agent,
        # merged here, instead of ordering every anomalous call of the window by z
        want = max(int(offset), 0) + limit
        candidates = []
        for a in hit:
            mean, std = judged[a]
            for r in conn.execute(
                sa.select(*DETAIL_COLUMNS, t.c.agent)
                .where(t.c.agent == a, t.c.cost_usd > cuts[a], t.c.cost_usd >= min_cost, t.c.ts >= start, t.c.ts < end)
                .order_by(t.c.cost_usd.desc(), t.c.trace_id)
                .limit(want)
            ).all():  # fmt: skip
                candidates.append(((float(r[0]) - mean) / std, r))
        candidates.sort(key=lambda c: (-c[0], c[1][1]))
        rows = [r for _, r in candidates[max(int(offset), 0) : want]]
        shown = []
        for r in rows:
            d, agent = _detail(r[:-1]), r[-1]
            mean, std = judged[agent]
            shown.append(CostAnomaly(agent=agent, trace_id=d[1], ts=d[2], cost_usd=d[0], z_score=(d[0] - mean) / std,
                                     agent_mean_usd=mean, agent_std_usd=std, model=d[3], decision_type=d[4],
                                     conversation_id=d[5], bot=d[6], trace_ids=[d[1]]))  # fmt: skip
        return shown, counts

    def calls(self, trace_ids: Sequence[str], *, limit: int = 500) -> list[dict[str, Any]]:
        """The LLM calls with these trace ids (an anomaly's `trace_ids`), most expensive first, at
        most `limit`."""
        ids = list(dict.fromkeys(str(i) for i in trace_ids if i))[:limit]
        if not ids:
            return []
        t = schema.llm_calls
        stmt = sa.select(*[t.c[c] for c in CALL_COLUMNS]).where(t.c.trace_id.in_(ids))
        with self.store.connect() as conn:
            rows = conn.execute(stmt.order_by(t.c.cost_usd.desc(), t.c.trace_id)).all()
        return [dict(zip(CALL_COLUMNS, r, strict=True)) | {"ts": as_datetime(r[1])} for r in rows]

    def decision_type_breakdown(
        self, window: Window = "24h", *, agent: str | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Spend per (agent, decision type) in the window: decisions, tokens, cost, cost per decision,
        mean latency. Decision types are not a rollup key, so this groups raw rows in SQL: keep the
        window to a day or a week on large stores."""
        start, end = window_bounds(window, now)
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
