"""PagerDuty Events API v2: `trigger` at escalation level 3, then `acknowledge` and `resolve` when
an operator acknowledges or resolves in the console, all with the alert's `dedup_key` (so a
re-sent trigger is the same incident). 202 is success; 400 (invalid event) is not retried;
429 and 5xx are. `ALERT_WEBHOOK_PAGERDUTY_API_KEY` is the integration's routing key;
`ALERT_WEBHOOK_PAGERDUTY_URL` defaults to https://events.pagerduty.com/v2/enqueue."""

from __future__ import annotations

import socket

from observability.alerting.channels.base import DeliveryError, Outgoing, post, title
from observability.settings import Settings

NAME = "pagerduty"
DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
_ACTION = {"trigger": "trigger", "test": "trigger", "ack": "acknowledge", "resolve": "resolve"}


def missing(settings: Settings) -> list[str]:
    return [] if settings.alert_webhook_pagerduty_api_key else ["ALERT_WEBHOOK_PAGERDUTY_API_KEY"]


def url(settings: Settings) -> str:
    return settings.alert_webhook_pagerduty_url or DEFAULT_URL


def dedup_key(msg: Outgoing) -> str:
    p = msg.payload
    if msg.kind == "test":
        return f"obs-test-{msg.key}"
    return f"obs-alert-{p.get('alert_id')}-{p.get('fingerprint') or ''}"[:255]


def render(msg: Outgoing, settings: Settings, action: str | None = None) -> dict:
    action = action or _ACTION[msg.kind]
    body: dict = {
        "routing_key": settings.alert_webhook_pagerduty_api_key,
        "event_action": action,
        "dedup_key": dedup_key(msg),
    }
    if action != "trigger":
        return body
    p = msg.payload
    body["payload"] = {
        "summary": (title(msg) + (f": {p['message']}" if p.get("message") else ""))[:1024],
        "source": (p.get("labels") or {}).get("bot") or socket.gethostname(),
        "severity": _SEVERITY.get(msg.severity, "warning") if msg.kind != "test" else "info",
        "timestamp": f"{p['fired_at']}Z" if p.get("fired_at") else None,
        "component": (p.get("labels") or {}).get("bot"),
        "group": "bot-operations",
        "class": msg.rule,
        "custom_details": {k: p.get(k) for k in ("alert_id", "rule", "labels", "value", "threshold", "message",
                                                  "description", "level") if p.get(k) is not None},
    }  # fmt: skip
    body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
    body["client"] = "Bot operations console"
    if settings.alert_console_url:
        body["client_url"] = settings.alert_console_url
    return body


def send(msg: Outgoing, settings: Settings) -> str:
    if missing(settings):
        raise DeliveryError(
            "PagerDuty is not configured: set ALERT_WEBHOOK_PAGERDUTY_API_KEY", retryable=False
        )
    resp = post(url(settings), settings, json_body=render(msg, settings), what="PagerDuty Events API")
    receipt = f"HTTP {resp.status_code}"
    if msg.kind == "test":  # do not leave a test incident open
        post(url(settings), settings, json_body=render(msg, settings, "resolve"), what="PagerDuty Events API")
        receipt += " (test incident resolved)"
    return receipt
