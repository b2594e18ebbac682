"""Opsgenie Alerts API: create an alert with `alias` (the alert's dedup key) at escalation level 3,
acknowledge and close it by alias (`identifierType=alias`) when an operator acknowledges or
resolves in the console. Header `Authorization: GenieKey <ALERT_WEBHOOK_OPSGENIE_API_KEY>`;
`ALERT_WEBHOOK_OPSGENIE_URL` defaults to https://api.opsgenie.com/v2/alerts (EU accounts use
https://api.eu.opsgenie.com/v2/alerts). 202 is success; 429 and 5xx are retried."""

from __future__ import annotations

from urllib.parse import quote

from observability.alerting.channels.base import DeliveryError, Outgoing, post, title
from observability.settings import Settings

NAME = "opsgenie"
DEFAULT_URL = "https://api.opsgenie.com/v2/alerts"
_PRIORITY = {"critical": "P1", "warning": "P3", "info": "P5"}


def missing(settings: Settings) -> list[str]:
    return [] if settings.alert_webhook_opsgenie_api_key else ["ALERT_WEBHOOK_OPSGENIE_API_KEY"]


def base_url(settings: Settings) -> str:
    return (settings.alert_webhook_opsgenie_url or DEFAULT_URL).rstrip("/")


def alias(msg: Outgoing) -> str:
    p = msg.payload
    if msg.kind == "test":
        return f"obs-test-{msg.key}"
    return f"obs-alert-{p.get('alert_id')}-{p.get('fingerprint') or ''}"[:512]


def create_body(msg: Outgoing, settings: Settings) -> dict:
    p = msg.payload
    labels = p.get("labels") or {}
    body = {
        "message": title(msg)[:130],
        "alias": alias(msg),
        "description": (p.get("message") or "") + (f"\n\n{p['description']}" if p.get("description") else ""),
        "priority": "P5" if msg.kind == "test" else _PRIORITY.get(msg.severity, "P3"),
        "source": "bot-operations-console",
        "entity": labels.get("bot") or msg.rule,
        "tags": [msg.rule, msg.severity] + [f"{k}:{v}" for k, v in sorted(labels.items())],
        "details": {k: str(v) for k, v in (("alert_id", p.get("alert_id")), ("value", p.get("value")),
                    ("threshold", p.get("threshold")), ("level", msg.level)) if v is not None},
    }  # fmt: skip
    if settings.alert_console_url:
        body["details"]["console"] = settings.alert_console_url
    return body


def action_url(msg: Outgoing, settings: Settings, action: str) -> str:
    return f"{base_url(settings)}/{quote(alias(msg), safe='')}/{action}?identifierType=alias"


def send(msg: Outgoing, settings: Settings) -> str:
    if missing(settings):
        raise DeliveryError("Opsgenie is not configured: set ALERT_WEBHOOK_OPSGENIE_API_KEY", retryable=False)
    headers = {"Authorization": f"GenieKey {settings.alert_webhook_opsgenie_api_key}"}
    p = msg.payload
    if msg.kind in ("trigger", "test"):
        resp = post(base_url(settings), settings, json_body=create_body(msg, settings), headers=headers,
                    what="Opsgenie create alert")  # fmt: skip
        if msg.kind == "test":
            post(action_url(msg, settings, "close"), settings, headers=headers, what="Opsgenie close alert",
                 json_body={"source": "bot-operations-console", "note": "test notification"})  # fmt: skip
        return f"HTTP {resp.status_code}"
    action = "acknowledge" if msg.kind == "ack" else "close"
    user = p.get("acknowledged_by") if msg.kind == "ack" else p.get("resolved_by")
    body = {"source": "bot-operations-console", "note": f"{action}d in the bot operations console"}
    if user:
        body["user"] = user
    resp = post(action_url(msg, settings, action), settings, json_body=body, headers=headers,
                what=f"Opsgenie {action} alert")  # fmt: skip
    return f"HTTP {resp.status_code}"
