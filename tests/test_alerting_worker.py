"""The worker's evaluation on real data: the default rules from raw bot traffic (through the bot
metrics collector and the performance tracker), custom alerts from metric metadata, the thresholds
of recorded metrics, and the excessive-alert-volume rule."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from support.alerting import T0, Harness

from observability.alerting import inputs
from observability.analytics import sla
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch
from observability.worker import runner as worker

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def _ts(seconds: float) -> float:
    return to_epoch(T0 + timedelta(seconds=seconds))


def _id() -> str:
    return uuid.uuid4().hex


def _open(h: Harness) -> set[tuple]:
    return {(a["rule_name"], tuple(sorted(a["labels"].items()))) for a in h.svc.active_alerts()}


def _tick(h: Harness, w: worker.Worker, t: float) -> None:
    h.peers.clock = t
    outcomes = w.tick(now=h.now(t))
    assert all(v == "ok" for v in outcomes.values()), outcomes


def test_default_rules_fire_and_resolve_from_raw_traffic(alerting: Harness) -> None:
    events: list[list] = []
    for i in range(20):  # lead bot, last 2 minutes: slow, 40% errors, no cache hits
        failed = i % 5 < 2
        events.append(["interaction", _id(), _ts(-120 + i * 6), "lead_bot", 3000.0, not failed, False,
                       "upstream_error" if failed else None])  # fmt: skip
    events.append(
        ["interaction", _id(), _ts(-600), "buyer_bot", 200.0, True, True, None]
    )  # silent for 10 min
    for i in range(20):  # handoffs in the window (ALERT_MIN_SAMPLES 20), 6 failing
        events.append(
            ["handoff", _id(), _ts(-100 + i * 5), "lead_bot", "buyer_bot", i >= 6, 80.0, False, None]
        )
    for i in range(12):  # circular handoffs blocked half an hour ago
        events.append(
            ["handoff", _id(), _ts(-1800 + i), "buyer_bot", "lead_bot", False, 5.0, True, "circular"]
        )
    for i in range(20):  # LLM calls, 6 refused for rate limits
        events.append(["llm", _id(), _ts(-90 + i * 4), "lead_bot", "qualifier", "qualify", "claude-sonnet-4-5",
                       "anthropic", 500, 100, 0, 0, 3000.0, False, None, f"c{i}", i >= 6,
                       None if i >= 6 else "rate_limit_exceeded"])  # fmt: skip
    for i in range(20):  # tracked operations over their SLA target (full_qualification P95 2000 ms)
        events.append(
            ["op", _id(), _ts(-60 + i * 3), "lead_bot", "full_qualification", 3000.0, True, False, None]
        )
    assert write_batch(alerting.store, events, alerting.settings).rejected == 0

    w = worker.Worker(Store.from_url(alerting.store.url), alerting.settings,
                      steps=[s for s in worker.STEPS if s.name.startswith("alerts_")], worker_id="w")  # fmt: skip
    _tick(alerting, w, 0)
    lead, buyer = (("bot", "lead_bot"),), (("bot", "buyer_bot"),)
    assert _open(alerting) == {
        ("high_error_rate", ()), ("high_error_rate", lead), ("sla_violation", lead),
        ("low_cache_hit_rate", ()), ("low_cache_hit_rate", lead), ("bot_unresponsive", buyer),
        ("handoff_failure", (("bot", "handoff"),)), ("circular_handoff_spike", ()), ("rate_limit_breach", ()),
        ("high_response_time", ()),  # threshold of document 004: mean LLM call latency 3000 ms > 2000 ms
    }  # fmt: skip
    sla = next(a for a in alerting.svc.active_alerts() if a["rule_name"] == "sla_violation")
    assert sla["value"] == pytest.approx(1.5)
    assert "full_qualification P95 3000 ms vs target 2000 ms" in sla["message"]
    # the overall alerts are held: the lead bot's alerts of the same rules explain them
    held = {a["rule_name"] for a in alerting.svc.active_alerts() if not a["labels"] and a["suppressed_by"]}
    assert held == {"high_error_rate", "low_cache_hit_rate"}

    _tick(alerting, w, 400)  # nothing new for 400 s: the window is empty, the lead bot is silent
    assert _open(alerting) == {
        ("bot_unresponsive", buyer),
        ("bot_unresponsive", lead),
        ("circular_handoff_spike", ()),
    }
    w.close()
    assert not alerting.peers.errors


def test_sla_violation_reads_only_the_sla_evaluation_not_the_bots_response_time(alerting: Harness) -> None:
    """Slow interactions (the collector's bot-level P95, 5,000 ms against the 2,000 ms of
    alert_rules.json) with every tracked operation of the SLA table fast: the Bot health table
    shows no breach, so `sla_violation` must not fire; its input is the SLA evaluation's ratio."""
    events: list[list] = []
    for i in range(25):
        events.append(["interaction", _id(), _ts(-120 + i * 4), "lead_bot", 5000.0, True, True, None])
        events.append(["op", _id(), _ts(-120 + i * 4), "lead_bot", "process", 300.0, True, False, None])
    assert write_batch(alerting.store, events, alerting.settings).rejected == 0
    now = alerting.now(0)
    got = inputs.gather(alerting.store, alerting.settings, now)
    ratios = {s.label_dict["bot"]: s.value for s in got.samples if s.metric == "sla_p95_ratio"}
    [row] = [r for r in sla.evaluate(alerting.store, int(alerting.settings.alert_metric_window_s), now=now).rows
             if (r.bot, r.operation) == ("lead_bot", "process")]  # fmt: skip
    assert ratios == {"lead_bot": pytest.approx(row.p95_ratio)} and row.p95_ratio < 1
    w = worker.Worker(Store.from_url(alerting.store.url), alerting.settings,
                      steps=[s for s in worker.STEPS if s.name.startswith("alerts_")], worker_id="w")  # fmt: skip
    _tick(alerting, w, 0)
    assert "sla_violation" not in {a["rule_name"] for a in alerting.svc.active_alerts()}
    w.close()


def test_custom_metric_thresholds_raise_warning_then_critical(alerting: Harness) -> None:
    alerting.reconfigure(alert_metric_window_s=60.0)
    meta = {"threshold_warning": 0.05, "threshold_critical": 0.02}

    def record(
        t: float, value: float, metadata: dict | None = meta, name: str = "business_conversion_rate"
    ) -> None:
        event = ["metric", _id(), _ts(t), name, "gauge", value, "acct-1", None, None, metadata]
        assert write_batch(alerting.store, [event], alerting.settings).rejected == 0

    record(-10, 0.04)
    record(-10, 0.001, None, "unwatched_rate")  # no thresholds in its metadata: no alert
    alerting.svc.evaluate(alerting.now(0))
    alerting.tick(0)
    [alert] = alerting.svc.active_alerts()
    assert (alert["rule_name"], alert["labels"], alert["severity"]) == (
        "custom_metric_threshold", {"metric": "business_conversion_rate"}, "warning")  # fmt: skip
    assert "business_conversion_rate is 0.04 (< 0.05, warning)" in alert["message"]
    record(60, 0.01)
    alerting.svc.evaluate(alerting.now(65))
    assert alerting.svc.get_alert(alert["id"])["severity"] == "critical"
    record(120, 0.2)
    alerting.svc.evaluate(alerting.now(125))
    alerting.tick(125)
    assert alerting.svc.get_alert(alert["id"])["state"] == "resolved"
    alerting.peers.expect([("slack", "trigger", "custom_metric_threshold", 1, 0, 0)])


@SQLITE_ONLY
def test_thresholds_apply_to_recorded_metrics(alerting: Harness) -> None:
    alerting.reconfigure(alert_metric_window_s=60.0)
    events = [["metric", _id(), _ts(-5), name, "gauge", value, None, None, None, None]
              for name, value in (("system_load", 91.0), ("ai_confidence", 0.5), ("safety_score", 0.95),
                                  ("response_time", 100.0))]  # fmt: skip
    # the response time is measured from the LLM calls (mean latency 2500 ms), not taken from a
    # metric a bot records under that name (100 ms here): the figure Live monitoring judges too
    events += [["llm", _id(), _ts(-5 + i), "lead_bot", "qualifier", "qualify", "claude-sonnet-4-5", "anthropic",
                500, 100, 0, 0, latency, False, None, "c1", False, None] for i, latency in enumerate((2000.0, 3000.0))]  # fmt: skip
    write_batch(alerting.store, events, alerting.settings)
    alerting.svc.evaluate(alerting.now(0))
    got = {(a["rule_name"], a["severity"]) for a in alerting.svc.active_alerts()}
    assert got == {("high_system_load", "critical"), ("low_ai_confidence", "warning"),
                   ("high_response_time", "warning")}  # fmt: skip


@SQLITE_ONLY
def test_excessive_alert_volume_is_an_alert_too(alerting: Harness) -> None:
    alerting.update("excessive_alert_volume", threshold=3)
    alerting.at(
        0, {"error_rate": 0.5, "cache_hit_rate": 0.1, "blocked_handoffs_1h": 30, "rate_limit_error_rate": 0.5}
    )
    alerting.svc.evaluate(alerting.now(10))
    alerting.tick(10)
    volume = [a for a in alerting.svc.active_alerts() if a["rule_name"] == "excessive_alert_volume"]
    assert len(volume) == 1 and volume[0]["value"] == 4.0
    assert [(r.channel, r.t) for r in alerting.peers.received if r.rule == "excessive_alert_volume"] == [
        ("email", 10), ("slack", 10)]  # fmt: skip
