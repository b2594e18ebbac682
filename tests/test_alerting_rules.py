"""Rules: the shipped defaults seeded once, CRUD with clear errors that change nothing, permission
checks in the service itself, and the thresholds file of ALERT_THRESHOLDS_CONFIG."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.alerting import T0, Harness

from observability.alerting import AlertingService, RuleNotFound, RuleValidationError, seed_default_rules
from observability.alerting.rules import default_rules
from observability.auth import PermissionDenied
from observability.settings import DATA_DIR, Settings
from observability.store import schema

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

SEED_000 = {  # source document 000, "7 Default Alert Rules"
    "sla_violation": ("critical", 300, ("email", "slack", "webhook")),
    "high_error_rate": ("critical", 300, ("email", "slack", "webhook")),
    "low_cache_hit_rate": ("warning", 600, ("slack",)),
    "handoff_failure": ("critical", 300, ("email", "slack")),
    "bot_unresponsive": ("critical", 600, ("email", "slack", "webhook")),
    "circular_handoff_spike": ("warning", 600, ("slack",)),
    "rate_limit_breach": ("warning", 300, ("slack",)),
}
GOOD_RULE = {
    "name": "lead_bot_slow", "metric": "lead_bot.response_time_p95", "comparison": "gt", "threshold": 4000,
    "severity": "warning", "cooldown_s": 120, "channels": ["slack", "email"], "description": "Lead bot slow",
}  # fmt: skip


def _rules(svc: AlertingService) -> dict:
    return {r.name: r.to_dict() for r in svc.list_rules()}


def test_default_rules_are_seeded_once(alerting: Harness) -> None:
    rules = {r.name: r for r in alerting.svc.list_rules()}
    for name, (severity, cooldown, channels) in SEED_000.items():
        r = rules[name]
        assert (r.severity, r.cooldown_s, r.channels, r.enabled) == (severity, cooldown, channels, True), name
        assert r.description and r.builtin
    # thresholds of source document 004 and the built-in system rules
    assert (rules["high_system_load"].threshold, rules["high_system_load"].critical_threshold) == (70.0, 85.0)
    assert (rules["low_ai_confidence"].comparison, rules["low_ai_confidence"].threshold) == ("lt", 0.6)
    assert rules["low_safety_score"].critical_threshold == 0.6
    assert rules["high_response_time"].critical_threshold == 5000.0
    assert {"custom_metric_threshold", "excessive_alert_volume", "notification_channel_failing"} <= set(rules)
    # a deleted default stays deleted: seeding is once, not on every start
    alerting.svc.remove_rule("circular_handoff_spike", alerting.users["admin"])
    assert seed_default_rules(alerting.store, alerting.settings) == []
    assert AlertingService(alerting.store, alerting.settings).ensure_seeded() == []
    assert "circular_handoff_spike" not in _rules(alerting.svc)


@SQLITE_ONLY
def test_bootstrap_registers_the_seeding_step(alerting: Harness) -> None:
    from observability.demo import bootstrap

    step = next(s for s in bootstrap.STEPS if s.name == "alert_rules")
    ctx = bootstrap.BootstrapContext(alerting.store, alerting.settings, echo=lambda line: None)
    assert step.run(ctx) == "alert rules already seeded"


def test_rule_crud_with_permissions(alerting: Harness) -> None:
    svc, u = alerting.svc, alerting.users
    with pytest.raises(PermissionDenied):
        svc.add_rule(GOOD_RULE, u["analyst"])
    with pytest.raises(PermissionDenied):
        svc.add_rule(GOOD_RULE, "nobody")
    added = svc.add_rule(GOOD_RULE, u["operator"])
    assert added.channels == ("slack", "email") and added.updated_by == u["operator"]
    with pytest.raises(RuleValidationError, match="already exists"):
        svc.add_rule(GOOD_RULE, u["operator"])
    edited = svc.update_rule("lead_bot_slow", {"threshold": "4500", "for_s": 60}, u["operator"])
    assert (edited.threshold, edited.for_s) == (4500.0, 60.0)
    with pytest.raises(PermissionDenied):
        svc.disable_rule("lead_bot_slow", u["analyst"])
    assert svc.disable_rule("lead_bot_slow", u["operator"]).enabled is False
    assert svc.enable_rule("lead_bot_slow", u["operator"]).enabled is True
    with pytest.raises(PermissionDenied):
        svc.remove_rule("lead_bot_slow", u["operator"])  # only admins delete rules
    with pytest.raises(PermissionDenied):
        svc.remove_rule("lead_bot_slow", u["manager"])
    svc.remove_rule("lead_bot_slow", u["admin"])
    with pytest.raises(RuleNotFound):
        svc.get_rule("lead_bot_slow")
    with alerting.store.connect() as conn:
        types = [r[0] for r in conn.execute(sa.select(schema.activity_events.c.event_type)
                 .where(schema.activity_events.c.event_type.like("alert_rule.%")).order_by(schema.activity_events.c.ts))]  # fmt: skip
    assert {"alert_rule.created", "alert_rule.updated", "alert_rule.disabled", "alert_rule.enabled",
            "alert_rule.deleted"} <= set(types)  # fmt: skip


@pytest.mark.parametrize(
    "bad, field, message",
    [
        ({"metric": "lead_bot.response_tiem_p95"}, "metric", "unknown metric"),
        ({"metric": "does_not_exist"}, "metric", "unknown metric"),
        ({"threshold": "abc"}, "threshold", "Threshold must be a number"),
        ({"threshold": float("nan")}, "threshold", "finite"),
        ({"threshold": None}, "threshold", "required"),
        ({"metric": "error_rate", "threshold": 5}, "threshold", "5% is 0.05"),
        ({"threshold": -1}, "threshold", "must not be negative"),
        ({"channels": ["slack", "sms"]}, "channels", "unknown channel 'sms'"),
        ({"channels": []}, "channels", "at least one channel"),
        ({"comparison": "bigger"}, "comparison", "Comparison must be one of"),
        ({"severity": "urgent"}, "severity", "Severity must be one of"),
        ({"name": "has spaces!"}, "name", "letters, digits"),
        ({"cooldown_s": -5}, "cooldown_s", "Cooldown must be between 0 and 86400 s (24 h), got -5 s"),
        ({"cooldown_s": 86401}, "cooldown_s", "between 0 and 86400 s (24 h)"),
        (
            {"for_s": 10**11},
            "for_s",
            "For must be between 0 and 86400 s (24 h), got 100,000,000,000 s",
        ),
        ({"for_s": 999999999}, "for_s", "got 999,999,999 s"),  # as typed, not "1e+09"
        ({"for_s": -1}, "for_s", "between 0 and 86400 s"),
        (
            {"keep_firing_for_s": 90000},
            "keep_firing_for_s",
            "Keep firing must be between 0 and 86400 s (24 h)",
        ),
        ({"keep_firing_for_s": "soon"}, "keep_firing_for_s", "Keep firing must be a number, got 'soon'"),
        ({"critical_threshold": 1000}, "critical_threshold", "Critical at 1000 must be beyond the Threshold"),
    ],
)
@SQLITE_ONLY
def test_bad_rule_input_gets_a_clear_error_and_changes_nothing(alerting: Harness, bad: dict, field: str,
                                                                message: str) -> None:  # fmt: skip
    before = _rules(alerting.svc)
    with pytest.raises(RuleValidationError) as err:
        alerting.svc.add_rule({**GOOD_RULE, **bad}, alerting.users["operator"])
    assert field in err.value.errors and message in err.value.errors[field], err.value.errors
    with pytest.raises(RuleValidationError) as err:
        alerting.svc.update_rule("low_cache_hit_rate", {k: v for k, v in bad.items() if k != "name"} or
                                 {"name": "renamed"}, alerting.users["operator"])  # fmt: skip
    assert err.value.errors
    assert _rules(alerting.svc) == before


@SQLITE_ONLY
def test_rules_may_watch_recorded_custom_metrics(alerting: Harness) -> None:
    from observability.store.ingest import write_batch
    from observability.timeutil import to_epoch

    with pytest.raises(RuleValidationError, match="unknown metric"):
        alerting.svc.add_rule(
            {**GOOD_RULE, "metric": "queue_depth", "threshold": 100}, alerting.users["operator"]
        )
    write_batch(alerting.store, [["metric", "m1", to_epoch(T0), "queue_depth", "gauge", 12.0, None, None, None, None]],
                alerting.settings)  # fmt: skip
    rule = alerting.svc.add_rule(
        {**GOOD_RULE, "metric": "queue_depth", "threshold": 100}, alerting.users["operator"]
    )
    assert rule.metric == "queue_depth"


@SQLITE_ONLY
def test_disabling_or_deleting_a_rule_resolves_its_open_alerts(alerting: Harness) -> None:
    svc, u = alerting.svc, alerting.users
    alerting.at(0, {"cache_hit_rate": 0.1, "blocked_handoffs_1h": 40})
    svc.disable_rule("low_cache_hit_rate", u["operator"], now=alerting.now(10))
    svc.remove_rule("circular_handoff_spike", u["admin"], now=alerting.now(20))
    assert svc.active_alerts() == []
    states = {a["rule_name"]: (a["state"], a["resolved_by"]) for a in svc.alert_history()}
    assert states == {"low_cache_hit_rate": ("resolved", u["operator"]),
                      "circular_handoff_spike": ("resolved", u["admin"])}  # fmt: skip
    alerting.at(30, {"cache_hit_rate": 0.1})
    assert svc.active_alerts() == [], "a disabled rule does not fire"


@SQLITE_ONLY
def test_thresholds_come_from_the_configured_file(alerting: Harness, tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    raw = json.loads((DATA_DIR / "alert_thresholds.json").read_text())
    assert raw == {"system_load": {"warning": 70.0, "critical": 85.0}, "response_time": {"warning": 2000.0,
                   "critical": 5000.0}, "ai_confidence": {"warning": 0.6, "critical": 0.4},
                   "safety_score": {"warning": 0.8, "critical": 0.6}}  # fmt: skip
    raw["system_load"] = {"warning": 50.0, "critical": 60.0}
    path.write_text(json.dumps(raw))
    alerting.reconfigure(alert_thresholds_config=path)
    alerting.svc.evaluate(alerting.now(0))  # the evaluation keeps managed rules in step with the file
    rule = alerting.svc.get_rule("high_system_load")
    assert (rule.threshold, rule.critical_threshold) == (50.0, 60.0)
    alerting.at(10, {"system_load": 55.0})
    [alert] = alerting.svc.active_alerts()
    assert (alert["rule_name"], alert["severity"]) == ("high_system_load", "warning")
    with pytest.raises(RuleValidationError, match="ALERT_THRESHOLDS_CONFIG"):
        alerting.svc.update_rule("high_system_load", {"threshold": 10}, alerting.users["operator"])
    edited = alerting.svc.update_rule(
        "high_system_load", {"channels": ["webhook"]}, alerting.users["operator"]
    )
    assert edited.channels == ("webhook",) and edited.threshold == 50.0
    with pytest.raises(RuleValidationError, match="built-in system rule"):
        alerting.svc.remove_rule("high_system_load", alerting.users["admin"])


def test_shipped_rules_on_rates_and_percentiles_wait_alert_default_for_s() -> None:
    # a few chance failures among a few dozen events break a 5% threshold for a minute or two: the
    # shipped rules on windowed rates and percentiles wait ALERT_DEFAULT_FOR_S (pending) first
    settings = Settings.from_env({})
    assert (settings.alert_default_for_s, settings.alert_keep_firing_for_s, settings.alert_min_samples) == (
        120.0, 300.0, 20)  # fmt: skip
    assert Settings.from_env({"ALERT_DEFAULT_FOR_S": "0"}).alert_default_for_s == 0.0
    for_s = {r.name: r.for_s for r in default_rules(settings) if r.name in SEED_000}
    assert for_s == {
        "sla_violation": 120.0, "high_error_rate": 120.0, "low_cache_hit_rate": 120.0, "handoff_failure": 120.0,
        "rate_limit_breach": 120.0,
        "bot_unresponsive": 0.0, "circular_handoff_spike": 0.0,  # their metrics are durations and counts already
    }  # fmt: skip
    assert {r.name: r.for_s for r in default_rules(settings.replace(alert_default_for_s=0.0))}[
        "high_error_rate"
    ] == 0


@SQLITE_ONLY
def test_high_system_load_waits_its_for_before_it_fires(
    store: Any, store_url: str, make_settings: Any
) -> None:
    # a worker that has just started on a busy host records one high CPU sample: that alone must
    # not fire (and page) at once; the threshold rules wait ALERT_DEFAULT_FOR_S like the others
    settings = make_settings(store_url)
    assert settings.alert_default_for_s == 120.0
    svc = AlertingService(store, settings)
    for_s = {r.name: r.for_s for r in svc.list_rules() if r.managed_by == "thresholds_config"}
    assert for_s == {"high_system_load": 120.0, "high_response_time": 120.0, "low_ai_confidence": 120.0,
                     "low_safety_score": 120.0}  # fmt: skip
    for t in (0, 15, 60, 105):
        assert svc.check_and_send_alerts({"system_load": 97.0}, now=T0 + timedelta(seconds=t)) == []
    [pending] = svc.active_alerts(include_pending=True)
    assert (pending["rule_name"], pending["state"]) == ("high_system_load", "pending")
    assert svc.notifications() == [], "nothing is sent while the rule's `for` runs"
    [fired] = svc.check_and_send_alerts({"system_load": 97.0}, now=T0 + timedelta(seconds=120))
    assert (fired["rule_name"], fired["severity"], fired["state"]) == (
        "high_system_load",
        "critical",
        "firing",
    )
