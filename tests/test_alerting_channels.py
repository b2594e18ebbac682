"""Channels against real local peers: SMTP with STARTTLS and implicit TLS, Slack (429 and
Retry-After), the signed webhook, PagerDuty Events API v2 (400 not retried, 429 / 5xx retried) and
Opsgenie; the outbox's retries deliver exactly once; a channel that keeps failing raises its own
alert; "send test notification" per channel."""

from __future__ import annotations

import base64
import json
import logging

import pytest
import sqlalchemy as sa
from support.alerting import WEBHOOK_SECRET, Harness, verify_signature
from support.net import free_port

from observability.alerting.channels import webhook
from observability.auth import PermissionDenied
from observability.store import schema

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_email_over_starttls_and_over_implicit_tls(alerting: Harness) -> None:
    op = alerting.users["operator"]
    assert alerting.svc.send_test_notification("email", op)["ok"]
    port = alerting.peers.start_smtp("tls")
    alerting.reconfigure(alert_email_smtp_port=port, alert_email_security="tls")
    assert alerting.svc.send_test_notification("email", op)["ok"]
    mails = alerting.peers.of("email", "test")
    assert len(mails) == 2 and "Test notification requested by operator1" in mails[1].body.get_content()
    alerting.reconfigure(alert_email_ca_file=None)  # the relay's certificate is not trusted any more
    result = alerting.svc.send_test_notification("email", op)
    assert not result["ok"] and "certificate" in result["detail"]
    assert len(alerting.peers.of("email")) == 2
    assert not alerting.peers.errors, alerting.peers.errors


@SQLITE_ONLY
def test_send_test_notification_through_each_configured_channel(alerting: Harness) -> None:
    op = alerting.users["operator"]
    assert alerting.svc.configured_channels() == ["email", "slack", "webhook", "pagerduty", "opsgenie"]
    with pytest.raises(PermissionDenied):
        alerting.svc.send_test_notification("slack", alerting.users["analyst"])
    for channel in alerting.svc.configured_channels():
        result = alerting.svc.send_test_notification(channel, op)
        assert result["ok"], result
    kinds = sorted((r.channel, r.kind) for r in alerting.peers.received)
    assert kinds == sorted([("email", "test"), ("slack", "test"), ("webhook", "test"), ("pagerduty", "test"),
                            ("pagerduty", "test_resolve"), ("opsgenie", "test"), ("opsgenie", "test_close")])  # fmt: skip
    assert not alerting.peers.errors
    with alerting.store.connect() as conn:
        rows = conn.execute(sa.select(schema.notifications.c.channel, schema.notifications.c.status)
                            .where(schema.notifications.c.kind == "test")).all()  # fmt: skip
    assert sorted(rows) == sorted((c, "sent") for c in alerting.svc.configured_channels())
    alerting.reconfigure(alert_slack_enabled=False)
    with pytest.raises(ValueError, match="ALERT_SLACK_ENABLED"):
        alerting.svc.send_test_notification("slack", op)
    with pytest.raises(ValueError, match="unknown channel"):
        alerting.svc.send_test_notification("pager", op)


@SQLITE_ONLY
def test_slack_429_waits_for_retry_after(alerting: Harness) -> None:
    alerting.peers.answer("slack", (429, {"Retry-After": "30"}, "rate_limited"))
    alerting.at(0, {"cache_hit_rate": 0.2})
    for t in (10, 15, 20, 29):
        alerting.tick(t)
    assert alerting.peers.received == []
    alerting.tick(30)
    alerting.tick(60)
    alerting.peers.expect([("slack", "trigger", "low_cache_hit_rate", 1, 30, 30)])
    assert alerting.peers.attempts["slack"] == 2
    body = alerting.peers.of("slack")[0].body
    assert body["channel"] == "#ops-alerts" and "low_cache_hit_rate" in body["text"]


def test_channel_answering_500_then_200_delivers_exactly_once(alerting: Harness) -> None:
    alerting.peers.answer("webhook", (500, {}, "upstream down"))
    alerting.at(0, {"error_rate": 0.4})
    for t in (5, 9, 10, 15, 30, 60, 120):
        alerting.tick(t)
    alerting.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 0, 0) for c in ("email", "slack")]
        + [("webhook", "trigger", "high_error_rate", 1, 10, 10)]  # backoff 10 s after the 500
    )
    assert alerting.peers.attempts["webhook"] == 2
    first, second = alerting.peers.webhook_ids
    assert first == second, "a retry carries the same webhook-id, so a receiver can deduplicate"
    [alert] = alerting.svc.active_alerts()
    kinds = [e["kind"] for e in alerting.svc.alert_timeline(alert["id"])]
    assert kinds.count("delivery_failed") == 1 and kinds.count("delivered") == 3


@SQLITE_ONLY
def test_pagerduty_400_is_not_retried_429_and_5xx_are(alerting: Harness) -> None:
    op = alerting.users["operator"]
    alerting.peers.answer("pagerduty", (400, {}, json.dumps({"status": "invalid event"})))
    alerting.peers.answer("opsgenie", (503, {}, "maintenance"))
    [a] = alerting.at(0, {"cache_hit_rate": 0.2})
    alerting.svc.escalate_alert(a["id"], op, now=alerting.now(1))
    alerting.svc.escalate_alert(a["id"], op, now=alerting.now(2))
    for t in (2, 5, 12, 30, 100):
        alerting.tick(t)
    assert alerting.peers.attempts["pagerduty"] == 1, (
        "400: the event is invalid, sending it again cannot help"
    )
    assert alerting.peers.attempts["opsgenie"] == 2
    n = schema.notifications
    with alerting.store.connect() as conn:
        pd = conn.execute(
            sa.select(n.c.status, n.c.attempts, n.c.last_error).where(n.c.channel == "pagerduty")
        ).one()
    assert pd.status == "dead" and pd.attempts == 1 and "HTTP 400" in pd.last_error
    assert "delivery_dead" in [e["kind"] for e in alerting.svc.alert_timeline(a["id"])]

    alerting.peers.answer("pagerduty", (429, {"Retry-After": "20"}, "slow down"))
    [b] = alerting.at(200, {"error_rate": 0.4})
    alerting.svc.escalate_alert(b["id"], op, now=alerting.now(201))
    alerting.svc.escalate_alert(b["id"], op, now=alerting.now(202))
    for t in (202, 212, 221, 222, 240):
        alerting.tick(t)
    pd_b = [r for r in alerting.peers.of("pagerduty") if r.alert_id == b["id"]]
    assert [(r.kind, r.t) for r in pd_b] == [("trigger", 222)]
    assert not alerting.peers.errors


@SQLITE_ONLY
def test_a_channel_that_keeps_failing_raises_its_own_alert(alerting: Harness) -> None:
    alerting.peers.answer("slack", *[(500, {}, "server error")] * 3)
    alerting.at(0, {"cache_hit_rate": 0.2})  # slack only
    for t in (10, 30):  # backoff 10 s, then 20 s
        alerting.tick(t)
    assert alerting.peers.attempts["slack"] == 3
    alerting.peers.clock = 30
    alerting.svc.evaluate(alerting.now(30))  # the worker's evaluation also watches the channels
    alerting.tick(30)
    failing = [a for a in alerting.svc.active_alerts() if a["rule_name"] == "notification_channel_failing"]
    assert [a["labels"] for a in failing] == [{"channel": "slack"}] and failing[0]["severity"] == "critical"
    alerting.tick(70)  # slack answers again: the stuck notification goes out
    alerting.peers.clock = 75
    alerting.svc.evaluate(alerting.now(75))
    alerting.tick(75)
    alerting.peers.expect([
        # never announced through the failing channel itself
        ("email", "trigger", "notification_channel_failing", 1, 30, 30),
        ("webhook", "trigger", "notification_channel_failing", 1, 30, 30),
        ("slack", "trigger", "low_cache_hit_rate", 1, 70, 70),
        ("webhook", "resolve", "notification_channel_failing", 0, 75, 75),
    ])  # fmt: skip


@SQLITE_ONLY
def test_webhook_body_headers_and_signature(alerting: Harness) -> None:
    alerting.at(0, {"lead_bot.response_time_p95": 3100.0})
    [hook] = alerting.peers.of("webhook")
    body, headers = hook.body, hook.headers
    assert body["version"] == "1" and body["status"] == "firing" and body["receiver"] == "webhook"
    assert body["groupKey"] == 'sla_violation{bot="lead_bot"}' and body["escalationLevel"] == 1
    [alert] = body["alerts"]
    assert alert["labels"] == {"alertname": "sla_violation", "severity": "critical", "bot": "lead_bot"}
    assert (
        alert["value"] == pytest.approx(1.55)
        and alert["threshold"] == 1.0
        and alert["endsAt"].startswith("0001")
    )
    assert "P95 3100 ms vs target 2000 ms" in alert["annotations"]["summary"]
    assert headers["x-team"] == "bots" and headers["authorization"] == "Bearer hook-token"
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert verify_signature(WEBHOOK_SECRET, headers, raw)
    assert webhook.secret_key(WEBHOOK_SECRET) == base64.b64decode(WEBHOOK_SECRET[6:])
    # a secret without the whsec_ prefix is used as it is
    alerting.peers.webhook_secret = "plain shared secret"
    alerting.reconfigure(alert_webhook_secret="plain shared secret")
    assert alerting.svc.send_test_notification("webhook", alerting.users["operator"])["ok"]
    alerting.peers.webhook_secret = None
    alerting.reconfigure(alert_webhook_secret=None)
    assert alerting.svc.send_test_notification("webhook", alerting.users["operator"])["ok"]
    assert "webhook-signature" not in alerting.peers.of("webhook")[-1].headers
    assert not alerting.peers.errors


def test_a_channel_whose_deliveries_fail_is_failing_with_its_error_and_the_log_says_what_happens(
    alerting: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A permanent failure is logged as given up, not as "kept in the outbox and retried"; a
    retryable one as retried, not as given up. The card says "failing" with the error."""
    caplog.set_level(logging.WARNING, logger="observability.alerting.delivery")
    alerting.peers.answer("webhook", (400, {}, "bad payload"))
    alerting.at(0, {"error_rate": 0.4})  # email, slack and webhook
    lines = [r.getMessage() for r in caplog.records if "via webhook" in r.getMessage()]
    assert len(lines) == 1 and "given up after 1 attempt(s), not retried (a permanent failure" in lines[0], (
        lines
    )
    assert "HTTP 400" in lines[0]
    status = {c["channel"]: c for c in alerting.svc.channel_status(alerting.now(1))}
    assert (
        status["webhook"]["state"] == "failing" and "HTTP 400 bad payload" in status["webhook"]["last_error"]
    )
    assert status["webhook"]["last_failed_kind"] == "trigger" and status["webhook"]["dead"] == 1
    assert status["email"]["state"] == "configured" and status["email"]["last_error"] is None
    caplog.clear()
    alerting.peers.answer("webhook", (503, {}, "maintenance"))
    alerting.at(60, {"lead_bot.response_time_p95": 3000.0})  # sla_violation: email, slack, webhook
    lines = [r.getMessage() for r in caplog.records if "via webhook" in r.getMessage()]
    assert lines and all("kept in the outbox and retried" in x and "given up" not in x for x in lines), lines
    alerting.tick(120)  # the retry goes through
    status = {c["channel"]: c for c in alerting.svc.channel_status(alerting.now(121))}
    assert status["webhook"]["state"] == "configured" and status["webhook"]["last_error"] is None


@SQLITE_ONLY
def test_failed_test_notifications_do_not_page_on_call(alerting: Harness) -> None:
    """A person testing a channel sees the result; on-call is not paged for it (the third failed
    test raised notification_channel_failing, critical). Real notifications still count."""
    op = alerting.users["operator"]
    alerting.reconfigure(alert_webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    for t in (0, 1, 2):
        result = alerting.svc.send_test_notification("webhook", op, now=alerting.now(t))
        assert not result["ok"] and result["summary"].startswith(
            "Test notification via webhook failed: ConnectionError"
        )
    alerting.svc.evaluate(alerting.now(3))
    assert [a for a in alerting.svc.active_alerts() if a["rule_name"] == "notification_channel_failing"] == []
    [webhook] = [c for c in alerting.svc.channel_status(alerting.now(3)) if c["channel"] == "webhook"]
    assert (webhook["state"], webhook["failed_attempts_since_success"], webhook["dead"]) == ("failing", 3, 3)
    # three real attempts do raise it
    alerting.peers.answer("slack", *[(500, {}, "server error")] * 3)
    alerting.at(10, {"cache_hit_rate": 0.2})  # slack only
    for t in (20, 40):
        alerting.tick(t)
    alerting.svc.evaluate(alerting.now(40))
    failing = [a for a in alerting.svc.active_alerts() if a["rule_name"] == "notification_channel_failing"]
    assert [a["labels"] for a in failing] == [{"channel": "slack"}]


@SQLITE_ONLY
def test_escalation_preview_names_what_will_be_tried(alerting: Harness) -> None:
    alerting.reconfigure(
        alert_slack_enabled=False, alert_email_ca_file=None
    )  # e-mail: certificate not trusted
    [alert] = [
        a for a in alerting.at(0, {"lead_bot.response_time_p95": 3000.0}) if a["severity"] == "critical"
    ]
    preview = alerting.svc.escalation_preview(alert["id"], now=alerting.now(1))
    assert {k: v for k, v in preview.items() if k != "failing"} == {
        "level": 2, "channels": ["email", "slack", "webhook"], "tried": ["email", "webhook"],
        "not_configured": ["slack"],
    }  # fmt: skip
    assert list(preview["failing"]) == ["email"] and "certificate not trusted" in preview["failing"]["email"]
    alerting.reconfigure(alert_email_ca_file=alerting.peers.cert)
    assert alerting.svc.send_test_notification("email", alerting.users["operator"], now=alerting.now(2))["ok"]
    assert alerting.svc.escalation_preview(alert["id"], now=alerting.now(3))["failing"] == {}
