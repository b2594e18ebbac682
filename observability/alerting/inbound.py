"""Two-way incident sync: PagerDuty (v3 webhooks) and Opsgenie (outgoing webhooks) acknowledge
and resolve our alerts when someone acts on the incident there.

Our outgoing PagerDuty events and Opsgenie alerts carry the alert's key `obs-alert-<id>-<fingerprint>`
(PagerDuty's `incident_key`, Opsgenie's `alias`), so an inbound delivery names our alert. Trust
comes from the signature, not from a user: PagerDuty signs the raw body with the subscription's
secret (`X-PagerDuty-Signature: v1=<hex HMAC-SHA256>`, several during a secret rotation);
Opsgenie sends a shared secret in a custom header. The change goes through the same lifecycle
functions as the console's buttons, with the actor (`pagerduty:<who>`, `opsgenie:<who>`) on the
alert's timeline. Every applied delivery's id is stored in the same transaction, so a replayed
delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.alerting import escalation, lifecycle, rules
from observability.alerting.model import InvalidTransition
from observability.settings import Settings
from observability.store import Store, schema
from observability.timeutil import resolve_now

log = logging.getLogger(__name__)

ALERT_KEY = re.compile(r"^obs-alert-(\d+)-")
PAGERDUTY_ACTIONS = {"incident.acknowledged": "acknowledge", "incident.resolved": "resolve"}
OPSGENIE_ACTIONS = {"acknowledge": "acknowledge", "close": "resolve"}
MAX_BODY = 1_000_000


class InboundRejected(Exception):
    """The delivery is refused (bad signature, not configured, malformed): `status` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InboundResult:
    status: str  # applied | duplicate | ignored | no_change
    action: str | None = None
    alert_id: int | None = None
    detail: str | None = None


def pagerduty_signature(secret: str, body: bytes) -> str:
    """The header value PagerDuty sends for `body` (tests and local senders use it)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_pagerduty(settings: Settings, body: bytes, header: str | None) -> None:
    secret = settings.pagerduty_webhook_secret
    if not secret:
        raise InboundRejected(401, "PagerDuty webhooks are not configured here (PAGERDUTY_WEBHOOK_SECRET)")
    if not header:
        raise InboundRejected(401, "missing X-PagerDuty-Signature")
    expected = pagerduty_signature(secret, body)
    given = [s.strip() for s in header.split(",") if s.strip().startswith("v1=")]
    if not any(hmac.compare_digest(expected, s) for s in given):
        raise InboundRejected(
            401, "X-PagerDuty-Signature does not match the body (wrong secret or altered body)"
        )


def _check_opsgenie(settings: Settings, header: str | None) -> None:
    secret = settings.opsgenie_webhook_secret
    if not secret:
        raise InboundRejected(401, "Opsgenie webhooks are not configured here (OPSGENIE_WEBHOOK_SECRET)")
    if not header or not hmac.compare_digest(secret.encode(), header.encode()):
        raise InboundRejected(401, "missing or wrong X-Opsgenie-Secret")


def _json(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise InboundRejected(413, "body too large")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InboundRejected(400, "body is not JSON") from None
    if not isinstance(doc, dict):
        raise InboundRejected(400, "body is not a JSON object")
    return doc


def _text(value: Any, limit: int = 80) -> str | None:
    return value.strip()[:limit] if isinstance(value, str) and value.strip() else None


def handle_pagerduty(
    store: Store, settings: Settings, body: bytes, signature: str | None, *, now: datetime | None = None
) -> InboundResult:
    """Apply one PagerDuty v3 webhook delivery (`incident.acknowledged` / `incident.resolved`)."""
    _check_pagerduty(settings, body, signature)
    event = _json(body).get("event")
    if not isinstance(event, dict):
        raise InboundRejected(400, "no 'event' object in the body")
    action = PAGERDUTY_ACTIONS.get(str(event.get("event_type")))
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
    who = _text(agent.get("summary")) or _text(agent.get("id")) or "unknown"
    delivery = _text(event.get("id"), 150) or hashlib.sha256(body).hexdigest()
    key = data.get("incident_key") if isinstance(data.get("incident_key"), str) else ""
    return _apply(store, settings, "pagerduty", delivery, action, key, f"pagerduty:{who}", now)


def handle_opsgenie(
    store: Store, settings: Settings, body: bytes, secret: str | None, *, now: datetime | None = None
) -> InboundResult:
    """Apply one Opsgenie webhook delivery (`Acknowledge` / `Close` of an alert we created)."""
    _check_opsgenie(settings, secret)
    doc = _json(body)
    alert = doc.get("alert") if isinstance(doc.get("alert"), dict) else {}
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    action = OPSGENIE_ACTIONS.get(str(doc.get("action", "")).lower())
    who = _text(alert.get("username")) or _text(source.get("name")) or "unknown"
    key = alert.get("alias") if isinstance(alert.get("alias"), str) else ""
    return _apply(
        store, settings, "opsgenie", hashlib.sha256(body).hexdigest(), action, key, f"opsgenie:{who}", now
    )


def _apply(
    store: Store, settings: Settings, source: str, delivery: str, action: str | None, key: str, actor: str,
    now: datetime | None,
) -> InboundResult:  # fmt: skip
    if action is None:
        return InboundResult("ignored", detail="not an acknowledge or resolve event")
    match = ALERT_KEY.match(key)
    if not match:
        return InboundResult("ignored", action, detail="the incident is not one of this console's alerts")
    alert_id = int(match.group(1))
    now = resolve_now(now)
    d = schema.inbound_deliveries
    delivery_id = f"{source}:{delivery}"[:200]
    try:
        return _apply_once(store, settings, source, d, delivery_id, action, alert_id, actor, now)
    except sa.exc.IntegrityError:  # the same delivery, applied concurrently by another request
        return InboundResult("duplicate", action, alert_id, "this delivery was already applied")


def _apply_once(
    store: Store, settings: Settings, source: str, d: sa.Table, delivery_id: str, action: str, alert_id: int,
    actor: str, now: datetime,
) -> InboundResult:  # fmt: skip
    with store.begin() as conn:
        if conn.execute(sa.select(d.c.id).where(d.c.id == delivery_id)).first() is not None:
            return InboundResult("duplicate", action, alert_id, "this delivery was already applied")
        alert = escalation.lock_alert(conn, alert_id)
        if alert is None:
            outcome = InboundResult("ignored", action, alert_id, f"no alert #{alert_id}")
        else:
            rule = rules.get_rule(conn, alert["rule_name"])
            try:
                if action == "acknowledge":
                    lifecycle.acknowledge(conn, store, settings, alert, rule, now, actor=actor,
                                          note=f"acknowledged in {source}")  # fmt: skip
                else:
                    lifecycle.resolve(conn, store, settings, alert, rule, now, actor=actor,
                                      reason=f"resolved in {source} by {actor}")  # fmt: skip
                outcome = InboundResult("applied", action, alert_id)
            except InvalidTransition as exc:
                outcome = InboundResult("no_change", action, alert_id, str(exc))
        conn.execute(sa.insert(d).values(id=delivery_id, received_at=now, outcome=outcome.status))
    log.info("%s webhook: %s %s alert #%s (%s)", source, outcome.status, action, alert_id, actor)
    return outcome
