"""BotMetricsCollector: per-bot and system summaries, handoffs, and the metrics fed to alerting."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest

from observability.analytics.bot_metrics import ALERT_METRIC_NAMES, BotMetricsCollector
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch

NOW = datetime(2026, 3, 10, 12, 34, 56)


def interaction(
    bot: str, ms: float, ts: datetime, *, ok: bool = True, hit: bool = False, err: str | None = None
) -> list:
    return ["interaction", uuid.uuid4().hex, to_epoch(ts), bot, float(ms), ok, hit, err]


def handoff(
    source: str, target: str, ts: datetime, *, ok: bool = True, ms: float = 100.0, blocked: bool = False
) -> list:
    return ["handoff", uuid.uuid4().hex, to_epoch(ts), source, target, ok, float(ms), blocked,
            "circular" if blocked else None]  # fmt: skip


def llm(ts: datetime, *, ok: bool = True, err: str | None = None) -> list:
    return ["llm", uuid.uuid4().hex, to_epoch(ts), "lead_bot", None, None, "claude-haiku-4-5", "anthropic", 100, 10,
            0, 0, 300.0, False, None, None, ok, err]  # fmt: skip


@pytest.fixture
def scripted(store: Store):
    events = [interaction("lead_bot", 100.0 * i, NOW - timedelta(minutes=i), ok=i != 3, hit=i <= 4)
              for i in range(1, 11)]  # fmt: skip
    events += [interaction("buyer_bot", 400.0, NOW - timedelta(minutes=2)),
               interaction("buyer_bot", 800.0, NOW - timedelta(minutes=3), ok=False, err="RateLimitError"),
               interaction("lead_bot", 99_999.0, NOW - timedelta(minutes=90)),
               interaction("concierge_bot", 50.0, NOW - timedelta(minutes=1))]  # fmt: skip
    events += [
        handoff("lead_bot", "buyer_bot", NOW - timedelta(minutes=i), ms=20.0 * i, ok=i != 5)
        for i in range(1, 11)
    ]
    events += [handoff("lead_bot", "seller_bot", NOW - timedelta(minutes=70), blocked=True, ok=False),
               handoff("buyer_bot", "lead_bot", NOW - timedelta(minutes=10), blocked=True, ok=False)]  # fmt: skip
    events += [llm(NOW - timedelta(minutes=i), ok=i > 2, err="rate_limit_error") for i in range(1, 11)]
    write_batch(store, events)
    return store


def test_bot_summary_by_hand(scripted: Store) -> None:
    summary = BotMetricsCollector(scripted).get_bot_summary("lead_bot", now=NOW)
    assert summary["total_interactions"] == 10
    assert summary["success_rate"] == pytest.approx(0.9) and summary["error_rate"] == pytest.approx(0.1)
    assert summary["cache_hit_rate"] == pytest.approx(0.4)
    assert summary["avg_duration_ms"] == pytest.approx(550.0)
    assert summary["p95_duration_ms"] == pytest.approx(955.0)
    assert BotMetricsCollector(scripted).get_bot_summary("lead_bot", 120, now=NOW)["total_interactions"] == 11
    idle = BotMetricsCollector(scripted).get_bot_summary("seller_bot", now=NOW)
    assert idle["total_interactions"] == 0 and idle["p95_duration_ms"] == 0.0
    with pytest.raises(ValueError):
        BotMetricsCollector(scripted).get_bot_summary("lead_bot", 0, now=NOW)


def test_system_summary_lists_known_and_active_bots_and_handoffs(scripted: Store) -> None:
    system = BotMetricsCollector(scripted).get_system_summary(now=NOW)
    assert list(system["bots"])[:3] == ["lead_bot", "buyer_bot", "seller_bot"]
    assert "concierge_bot" in system["bots"] and system["bots"]["seller_bot"]["total_interactions"] == 0
    assert system["overall"]["total_interactions"] == 13
    assert system["overall"]["error_rate"] == pytest.approx(2 / 13)
    h = system["handoffs"]
    # the blocked (circular) handoff neither succeeded nor failed: rates are over the 10 attempted
    assert h["total_handoffs"] == 11 and h["attempted_handoffs"] == 10 and h["successful_handoffs"] == 9
    assert h["success_rate"] == pytest.approx(9 / 10) and h["failure_rate"] == pytest.approx(1 / 10)
    assert h["blocked_rate"] == pytest.approx(1 / 11)
    durations = [20.0 * i for i in range(1, 11)] + [100.0]
    assert h["p95_duration_ms"] == pytest.approx(np.percentile(durations, 95))
    assert h["avg_duration_ms"] == pytest.approx(np.mean(durations))
    assert h["blocked"] == 1 and h["blocked_last_hour"] == 1
    wide = BotMetricsCollector(scripted).handoff_summary(120, now=NOW)
    assert wide["blocked"] == 2 and wide["blocked_last_hour"] == 1


def test_handoff_matrix(scripted: Store) -> None:
    matrix = BotMetricsCollector(scripted).handoff_matrix(now=NOW)
    assert [(r["source"], r["target"], r["count"]) for r in matrix] == [
        ("lead_bot", "buyer_bot", 10), ("buyer_bot", "lead_bot", 1), ("lead_bot", "seller_bot", 1)]  # fmt: skip
    first = matrix[0]
    assert first["successes"] == 9 and first["success_rate"] == pytest.approx(0.9) and first["blocked"] == 0
    assert first["avg_duration_ms"] == pytest.approx(110.0)
    assert matrix[1]["blocked"] == 1 and matrix[1]["success_rate"] is None  # nothing attempted


def test_alert_metrics_carry_the_seven_names_and_the_extras(scripted: Store) -> None:
    values = BotMetricsCollector(scripted).alert_metrics(now=NOW)
    assert set(ALERT_METRIC_NAMES) <= set(values)
    assert values["error_rate"] == pytest.approx(2 / 13)
    assert values["cache_hit_rate"] == pytest.approx(4 / 13)
    assert values["lead_bot.response_time_p95"] == pytest.approx(955.0)
    assert values["buyer_bot.response_time_p95"] == pytest.approx(np.percentile([400.0, 800.0], 95))
    assert values["seller_bot.response_time_p95"] == 0.0
    assert values["handoff.failure_rate"] == pytest.approx(1 / 10)
    assert values["handoff.count"] == 10 and values["handoff.blocked_rate"] == pytest.approx(1 / 11)
    assert values["blocked_handoffs_1h"] == 1.0
    assert values["rate_limit_error_rate"] == pytest.approx(0.2)
    assert values["interactions.rate_limit_error_rate"] == pytest.approx(1 / 13)
    assert values["lead_bot.seconds_since_last_response"] == pytest.approx(60.0)
    assert values["concierge_bot.seconds_since_last_response"] == pytest.approx(60.0)
    assert "seller_bot.seconds_since_last_response" not in values  # never responded
    assert all(isinstance(v, float) for v in values.values())


class UpdatingService:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def update_metric(self, name: str, value: float) -> None:
        self.calls.append((name, value))


class BatchService:
    def __init__(self) -> None:
        self.stats: dict | None = None

    def check_and_send_alerts(self, stats: dict) -> list:
        self.stats = stats
        return []


class RecordingService:  # the source document's method name
    def __init__(self) -> None:
        self.names: list[str] = []

    def record_metric(self, name: str, value: float) -> None:
        self.names.append(name)


def test_feed_to_alerting_pushes_each_value_or_the_whole_dict(scripted: Store) -> None:
    collector = BotMetricsCollector(scripted)
    upd = UpdatingService()
    pushed = collector.feed_to_alerting(upd, now=NOW)
    assert [n for n, _ in upd.calls[:7]] == list(ALERT_METRIC_NAMES)
    assert dict(upd.calls) == pushed == collector.alert_metrics(now=NOW)
    batch = BatchService()
    collector.feed_to_alerting(batch, now=NOW)
    assert batch.stats == pushed and list(batch.stats)[:7] == list(ALERT_METRIC_NAMES)
    rec = RecordingService()
    collector.feed_to_alerting(rec, now=NOW)
    assert rec.names[:7] == list(ALERT_METRIC_NAMES)


def test_summaries_match_numpy_on_random_data(store: Store) -> None:
    rng = np.random.default_rng(4)
    n = 1500
    offsets = rng.uniform(0, 3 * 3600, n)
    bots = rng.choice(["lead_bot", "buyer_bot", "seller_bot"], n)
    ms = rng.gamma(2.0, 300.0, n)
    ok = rng.random(n) > 0.05
    hit = rng.random(n) < 0.5
    write_batch(store, [interaction(str(bots[i]), float(ms[i]), NOW - timedelta(seconds=float(offsets[i])),
                                    ok=bool(ok[i]), hit=bool(hit[i])) for i in range(n)])  # fmt: skip
    collector = BotMetricsCollector(store)
    for minutes in (15, 60, 180):
        system = collector.get_system_summary(minutes, now=NOW)
        for bot in ("lead_bot", "buyer_bot", "seller_bot"):
            sel = (bots == bot) & (offsets <= minutes * 60)
            s = system["bots"][bot]
            assert s["total_interactions"] == int(sel.sum())
            assert s["p95_duration_ms"] == pytest.approx(np.percentile(ms[sel], 95), rel=1e-9)
            assert s["p50_duration_ms"] == pytest.approx(np.percentile(ms[sel], 50), rel=1e-9)
            assert s["avg_duration_ms"] == pytest.approx(ms[sel].mean(), rel=1e-9)
            assert s["error_rate"] == pytest.approx((~ok[sel]).mean())
            assert s["cache_hit_rate"] == pytest.approx(hit[sel].mean())


def test_handoff_matrix_for_some_bots_and_interactions_over_time(scripted: Store) -> None:
    collector = BotMetricsCollector(scripted)
    seller = collector.handoff_matrix(120, bots=["seller_bot"], now=NOW)
    assert [(r["source"], r["target"]) for r in seller] == [("lead_bot", "seller_bot")]
    rows = collector.interaction_timeseries(60, "minute", now=NOW)
    assert sum(r["interactions"] for r in rows) == 13
    assert rows == sorted(rows, key=lambda r: (r["bucket"], r["bot"]))
    buyer = collector.interaction_timeseries(60, "hour", bots=["buyer_bot"], now=NOW)
    assert sum(r["interactions"] for r in buyer) == 2 and sum(r["errors"] for r in buyer) == 1
    assert {r["bot"] for r in buyer} == {"buyer_bot"}
    assert sum(r["mean_ms"] * r["interactions"] for r in buyer) == pytest.approx(1200.0)
