"""Alert lifecycle in the manner of Alertmanager's acceptance tests: metric values scripted at given
times (seconds after T0), notifications expected within time windows, and the total count checked,
so an extra notification fails a test as surely as a missing one. Real SMTP and HTTP peers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from support.alerting import T0, Harness

from observability.alerting import AlertNotFound, InvalidTransition
from observability.auth import PermissionDenied
from observability.settings import Settings
from observability.store import schema

# rule -> (stats that break it, stats that clear it, channels of level 1, channels told it resolved)
DEFAULT_RULES = {
    "sla_violation": ({"lead_bot.response_time_p95": 3000.0}, {"lead_bot.response_time_p95": 900.0},
                      ("email", "slack", "webhook"), ("webhook",)),
    "high_error_rate": ({"error_rate": 0.2}, {"error_rate": 0.01}, ("email", "slack", "webhook"), ("webhook",)),
    "low_cache_hit_rate": ({"cache_hit_rate": 0.3}, {"cache_hit_rate": 0.8}, ("slack",), ()),
    "handoff_failure": ({"handoff.failure_rate": 0.2}, {"handoff.failure_rate": 0.0}, ("email", "slack"), ()),
    "bot_unresponsive": ({"seconds_since_last_response": {"buyer_bot": 420.0}},
                         {"seconds_since_last_response": {"buyer_bot": 3.0}}, ("email", "slack", "webhook"),
                         ("webhook",)),
    "circular_handoff_spike": ({"blocked_handoffs_1h": 12}, {"blocked_handoffs_1h": 2}, ("slack",), ()),
    "rate_limit_breach": ({"rate_limit_error_rate": 0.25}, {"rate_limit_error_rate": 0.0}, ("slack",), ()),
}  # fmt: skip


def test_each_default_rule_fires_notifies_and_resolves(alerting: Harness) -> None:
    bad = {k: v for spec in DEFAULT_RULES.values() for k, v in spec[0].items()}
    good = {k: v for spec in DEFAULT_RULES.values() for k, v in spec[1].items()}
    fired = alerting.at(0, bad)
    assert sorted(a["rule_name"] for a in fired) == sorted(DEFAULT_RULES)
    alerting.at(15, bad)  # still firing: nothing new
    alerting.at(30, good)  # keep_firing_for is 0 in this harness: resolves at once
    alerting.at(45, good)
    expected = []
    for rule, (_, _, channels, told_resolved) in DEFAULT_RULES.items():
        expected += [(c, "trigger", rule, 1, 0, 0) for c in channels]
        expected += [(c, "resolve", rule, 0, 30, 30) for c in told_resolved]
    alerting.peers.expect(expected)
    history = alerting.svc.alert_history()
    assert sorted(a["rule_name"] for a in history) == sorted(DEFAULT_RULES)
    for alert in history:
        assert alert["state"] == "resolved" and alert["resolved_by"] == "system"
        kinds = [e["kind"] for e in alerting.svc.alert_timeline(alert["id"])]
        _, _, channels, told_resolved = DEFAULT_RULES[alert["rule_name"]]
        assert kinds[:2] == ["fired", "notified"] and "resolved" in kinds
        assert kinds.count("delivered") == len(channels) + len(told_resolved)


SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_for_and_keep_firing_for_suppress_flapping(alerting: Harness) -> None:
    alerting.update("low_cache_hit_rate", for_s=30, keep_firing_for_s=60, cooldown_s=0)

    def flapping(t: float) -> dict:  # below 50% every other tick: never 30 s in a row
        return {"cache_hit_rate": 0.3 if int(t // 15) % 2 == 0 else 0.7}

    alerting.run(flapping, until=165)
    assert alerting.svc.alert_history(include_unfired=True) == [], (
        "pending alerts that never fired leave nothing"
    )
    alerting.run(lambda t: {"cache_hit_rate": 0.3}, start=180, until=210)  # 30 s breaking: fires at 210
    alerting.run(flapping, start=225, until=420)  # flapping while firing: never clear for 60 s
    alerting.run(lambda t: {"cache_hit_rate": 0.9}, start=435, until=510)  # clear from 435: resolved at 495
    alerting.peers.expect([("slack", "trigger", "low_cache_hit_rate", 1, 210, 210)])
    [alert] = alerting.svc.alert_history()
    assert alert["fired_at"] == T0 + timedelta(seconds=210)
    assert alert["resolved_at"] == T0 + timedelta(seconds=495)


@SQLITE_ONLY
def test_cooldown_throttles_notifications_never_the_record(alerting: Harness) -> None:
    # cooldown of low_cache_hit_rate is 600 s
    low, ok = {"cache_hit_rate": 0.3}, {"cache_hit_rate": 0.9}
    alerting.at(0, low)  # alert 1, notified
    alerting.at(15, ok)  # resolved
    alerting.at(30, low)  # alert 2: recorded, notification held by the cooldown
    alerting.at(45, ok)  # resolved before the cooldown ended: never notified
    alerting.at(300, low)  # alert 3: held until 600
    for t in range(315, 631, 15):
        alerting.at(t, low)
    alerting.peers.expect([
        ("slack", "trigger", "low_cache_hit_rate", 1, 0, 0),
        ("slack", "trigger", "low_cache_hit_rate", 1, 600, 600),
    ])  # fmt: skip
    history = alerting.svc.alert_history()
    assert len(history) == 3, "every breach is recorded"
    held = alerting.svc.alert_timeline(history[1]["id"])
    assert any(e["kind"] == "notification_held" and "cooldown" in e["detail"]["reason"] for e in held)
    assert history[0]["escalation_level"] == 1 and history[1]["escalation_level"] == 0


@SQLITE_ONLY
def test_silence_holds_matching_notifications_until_it_ends(alerting: Harness) -> None:
    op = alerting.users["operator"]
    silence = alerting.svc.add_silence(op, rule_name="sla_violation", matchers={"bot": "lead_bot"},
                                       ends_at=alerting.now(120), reason="deploying lead bot", now=alerting.now(0))  # fmt: skip
    assert silence["active"]
    slow = {"lead_bot.response_time_p95": 3000.0, "buyer_bot.response_time_p95": 3200.0}
    alerting.run(lambda t: slow, until=180)
    alerting.peers.expect(
        [(c, "trigger", "sla_violation", 1, 0, 0) for c in ("email", "slack", "webhook")]  # buyer at once
        + [(c, "trigger", "sla_violation", 1, 120, 120) for c in ("email", "slack", "webhook")]  # lead after
    )
    lead = next(a for a in alerting.svc.active_alerts() if a["labels"] == {"bot": "lead_bot"})
    assert lead["fired_at"] == T0, "a silenced alert is recorded when it fires, not when it may notify"


@SQLITE_ONLY
def test_expiring_a_silence_releases_held_notifications_at_once(alerting: Harness) -> None:
    op = alerting.users["operator"]
    sid = alerting.svc.add_silence(op, matchers={"alertname": "high_error_rate"}, duration_s=3600,
                                   reason="load test", now=alerting.now(0))["id"]  # fmt: skip
    alerting.run(lambda t: {"error_rate": 0.3}, until=45)
    assert alerting.peers.received == []
    alerting.svc.expire_silence(sid, op, now=alerting.now(50))
    alerting.run(lambda t: {"error_rate": 0.3}, start=60, until=90)
    alerting.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 60, 60) for c in ("email", "slack", "webhook")]
    )
    assert alerting.svc.list_silences(active_only=True, now=alerting.now(60)) == []


def test_bot_unresponsive_inhibits_that_bots_sla_and_error_rate_notifications(alerting: Harness) -> None:
    down = {
        "seconds_since_last_response": {"lead_bot": 400.0, "buyer_bot": 2.0},
        "lead_bot.response_time_p95": 3000.0,  # lead: inhibited
        "buyer_bot.response_time_p95": 2600.0,  # buyer: notified
        "lead_bot.error_rate": 0.4,  # lead: inhibited
        "error_rate": 0.12,  # overall: held, the lead bot's error alert explains it
    }
    alerting.run(lambda t: down, until=30)
    up = {**down, "seconds_since_last_response": {"lead_bot": 1.0, "buyer_bot": 2.0}}
    alerting.run(lambda t: up, start=45, until=75)
    three = ("email", "slack", "webhook")
    alerting.peers.expect(
        [(c, "trigger", "bot_unresponsive", 1, 0, 0) for c in three]
        + [(c, "trigger", "sla_violation", 1, 0, 0) for c in three]  # buyer_bot
        + [("webhook", "resolve", "bot_unresponsive", 0, 45, 45)]
        # once the lead bot answers again, its own alerts go out
        + [(c, "trigger", "sla_violation", 1, 45, 45) for c in three]
        + [(c, "trigger", "high_error_rate", 1, 45, 45) for c in three]
    )
    overall = next(
        a for a in alerting.svc.active_alerts() if a["rule_name"] == "high_error_rate" and not a["labels"]
    )
    assert overall["escalation_level"] == 0 and "high_error_rate for bot lead_bot" in overall["suppressed_by"]


@SQLITE_ONLY
def test_one_open_alert_per_rule_and_labels(alerting: Harness) -> None:
    for t in range(0, 61, 15):
        alerting.at(t, {"seconds_since_last_response": {"lead_bot": 400.0 + t, "seller_bot": 500.0 + t}})
    active = alerting.svc.active_alerts()
    assert sorted((a["rule_name"], a["labels"]["bot"]) for a in active) == [
        ("bot_unresponsive", "lead_bot"), ("bot_unresponsive", "seller_bot")]  # fmt: skip
    assert {a["value"] for a in active} == {460.0, 560.0}, "the open alert follows the metric"
    with alerting.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.alerts)).scalar() == 2


@SQLITE_ONLY
def test_two_level_rule_raises_severity_and_starts_escalation(alerting: Harness) -> None:
    # high_system_load: warning above 70, critical above 85 (data/alert_thresholds.json)
    alerting.at(0, {"system_load": 75.0})
    [alert] = alerting.svc.active_alerts()
    assert alert["severity"] == "warning" and alert["next_escalation_at"] is None
    alerting.at(30, {"system_load": 92.0})
    [alert] = alerting.svc.active_alerts()
    assert alert["severity"] == "critical" and alert["next_escalation_at"] == alerting.now(330)
    alerting.at(330, {"system_load": 92.0})
    alerting.peers.expect(
        [(c, "trigger", "high_system_load", 1, 0, 0) for c in ("email", "slack")]
        + [(c, "trigger", "high_system_load", 2, 330, 330) for c in ("email", "slack", "webhook")]
    )
    kinds = [e["kind"] for e in alerting.svc.alert_timeline(alert["id"])]
    assert "severity_changed" in kinds


@SQLITE_ONLY
def test_an_alert_turning_critical_late_escalates_on_its_own_clock(alerting: Harness) -> None:
    # warning for ten minutes, then critical: level 2 five minutes and level 3 fifteen minutes after
    # it turned critical, not at once because the alert first fired long before
    alerting.at(0, {"system_load": 75.0})
    alerting.at(600, {"system_load": 92.0})
    [alert] = alerting.svc.active_alerts()
    assert alert["next_escalation_at"] == alerting.now(900)
    for t in (900, 905, 1200, 1495, 1500):
        alerting.at(t, {"system_load": 92.0})
    alerting.peers.expect(
        [(c, "trigger", "high_system_load", 1, 0, 0) for c in ("email", "slack")]
        + [(c, "trigger", "high_system_load", 2, 900, 900) for c in ("email", "slack", "webhook")]
        + [(c, "trigger", "high_system_load", 3, 1500, 1500) for c in ("pagerduty", "opsgenie")]
    )


@SQLITE_ONLY
def test_every_change_leaves_timeline_and_activity_rows(alerting: Harness) -> None:
    op, analyst = alerting.users["operator"], alerting.users["analyst"]
    [alert] = alerting.at(0, {"error_rate": 0.3})
    for action in (alerting.svc.acknowledge_alert, alerting.svc.resolve_alert, alerting.svc.escalate_alert):
        with pytest.raises(PermissionDenied):  # checked in the service, not only hidden on the page
            action(alert["id"], analyst, now=alerting.now(5))
    with pytest.raises(PermissionDenied):
        alerting.svc.acknowledge_alert(alert["id"], "mallory", now=alerting.now(5))
    assert alerting.svc.get_alert(alert["id"])["state"] == "firing"
    alerting.svc.acknowledge_alert(alert["id"], op, now=alerting.now(10))
    with pytest.raises(InvalidTransition, match="already acknowledged by operator1"):
        alerting.svc.acknowledge_alert(alert["id"], op, now=alerting.now(12))
    alerting.svc.resolve_alert(alert["id"], op, note="fixed the upstream", now=alerting.now(20))
    kinds = [(e["kind"], e["actor"]) for e in alerting.svc.alert_timeline(alert["id"])]
    assert ("fired", None) in kinds and ("acknowledged", op) in kinds and ("resolved", op) in kinds
    with alerting.store.connect() as conn:
        rows = conn.execute(sa.select(schema.activity_events.c.event_type, schema.activity_events.c.user_id)
                            .where(schema.activity_events.c.category == "alerts")).all()  # fmt: skip
    types = {(t, u) for t, u in rows}
    assert {("alert.fired", None), ("alert.acknowledged", op), ("alert.resolved", op)} <= types


def test_concurrent_evaluations_open_one_alert_and_queue_one_notification_set(alerting: Harness) -> None:
    import threading

    from observability.alerting import AlertingService
    from observability.store import Store

    services = [AlertingService(Store.from_url(alerting.store.url), alerting.settings) for _ in range(4)]
    barrier = threading.Barrier(len(services))

    def evaluate(svc: AlertingService) -> None:
        barrier.wait()
        svc.check_and_send_alerts({"error_rate": 0.5}, now=alerting.now(0))

    alerting.peers.clock = 0  # each call also delivers: four deliverers at once, one set sent
    threads = [threading.Thread(target=evaluate, args=(s,)) for s in services]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    with alerting.store.connect() as conn:
        alerts = conn.execute(sa.select(sa.func.count()).select_from(schema.alerts)).scalar()
        queued = conn.execute(sa.select(sa.func.count()).select_from(schema.notifications)).scalar()
    assert (alerts, queued) == (1, 3)
    alerting.tick(0)
    alerting.peers.expect([(c, "trigger", "high_error_rate", 1, 0, 0) for c in ("email", "slack", "webhook")])


# ---- noise: minimum sample size, no-data, clearing, pending inhibitors -----------------------------

THREE = ("email", "slack", "webhook")
# each rate (and a P95) computed over fewer events than ALERT_MIN_SAMPLES (20): 1 failure among
# 3 interactions is 33%, the P95 of 2 responses their maximum
FEW = {
    "lead_bot.error_rate": 1 / 3, "lead_bot.interactions": 3,
    "cache_hit_rate": 0.2, "interactions": 5,
    "handoff.failure_rate": 0.5, "handoff.count": 4,
    "rate_limit_error_rate": 0.5, "llm_calls": 6,
    "buyer_bot.response_time_p95": 9000.0, "buyer_bot.interactions": 2,
}  # fmt: skip
ENOUGH = {**FEW, "lead_bot.interactions": 20, "interactions": 40, "handoff.count": 20, "llm_calls": 20,
          "buyer_bot.interactions": 25}  # fmt: skip
CLEAR_FEW = {**FEW, "lead_bot.error_rate": 0.0, "cache_hit_rate": 0.9, "handoff.failure_rate": 0.0,
             "rate_limit_error_rate": 0.0, "buyer_bot.response_time_p95": 400.0}  # fmt: skip
RATE_RULES = {
    "high_error_rate",
    "low_cache_hit_rate",
    "handoff_failure",
    "rate_limit_breach",
    "sla_violation",
}


@SQLITE_ONLY
def test_rates_over_too_few_events_are_no_data(alerting: Harness) -> None:
    alerting.run(lambda t: FEW, until=60)
    assert alerting.svc.alert_history(include_unfired=True) == [], "3 interactions, 1 failing: no alert"
    assert alerting.peers.received == []
    alerting.at(75, ENOUGH)  # the same rates over 20 events and more: every rule fires
    assert {a["rule_name"] for a in alerting.svc.active_alerts()} == RATE_RULES
    alerting.run(lambda t: FEW, start=90, until=150)  # traffic dips below the minimum: no data,
    assert {a["rule_name"] for a in alerting.svc.active_alerts()} == RATE_RULES  # nothing resolves
    alerting.at(165, CLEAR_FEW)  # a clear value counts, however few events are behind it
    assert alerting.svc.active_alerts() == []
    alerting.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 75, 75) for c in THREE]
        + [(c, "trigger", "sla_violation", 1, 75, 75) for c in THREE]
        + [(c, "trigger", "handoff_failure", 1, 75, 75) for c in ("email", "slack")]
        + [
            ("slack", "trigger", "low_cache_hit_rate", 1, 75, 75),
            ("slack", "trigger", "rate_limit_breach", 1, 75, 75),
        ]
        + [("webhook", "resolve", r, 0, 165, 165) for r in ("high_error_rate", "sla_violation")]
    )


@SQLITE_ONLY
def test_min_samples_setting_explicit_counts_and_idle_traffic(alerting: Harness) -> None:
    assert Settings.from_env({"ALERT_MIN_SAMPLES": "5"}).alert_min_samples == 5
    assert Settings.from_env({}).alert_min_samples == 20
    few = {"error_rate": {"value": 0.5, "samples": 3}}  # a count given with the value
    alerting.at(0, few)
    assert alerting.svc.active_alerts() == []
    alerting.reconfigure(alert_min_samples=3)
    [alert] = alerting.at(15, few)
    assert alerting.svc.get_alert(alert["id"])["state"] == "firing"
    alerting.at(30, {"error_rate": 0.5, "interactions": 0})  # no traffic at all: nothing fails, clear
    assert alerting.svc.get_alert(alert["id"])["state"] == "resolved"


@SQLITE_ONLY
def test_a_series_from_another_source_needs_a_rule_of_its_own(alerting: Harness) -> None:
    # rate_limit_breach watches LLM calls; the share of bot responses failing for rate limits is
    # the same incident seen from elsewhere and raises it only through a rule that names it
    alerting.at(0, {"interactions.rate_limit_error_rate": 0.5, "interactions": 40})
    assert alerting.svc.active_alerts() == []
    alerting.svc.add_rule({"name": "replies_rate_limited", "metric": "interactions.rate_limit_error_rate",
                           "threshold": 0.2, "channels": ["slack"]}, alerting.users["admin"])  # fmt: skip
    alerting.at(15, {"interactions.rate_limit_error_rate": 0.5, "interactions": 40})
    assert [a["rule_name"] for a in alerting.svc.active_alerts()] == ["replies_rate_limited"]


@SQLITE_ONLY
def test_an_alert_clearing_for_keep_firing_for_pages_nobody(alerting: Harness) -> None:
    alerting.reconfigure(alert_keep_firing_for_s=600.0)

    def error_rate(t: float) -> dict:  # breaking until 255, clear, back at 405 for one tick, clear
        return {"error_rate": 0.3 if t < 255 or 405 <= t < 420 else 0.01}

    alerting.run(error_rate, until=1050)
    alerting.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE]
        # level 2 was due at 300 while the condition was clear: it goes out when the condition returns
        + [(c, "trigger", "high_error_rate", 2, 405, 405) for c in THREE]
        # level 3 would be due at 1005, clear since 420: nobody is paged, and it resolves at 1020
        + [("webhook", "resolve", "high_error_rate", 0, 1020, 1020)]
    )
    [alert] = alerting.svc.alert_history()
    assert alert["resolved_at"] == T0 + timedelta(seconds=1020) and alert["escalation_level"] == 2


@SQLITE_ONLY
def test_a_pending_cause_already_holds_its_symptoms(alerting: Harness) -> None:
    alerting.update("bot_unresponsive", for_s=30)
    down = {"seconds_since_last_response": {"lead_bot": 400.0}, "lead_bot.response_time_p95": 3000.0}
    alerting.run(lambda t: down, until=15)  # the SLA alert fires at 0; bot_unresponsive is pending
    sla = next(a for a in alerting.svc.active_alerts() if a["rule_name"] == "sla_violation")
    # its cause may still clear without firing, and is then dropped: the reason says so
    assert "bot_unresponsive, pending: dropped if it clears without firing" in sla["suppressed_by"]
    alerting.run(lambda t: down, start=30, until=60)  # bot_unresponsive fires at 30
    alerting.peers.expect([(c, "trigger", "bot_unresponsive", 1, 30, 30) for c in THREE])
    sla = next(a for a in alerting.svc.active_alerts() if a["rule_name"] == "sla_violation")
    assert sla["escalation_level"] == 0 and "bot_unresponsive" in sla["suppressed_by"]
    assert "pending" not in sla["suppressed_by"]


@SQLITE_ONLY
def test_the_handoff_step_is_named_as_such_to_people_and_keeps_its_label_for_machines(
    alerting: Harness,
) -> None:
    fired = alerting.at(0, {"handoff.failure_rate": 0.2})
    (alert,) = [a for a in fired if a["rule_name"] == "handoff_failure"]
    assert alert["labels"] == {"bot": "handoff"}, "dedup keys, silences and receivers match on it"
    assert "[handoff step]" in alert["message"] and "bot=handoff" not in alert["message"], alert["message"]
    (slack,) = [r for r in alerting.peers.of("slack", "trigger") if r.rule == "handoff_failure"]
    assert "(handoff step)" in slack.body["text"] and "bot=handoff" not in slack.body["text"], slack.body[
        "text"
    ]
    (mail,) = [r for r in alerting.peers.of("email", "trigger") if r.rule == "handoff_failure"]
    assert "(handoff step)" in str(mail.body["Subject"]), mail.body["Subject"]
    assert re.search(r"Labels: +bot=handoff", mail.body.get_content()), (
        "the labels row shows what silences match"
    )


@SQLITE_ONLY
def test_an_alert_id_is_never_handed_out_again(alerting: Harness) -> None:
    """SQLite gave a new row the largest id plus one, so the id of a dropped pending alert (the
    newest, deleted) went to the next alert: an old link or `POST /alerts/acknowledge/<id>` then
    reached a different alert. Ids only grow now; the dropped one stays unknown."""
    alerting.only_rules("low_cache_hit_rate", "circular_handoff_spike")
    alerting.update("low_cache_hit_rate", for_s=60)
    alerting.at(0, {"cache_hit_rate": 0.3})
    [dropped] = alerting.svc.active_alerts(include_pending=True)
    assert dropped["state"] == "pending"
    alerting.at(15, {"cache_hit_rate": 0.9})  # cleared before `for`: lifecycle.drop_pending deletes it
    assert alerting.svc.active_alerts(include_pending=True) == []
    [other] = alerting.at(30, {"blocked_handoffs_1h": 12})
    assert other["id"] > dropped["id"]
    with pytest.raises(AlertNotFound):
        alerting.svc.get_alert(dropped["id"])
    with pytest.raises(AlertNotFound):
        alerting.svc.acknowledge_alert(dropped["id"], alerting.users["operator"], now=alerting.now(40))
    assert alerting.svc.get_alert(other["id"])["state"] == "firing", "the other alert was not touched"


@SQLITE_ONLY
def test_a_silence_id_is_never_handed_out_again(alerting: Harness) -> None:
    """Ended silences are purged after the retention period while alert timelines, kept forever,
    name them ("silenced by silence #1"): a new silence must not take such an id."""
    from observability.store import retention

    op = alerting.users["operator"]
    old = alerting.svc.add_silence(op, rule_name="sla_violation", duration_s=600, reason="deploy",
                                   now=alerting.now(0))  # fmt: skip
    later = alerting.now(0) + timedelta(days=alerting.settings.monitoring_db_retention_days + 1)
    retention.purge(alerting.store, alerting.settings, later)
    assert alerting.svc.list_silences() == [], "the ended silence was purged"
    new = alerting.svc.add_silence(
        op, rule_name="high_error_rate", duration_s=600, reason="load test", now=later
    )
    assert new["id"] > old["id"]
