"""DecisionCostTracker: decisions land in llm_calls; the report's summaries, z-score anomalies per
agent (with trace ids), the 10-decision minimum, the efficiency ranking, moments from the rollups'
sums of squares, and the calls behind an anomaly."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from observability import events
from observability.analytics.agent_costs import DecisionCost, DecisionCostTracker, cost_moments
from observability.store import Store, pricing, rollups, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch

NOW = datetime(2026, 3, 10, 12, 34, 56)


def decision_event(agent: str, cost: float, ts: datetime, *, tokens: int = 1000, ms: float = 400.0,
                   model: str = "claude-sonnet-4-5") -> list:  # fmt: skip
    return ["llm", uuid.uuid4().hex, to_epoch(ts), "lead_bot", agent, "qualify", model, "anthropic", tokens,
            tokens // 10, 0, 0, float(ms), False, float(cost), f"conv-{agent}", True, None]  # fmt: skip


def test_record_stores_a_priced_llm_call(store: Store) -> None:
    tracker = DecisionCostTracker(store)
    ts = NOW - timedelta(minutes=3)
    tid = tracker.record(DecisionCost("qualifier", "lead_score", 10_000, 500, latency_ms=321.0,
                                      model="claude-sonnet-4-5", provider="anthropic", cache_read_tokens=6_000,
                                      cache_write_tokens=1_000, bot="lead_bot", conversation_id="c9",
                                      timestamp=ts))  # fmt: skip
    paid = tracker.record(DecisionCost("matcher", "match", 100, 10, cost_usd=0.42, timestamp=ts))
    t = schema.llm_calls
    with store.connect() as conn:
        rows = {r.trace_id: r for r in conn.execute(sa.select(t))}
    row = rows[tid]
    assert (row.agent, row.decision_type, row.bot, row.conversation_id) == (
        "qualifier",
        "lead_score",
        "lead_bot",
        "c9",
    )
    assert row.cost_usd == pytest.approx(
        pricing.cost_of("anthropic", "claude-sonnet-4-5", 10_000, 500, 6_000, 1_000).usd
    )
    assert row.latency_ms == 321.0 and row.ts == ts
    assert rows[paid].cost_usd == pytest.approx(0.42)  # the caller's cost wins
    assert not rows[paid].price_known  # 'unspecified' model: flagged


def test_invalid_decisions_are_rejected_and_nothing_is_stored(store: Store) -> None:
    tracker = DecisionCostTracker(store)
    good = DecisionCost("qualifier", "qualify", 100, 10, cost_usd=0.1, timestamp=NOW)
    for bad in (DecisionCost("", "qualify", 100, 10), DecisionCost("a", "qualify", -1, 10),
                DecisionCost("a", "qualify", 100, 10, cache_read_tokens=200),
                DecisionCost("a", "qualify", 100, 10, cost_usd=float("nan")),
                DecisionCost("a", "qualify", 100, 10, latency_ms="fast")):  # type: ignore[arg-type]  # fmt: skip
        with pytest.raises(events.EventRejected):
            tracker.record_many([good, bad])
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.llm_calls)).scalar() == 0
    with pytest.raises(ValueError):
        DecisionCostTracker(store, z_threshold=0)
    with pytest.raises(ValueError):
        DecisionCostTracker(store, min_decisions=1)


def test_report_by_hand(store: Store) -> None:
    costs = [0.01] * 11 + [0.50]  # 12 decisions: the spike is the 12th
    evs = [
        decision_event("qualifier", c, NOW - timedelta(minutes=5 * i + 1), tokens=1000 + i)
        for i, c in enumerate(costs)
    ]
    evs += [
        decision_event("writer", 0.30 + 0.01 * i, NOW - timedelta(minutes=7 * i + 2), tokens=3000)
        for i in range(5)
    ]
    write_batch(store, evs)
    rollups.run(store)
    report = DecisionCostTracker(store).report("24h", now=NOW)
    q, w = report.agent_summaries["qualifier"], report.agent_summaries["writer"]
    assert (
        q.decisions == 12 and q.total_cost == pytest.approx(0.61) and q.avg_cost == pytest.approx(0.61 / 12)
    )
    assert q.total_tokens == sum(1000 + i + (1000 + i) // 10 for i in range(12))
    assert q.avg_latency_ms == pytest.approx(400.0) and q.judged and q.anomalies == 1
    mean, std = np.mean(costs), np.std(costs, ddof=1)
    assert q.mean_cost == pytest.approx(mean) and q.std_cost == pytest.approx(std)
    (anomaly,) = report.anomalies
    assert anomaly.agent == "qualifier" and anomaly.cost_usd == pytest.approx(0.5)
    assert anomaly.z_score == pytest.approx((0.5 - mean) / std)
    assert anomaly.trace_ids == [evs[11][1]] and anomaly.trace_id == evs[11][1]
    assert anomaly.ts == NOW - timedelta(minutes=56) and anomaly.model == "claude-sonnet-4-5"
    assert anomaly.conversation_id == "conv-qualifier" and anomaly.decision_type == "qualify"
    assert not w.judged and w.anomalies == 0  # 5 decisions: fewer than 10, not judged
    assert report.total_decisions == 17 and report.total_cost == pytest.approx(0.61 + 1.6)
    assert report.anomaly_count == 1
    assert [r["agent"] for r in report.efficiency_ranking] == ["qualifier", "writer"]
    assert report.efficiency_ranking[0]["rank"] == 1
    assert report.efficiency_rankings == pytest.approx({"qualifier": 0.61 / 12, "writer": 0.32})
    assert q.decision_count == 12 and q.avg_latency == pytest.approx(400.0)
    assert DecisionCostTracker(store, min_decisions=3).report("24h", now=NOW).agent_summaries["writer"].judged
    # a higher threshold flags nothing; z for the spike is about 3.17
    assert DecisionCostTracker(store, z_threshold=3.5).report("24h", now=NOW).anomaly_count == 0
    assert DecisionCostTracker(store).report("24h", z_threshold=3.5, now=NOW).anomaly_count == 0


def test_anomalies_match_numpy_z_scores_over_a_week(store: Store) -> None:
    rng = np.random.default_rng(17)
    rows = []
    for agent, n, scale in (("qualifier", 900, 0.01), ("matcher", 600, 0.03), ("writer", 8, 0.2)):
        offsets = rng.uniform(0, 8 * 86_400, n)
        cost = rng.lognormal(np.log(scale), 0.35, n)
        spikes = rng.choice(n, 6, replace=False)
        cost[spikes] *= rng.uniform(4, 8, 6)
        for i in range(n):
            rows.append((agent, float(cost[i]), float(offsets[i])))
    evs = [decision_event(a, c, NOW - timedelta(seconds=o)) for a, c, o in rows]
    write_batch(store, evs)
    rollups.run(store)
    tracker = DecisionCostTracker(store)
    for window, seconds in (("24h", 86_400), ("7d", 604_800)):
        report = tracker.report(window, max_anomalies=1000, now=NOW)
        expected = set()
        for agent in ("qualifier", "matcher", "writer"):
            sel = [
                (c, e[1]) for (a, c, o), e in zip(rows, evs, strict=True) if a == agent and 0 < o <= seconds
            ]
            costs = np.array([c for c, _ in sel])
            if not sel:
                assert agent not in report.agent_summaries
                continue
            s = report.agent_summaries[agent]
            assert s.decisions == len(sel) and s.total_cost == pytest.approx(costs.sum())
            if len(sel) < 10:
                assert not s.judged
                continue
            z = (costs - costs.mean()) / costs.std(ddof=1)
            expected |= {tid for (_, tid), zi in zip(sel, z, strict=True) if zi > 3}
            assert s.std_cost == pytest.approx(costs.std(ddof=1), rel=1e-9)
        assert {a.trace_id for a in report.anomalies} == expected
        assert report.anomaly_count == len(expected) > 0 and report.anomaly_count_exact
        assert [a.z_score for a in report.anomalies] == sorted(
            (a.z_score for a in report.anomalies), reverse=True
        )
        again = tracker.report(window, max_anomalies=1000, now=NOW)  # no state: the same answer again
        assert [a.trace_id for a in again.anomalies] == [a.trace_id for a in report.anomalies]
    assert len(tracker.report("7d", max_anomalies=3, now=NOW).anomalies) == 3


def test_late_rows_count_before_and_after_the_rollup_step(store: Store) -> None:
    base = [
        decision_event("qualifier", 0.01 + 0.0001 * i, NOW - timedelta(hours=5, minutes=i)) for i in range(40)
    ]
    write_batch(store, base)
    rollups.run(store)
    tracker = DecisionCostTracker(store)
    assert tracker.report("24h", now=NOW).anomaly_count == 0
    spike = decision_event("qualifier", 5.0, NOW - timedelta(hours=5, minutes=3, seconds=30))
    write_batch(store, [spike])  # dirty until the rollup step runs: the hour is re-read raw
    report = tracker.report("24h", now=NOW)
    assert [a.trace_id for a in report.anomalies] == [spike[1]]
    rollups.run(store)
    assert [a.trace_id for a in tracker.report("24h", now=NOW).anomalies] == [spike[1]]


def test_many_anomalies_in_one_hour_are_all_found_and_counted_exactly(store: Store) -> None:
    evs = [decision_event("qualifier", 0.01, NOW - timedelta(hours=3, minutes=i)) for i in range(50)]
    evs += [
        decision_event("qualifier", 1.0 + i, NOW - timedelta(hours=3, minutes=50 + i % 9)) for i in range(4)
    ]
    write_batch(store, evs)
    rollups.run(store)
    costs = np.array([0.01] * 50 + [1.0, 2.0, 3.0, 4.0])
    z = (costs - costs.mean()) / costs.std(ddof=1)
    for threshold in (1.5, 0.5):
        expected = sorted(costs[z > threshold].tolist())
        assert len(expected) > 2  # several anomalies in the same hour
        report = DecisionCostTracker(store, z_threshold=threshold).report("24h", now=NOW)
        assert sorted(a.cost_usd for a in report.anomalies) == expected
        assert report.anomaly_count == len(expected) and report.anomaly_count_exact
    # only the top one is shown; the count is still exact (counted in SQL, not estimated)
    report = DecisionCostTracker(store, z_threshold=0.5).report("24h", max_anomalies=1, now=NOW)
    assert [a.cost_usd for a in report.anomalies] == [4.0]
    assert report.anomaly_count_exact and report.anomaly_count == 4
    assert report.agent_summaries["qualifier"].anomalies == 4


def test_mean_and_sd_come_from_the_rollups_sums_of_squares(store: Store) -> None:
    rng = np.random.default_rng(5)
    cost = rng.lognormal(np.log(0.02), 0.5, 400)
    offsets = rng.uniform(3 * 3600, 3 * 86_400, 400)  # whole hours from hour rollups, edges raw
    write_batch(store, [decision_event("writer", float(c), NOW - timedelta(seconds=float(o)))
                        for c, o in zip(cost, offsets, strict=True)])  # fmt: skip
    rollups.run(store)
    t = schema.rollup_llm_hour
    with store.connect() as conn:
        sq = conn.execute(sa.select(sa.func.sum(t.c.cost_sq_usd))).scalar()
    assert sq == pytest.approx(float((cost**2).sum()), rel=1e-9)
    s = DecisionCostTracker(store).report("7d", now=NOW).agent_summaries["writer"]
    assert s.mean_cost == pytest.approx(cost.mean(), rel=1e-9)
    assert s.std_cost == pytest.approx(cost.std(ddof=1), rel=1e-9)


def test_equal_costs_have_no_spread_and_no_anomalies(store: Store) -> None:
    write_batch(store, [decision_event("router", 0.1, NOW - timedelta(minutes=i + 1)) for i in range(30)])
    rollups.run(store)
    report = DecisionCostTracker(store).report("1h", now=NOW)
    s = report.agent_summaries["router"]
    assert s.std_cost == 0.0 and s.mean_cost == pytest.approx(0.1)
    assert report.anomaly_count == 0 and not report.anomalies
    assert cost_moments(0, 0.0, 0.0) == (None, None) and cost_moments(1, 0.5, 0.25) == (0.5, None)


def test_an_anomalys_calls_are_listed_by_trace_id(store: Store) -> None:
    evs = [decision_event("qualifier", 0.01 * (i + 1), NOW - timedelta(minutes=i + 1)) for i in range(3)]
    write_batch(store, evs)
    calls = DecisionCostTracker(store).calls([evs[0][1], evs[2][1], "unknown", ""])
    assert [c["trace_id"] for c in calls] == [evs[2][1], evs[0][1]]  # most expensive first
    assert calls[0]["agent"] == "qualifier" and calls[0]["cost_usd"] == pytest.approx(0.03)
    assert calls[0]["ts"] == NOW - timedelta(minutes=3)
    assert DecisionCostTracker(store).calls([]) == []


def test_decision_type_breakdown(store: Store) -> None:
    tracker = DecisionCostTracker(store)
    tracker.record_many([
        DecisionCost("qualifier", "score", 100, 10, cost_usd=0.1, latency_ms=100, timestamp=NOW - timedelta(minutes=1)),
        DecisionCost("qualifier", "score", 100, 10, cost_usd=0.3, latency_ms=300, timestamp=NOW - timedelta(minutes=2)),
        DecisionCost("qualifier", "summarise", 500, 50, cost_usd=1.0, timestamp=NOW - timedelta(minutes=3)),
    ])  # fmt: skip
    rows = tracker.decision_type_breakdown("1h", now=NOW)
    assert [(r["decision_type"], r["decisions"]) for r in rows] == [("summarise", 1), ("score", 2)]
    assert rows[1]["cost_per_decision"] == pytest.approx(0.2) and rows[1]["avg_latency_ms"] == pytest.approx(
        200
    )
