"""Generic webhook: a JSON body in the spirit of Alertmanager's webhook (documented in the README),
headers from `ALERT_WEBHOOK_HEADERS`, and, with `ALERT_WEBHOOK_SECRET`, Standard Webhooks
signature headers:

    webhook-id:        the notification's id, the same on every retry (receivers dedupe on it)
    webhook-timestamp: Unix seconds at send time
    webhook-signature: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))

A secret starting with `whsec_` is base64 after the prefix (the Standard Webhooks format) and is
decoded to get the key; any other secret is used as UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time

from observability.alerting.channels.base import DeliveryError, Outgoing, post
from observability.settings import Settings

NAME = "webhook"
ZERO_TIME = "0001-01-01T00:00:00Z"


def missing(settings: Settings) -> list[str]:
    need = []
    if not settings.alert_webhook_enabled:
        need.append("ALERT_WEBHOOK_ENABLED=true")
    if not settings.alert_webhook_url:
        need.append("ALERT_WEBHOOK_URL")
    return need


def secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DeliveryError(
                "ALERT_WEBHOOK_SECRET starts with whsec_ but is not base64", retryable=False
            ) from exc
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _iso(value: str | None) -> str:
    return f"{value}Z" if value and not value.endswith("Z") else (value or ZERO_TIME)


def render(msg: Outgoing, settings: Settings) -> dict:
    p = msg.payload
    status = "resolved" if msg.kind == "resolve" else "firing"
    labels = {"alertname": msg.rule, "severity": msg.severity, **(p.get("labels") or {})}
    annotations = {"summary": p.get("message") or ""}
    if p.get("description"):
        annotations["description"] = p["description"]
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(p.get("fired_at")),
        "endsAt": _iso(p.get("resolved_at")) if status == "resolved" else ZERO_TIME,
        "generatorURL": settings.alert_console_url or "",
        "fingerprint": p.get("fingerprint") or "",
        "alertId": p.get("alert_id"),
        "value": p.get("value"),
        "threshold": p.get("threshold"),
        "acknowledgedBy": p.get("acknowledged_by"),
        "resolvedBy": p.get("resolved_by"),
    }
    return {
        "version": "1",
        "receiver": NAME,
        "status": status,
        "notificationId": msg.key,
        "kind": msg.kind,
        "escalationLevel": msg.level,
        "groupKey": p.get("dedup_key") or msg.key,
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": msg.rule},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": settings.alert_console_url or "",
        "test": msg.kind == "test",
        "alerts": [alert],
    }


def send(msg: Outgoing, settings: Settings) -> str:
    if missing(settings):
        raise DeliveryError(f"webhook is not configured: set {', '.join(missing(settings))}", retryable=False)
    body = json.dumps(render(msg, settings), separators=(",", ":"), sort_keys=True).encode()
    headers = {str(k): str(v) for k, v in (settings.alert_webhook_headers or {}).items()}
    headers["Content-Type"] = "application/json"
    if settings.alert_webhook_secret:
        ts = int(time.time())
        headers["webhook-id"] = msg.key
        headers["webhook-timestamp"] = str(ts)
        headers["webhook-signature"] = sign(settings.alert_webhook_secret, msg.key, ts, body)
    resp = post(settings.alert_webhook_url, settings, data=body, headers=headers, what="webhook")
    return f"HTTP {resp.status_code}"
