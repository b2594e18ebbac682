"""PerformanceTracker and the shared window machinery: exact percentiles on raw windows, rollup
windows within 1%, SLA compliance against the shipped table, and read plans that cover a window."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest

from observability.analytics.performance import PerformanceTracker, SlaTarget, load_sla_targets
from observability.analytics.window import (
    HOUR,
    MINUTE,
    ReadPlan,
    clear_sketch_cache,
    plan_ranges,
    sketch_quantiles,
)
from observability.store import Store, rollups
from observability.store.ingest import write_batch
from observability.store.sketch import Sketch
from observability.timeutil import to_epoch

NOW = datetime(2026, 3, 10, 12, 34, 56, 789000)


def op(bot: str, operation: str, ms: float, ts: datetime, *, ok: bool = True, hit: bool = False,
       err: str | None = None) -> list:  # fmt: skip
    return ["op", uuid.uuid4().hex, to_epoch(ts), bot, operation, float(ms), ok, hit, err if not ok else None]


# ---- read plans --------------------------------------------------------------------------------


def _covered(plan: ReadPlan) -> list[tuple[datetime, datetime]]:
    return sorted([*plan.raw, *plan.minute, *plan.hour])


def test_read_plan_covers_the_window_exactly_with_disjoint_ranges() -> None:
    rng = np.random.default_rng(3)
    base = datetime(2026, 1, 1)
    for case in range(300):
        start = base + timedelta(seconds=float(rng.uniform(0, 86_400 * 3)))
        end = start + timedelta(
            seconds=float(rng.choice([30, 600, 5000, 90_000, 700_000])) * rng.uniform(0.5, 1.5)
        )
        span_min = int((end - start).total_seconds() // 60)
        dirty = [
            start.replace(second=0, microsecond=0) + MINUTE * int(m)
            for m in rng.integers(0, span_min + 2, 40)
        ]
        hours = bool(case % 2)
        plan = plan_ranges(start, end, dirty[: int(rng.integers(0, 40))], hours=hours, max_raw_ranges=8)
        pieces = _covered(plan)
        assert pieces[0][0] == start and pieces[-1][1] == end
        for (a, b), (c, _) in zip(pieces, pieces[1:], strict=False):
            assert a < b and b == c  # contiguous, no overlap
        for a, b in plan.minute:
            assert a.second == a.microsecond == 0 and b.second == b.microsecond == 0
        for a, b in plan.hour:
            assert a.minute == a.second == 0 and b.minute == b.second == 0
        assert hours or not plan.hour
        assert len(plan.raw) <= 8 + 2


def test_read_plan_reads_stale_minutes_and_edges_raw() -> None:
    start = datetime(2026, 3, 9, 10, 15, 30)
    end = datetime(2026, 3, 9, 14, 40, 10)
    stale = datetime(2026, 3, 9, 12, 5)
    plan = plan_ranges(start, end, [stale])
    assert plan.raw == (
        (start, datetime(2026, 3, 9, 10, 16)),
        (stale, stale + MINUTE),
        (datetime(2026, 3, 9, 14, 40), end),
    )
    # 11:00-12:00 and 13:00-14:00 are clean full hours; the hour with the stale minute is read by minute
    assert plan.hour == ((datetime(2026, 3, 9, 11), datetime(2026, 3, 9, 12)),
                         (datetime(2026, 3, 9, 13), datetime(2026, 3, 9, 14)))  # fmt: skip
    assert (datetime(2026, 3, 9, 12), stale) in plan.minute
    assert (stale + MINUTE, datetime(2026, 3, 9, 13)) in plan.minute
    assert plan_ranges(start, start + timedelta(seconds=20)).raw == ((start, start + timedelta(seconds=20)),)
    assert plan_ranges(end, start) == plan_ranges(end, end)


# ---- stats ---------------------------------------------------------------------------------------


def test_bot_stats_by_hand_over_the_last_hour(store: Store) -> None:
    durations = [100.0 * i for i in range(1, 11)]  # 100 .. 1000 ms
    events = [op("lead_bot", "process", d, NOW - timedelta(minutes=5 * i + 1), ok=i not in (2, 7),
                 hit=i % 2 == 0, err="timeout") for i, d in enumerate(durations)]  # fmt: skip
    events.append(op("lead_bot", "process", 99_999.0, NOW - timedelta(minutes=61)))  # outside the hour
    events.append(op("lead_bot", "process", 1.0, NOW + timedelta(seconds=1)))  # after now
    events.append(op("buyer_bot", "process", 5.0, NOW - timedelta(minutes=1)))
    write_batch(store, events)
    stats = PerformanceTracker(store).get_bot_stats("lead_bot", "1h", now=NOW)
    assert stats["count"] == 10 and stats["error_count"] == 2 and stats["success_count"] == 8
    assert stats["success_rate"] == pytest.approx(0.8) and stats["cache_hits"] == 5
    assert stats["cache_hit_rate"] == pytest.approx(0.5)
    assert stats["p50"] == pytest.approx(550.0)  # numpy: linear interpolation
    assert stats["p95"] == pytest.approx(955.0)
    assert stats["p99"] == pytest.approx(991.0)
    assert (stats["mean"], stats["min"], stats["max"]) == (pytest.approx(550.0), 100.0, 1000.0)
    assert stats["approximate"] is False and stats["source"] == "raw"
    only = PerformanceTracker(store).get_bot_stats("lead_bot", "1h", operation="handoff", now=NOW)
    assert only["count"] == 0 and only["p95"] == 0.0


def test_windows_match_numpy_exact_under_a_day_and_within_one_percent_from_rollups(store: Store) -> None:
    rng = np.random.default_rng(42)
    n = 3000
    offsets = rng.uniform(0, 8 * 86_400, n)
    bots = rng.choice(["lead_bot", "buyer_bot", "seller_bot"], n)
    ms = rng.lognormal(6.0, 0.7, n)
    ok = rng.random(n) > 0.07
    hit = rng.random(n) < 0.4
    # a few hundred in the last hour so the raw window has something to measure
    offsets[:300] = rng.uniform(0, 3600, 300)
    events = [op(str(bots[i]), "process", float(ms[i]), NOW - timedelta(seconds=float(offsets[i])), ok=bool(ok[i]),
                 hit=bool(hit[i])) for i in range(n)]  # fmt: skip
    write_batch(store, events)
    rollups.run(store)
    tracker = PerformanceTracker(store)
    for window, seconds in (("1h", 3600), ("24h", 86_400), ("7d", 604_800)):
        for bot in ("lead_bot", "buyer_bot", "seller_bot"):
            sel = (bots == bot) & (offsets > 0) & (offsets <= seconds)
            stats = tracker.get_bot_stats(bot, window, now=NOW)
            assert stats["count"] == int(sel.sum())
            assert stats["error_count"] == int((~ok[sel]).sum())
            assert stats["cache_hits"] == int(hit[sel].sum())
            assert stats["mean"] == pytest.approx(ms[sel].mean(), rel=1e-6)
            assert stats["min"] == pytest.approx(ms[sel].min(), rel=1e-6)
            assert stats["max"] == pytest.approx(ms[sel].max(), rel=1e-6)
            expected = np.percentile(ms[sel], [50, 95, 99])
            got = [stats["p50"], stats["p95"], stats["p99"]]
            if window == "1h":
                assert got == pytest.approx(expected, rel=1e-6)
                assert stats["approximate"] is False
            else:
                assert got == pytest.approx(expected, rel=0.01)
                assert stats["approximate"] is True and stats["source"] == "rollup"
    everyone = tracker.get_all_bot_stats("24h", now=NOW)
    assert sum(s["count"] for s in everyone.values()) == int((offsets <= 86_400).sum())


def test_rollup_windows_stay_exact_before_the_rollup_step_runs(store: Store) -> None:
    base = [op("seller_bot", "process", 200.0 + i, NOW - timedelta(hours=3, minutes=i)) for i in range(50)]
    write_batch(store, base)
    rollups.run(store)
    late = [
        op("seller_bot", "process", 5000.0, NOW - timedelta(hours=3, minutes=i, seconds=30)) for i in range(5)
    ]
    write_batch(store, late)  # not rolled up yet: their minutes are dirty
    stats = PerformanceTracker(store).get_bot_stats("seller_bot", "24h", now=NOW)
    assert stats["count"] == 55 and stats["max"] == 5000.0
    rollups.run(store)
    assert PerformanceTracker(store).get_bot_stats("seller_bot", "24h", now=NOW)["count"] == 55


def test_unknown_window_is_rejected(store: Store) -> None:
    tracker = PerformanceTracker(store)
    for bad in ("", "2 weeks", "0h", "h", 0, -5, True, float("nan")):
        with pytest.raises(ValueError):
            tracker.get_bot_stats("lead_bot", bad, now=NOW)
    assert tracker.get_bot_stats("lead_bot", 7200, now=NOW)["window_seconds"] == 7200
    assert tracker.get_bot_stats("lead_bot", "15m", now=NOW)["window_seconds"] == 900
    assert tracker.get_bot_stats("lead_bot", "30d", now=NOW)["source"] == "rollup"


# ---- SLA --------------------------------------------------------------------------------------


def test_shipped_sla_table_is_the_source_documents() -> None:
    targets = {(t.bot, t.operation): (t.p50_ms, t.p95_ms, t.p99_ms) for t in load_sla_targets()}
    assert len(targets) == 10
    assert targets[("lead_bot", "full_qualification")] == (500, 2000, 3000)
    assert targets[("buyer_bot", "full_qualification")] == (800, 2500, 3500)
    assert targets[("seller_bot", "process")] == (400, 1800, 2500)
    assert targets[("handoff", "execute")] == (100, 500, 800)
    assert {b for b, _ in targets} == {"lead_bot", "buyer_bot", "seller_bot", "handoff"}


def test_sla_compliance_reports_targets_actuals_and_violations(store: Store) -> None:
    events = []
    # lead_bot/process: 20 calls 100..2000 ms -> P95 1905 > 1500, P99 1981 > 2000? no: within
    for i in range(1, 21):
        events.append(op("lead_bot", "process", 100.0 * i, NOW - timedelta(minutes=2 * i)))
    # buyer_bot/handoff: fast and compliant
    for i in range(10):
        events.append(
            op("buyer_bot", "handoff", 50.0 + i, NOW - timedelta(minutes=i + 1), ok=i != 0, hit=i < 4)
        )
    write_batch(store, events)
    report = PerformanceTracker(store).check_sla_compliance("1h", now=NOW)
    assert len(report) == 10
    by = {(r["bot"], r["operation"]): r for r in report}
    lead = by[("lead_bot", "process")]
    assert lead["count"] == 20 and not lead["compliant"]
    assert lead["actual_p50"] == pytest.approx(1050.0) and lead["actual_p95"] == pytest.approx(1905.0)
    assert lead["target_p95"] == 1500 and lead["actual_p99"] == pytest.approx(1981.0)
    assert lead["violations"] == [
        "lead_bot/process: P50 1,050 ms exceeds the 300 ms target (1h)",
        "lead_bot/process: P95 1,905 ms exceeds the 1,500 ms target (1h)",
    ]
    fast = by[("buyer_bot", "handoff")]
    assert fast["compliant"] and fast["violations"] == []
    assert fast["errors"] == 1 and fast["error_rate"] == pytest.approx(0.1) and fast["cache_hit_rate"] == 0.4
    idle = by[("handoff", "execute")]
    assert (
        idle["count"] == 0 and idle["compliant"] and idle["actual_p95"] is None and idle["error_rate"] == 0.0
    )
    assert PerformanceTracker(store).sla_violations("1h", now=NOW) == lead["violations"]


def test_sla_targets_can_be_given(store: Store) -> None:
    write_batch(store, [op("x_bot", "run", 10.0, NOW - timedelta(minutes=1))])
    tracker = PerformanceTracker(store, sla_targets=[SlaTarget("x_bot", "run", 5, 8, 9)])
    (row,) = tracker.check_sla_compliance("1h", now=NOW)
    assert len(row["violations"]) == 3


# ---- series --------------------------------------------------------------------------------------


def test_bot_timeseries_buckets_add_up(store: Store) -> None:
    rng = np.random.default_rng(5)
    offsets = rng.uniform(0, 6 * 3600, 600)
    ms = rng.lognormal(5, 0.5, 600)
    ok = rng.random(600) > 0.1
    write_batch(store, [op("lead_bot", "process", float(ms[i]), NOW - timedelta(seconds=float(offsets[i])),
                           ok=bool(ok[i])) for i in range(600)])  # fmt: skip
    rollups.run(store)
    tracker = PerformanceTracker(store)
    rows = tracker.bot_timeseries(6 * 3600, "hour", now=NOW)
    assert sum(r["requests"] for r in rows) == 600
    assert sum(r["errors"] for r in rows) == int((~ok).sum())
    stamps = [NOW - timedelta(seconds=float(o)) for o in offsets]
    for r in rows:
        inside = np.array([s.replace(minute=0, second=0, microsecond=0) == r["bucket"] for s in stamps])
        assert r["requests"] == int(inside.sum())
        assert r["requests_per_minute"] == pytest.approx(inside.sum() / 60)
        assert r["p95"] == pytest.approx(np.percentile(ms[inside], 95), rel=0.01)
        assert r["approximate"] is True
    minutes = tracker.bot_timeseries(3600, "minute", bot="lead_bot", now=NOW)
    assert sum(r["requests"] for r in minutes) == int((offsets <= 3600).sum())
    assert all(r["bucket"] + MINUTE > NOW - HOUR for r in minutes)
    with pytest.raises(ValueError):
        tracker.bot_timeseries("24h", "week", now=NOW)


def test_vectorised_sketch_quantiles_equal_the_sketchs() -> None:
    rng = np.random.default_rng(8)
    for _ in range(100):
        values = rng.lognormal(5, 1.2, int(rng.integers(1, 800)))
        sketch = Sketch.from_values(values)
        keys = np.array(sorted(sketch.counts))
        counts = np.array([sketch.counts[k] for k in keys])
        qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
        assert sketch_quantiles(keys, counts, qs) == pytest.approx(sketch.quantiles(qs), rel=1e-12)


def test_cached_rollup_sketches_follow_new_data(store: Store) -> None:
    write_batch(
        store, [op("lead_bot", "process", 100.0 + i, NOW - timedelta(hours=5, minutes=i)) for i in range(40)]
    )
    rollups.run(store)
    tracker = PerformanceTracker(store)
    before = tracker.get_bot_stats("lead_bot", "24h", now=NOW)
    assert before["count"] == 40 and before["p99"] < 150
    assert tracker.get_bot_stats("lead_bot", "24h", now=NOW) == before  # from the sketch cache
    write_batch(store, [op("lead_bot", "process", 9000.0, NOW - timedelta(hours=5, minutes=i, seconds=10))
                        for i in range(5)])  # fmt: skip
    rollups.run(store)
    after = tracker.get_bot_stats("lead_bot", "24h", now=NOW)
    assert after["count"] == 45 and after["p99"] == pytest.approx(9000.0, rel=0.01)
    clear_sketch_cache()
    assert tracker.get_bot_stats("lead_bot", "24h", now=NOW) == after
