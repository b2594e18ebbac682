"""Inbound PagerDuty (v3, signed) and Opsgenie (shared secret) webhooks acknowledge and resolve our
alerts, with the actor on the alert's timeline; a bad signature and a replayed delivery change
nothing. The real app, in process, on both stores.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from observability.alerting import AlertingService
from observability.alerting.inbound import pagerduty_signature
from observability.api import create_app
from observability.settings import Settings
from observability.store import Store, schema

PD_SECRET = "pd-subscription-secret"
OG_SECRET = "opsgenie-shared-secret"


@pytest.fixture
def setup(store: Store, make_settings: Callable[..., Settings]) -> tuple[TestClient, AlertingService, int]:
    settings = make_settings(store.engine.url.render_as_string(hide_password=False),
                             pagerduty_webhook_secret=PD_SECRET, opsgenie_webhook_secret=OG_SECRET,
                             alert_default_for_s=0.0, alert_min_samples=0)  # fmt: skip
    svc = AlertingService(store, settings)
    alert_id = svc.check_and_send_alerts({"error_rate": 0.5})[0]["id"]
    return TestClient(create_app(settings, store)), svc, alert_id


def pd_body(alert_id: int, event_type: str, event_id: str, who: str = "Jane Doe") -> bytes:
    return json.dumps({"event": {
        "id": event_id, "event_type": event_type, "resource_type": "incident", "occurred_at": "2026-12-02T02:00:00Z",
        "agent": {"id": "PUSER1", "summary": who, "type": "user_reference"},
        "data": {"id": "Q1", "type": "incident", "status": event_type.split(".")[1],
                 "incident_key": f"obs-alert-{alert_id}-abc123", "title": "high_error_rate"},
    }}).encode()  # fmt: skip


def timeline(store: Store, alert_id: int) -> list[tuple[str, str | None]]:
    e = schema.alert_events
    with store.connect() as conn:
        rows = conn.execute(sa.select(e).where(e.c.alert_id == alert_id).order_by(e.c.id)).all()
    return [(r._mapping.get("kind"), r._mapping.get("actor")) for r in rows]


def post_pd(client: TestClient, body: bytes, signature: str | None) -> object:
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-PagerDuty-Signature"] = signature
    return client.post("/webhooks/pagerduty", content=body, headers=headers)


def test_pagerduty_acknowledge_and_resolve_reach_our_alert_with_the_actor(store: Store, setup) -> None:  # noqa: ANN001
    client, svc, alert_id = setup
    body = pd_body(alert_id, "incident.acknowledged", "evt-1")
    r = post_pd(client, body, pagerduty_signature(PD_SECRET, body))
    assert r.status_code == 200 and r.json()["status"] == "applied", r.text
    alert = svc.get_alert(alert_id)
    assert alert["state"] == "acknowledged" and alert["acknowledged_by"] == "pagerduty:Jane Doe"
    assert ("acknowledged", "pagerduty:Jane Doe") in timeline(store, alert_id)
    body = pd_body(alert_id, "incident.resolved", "evt-2", who="Raj")
    rotated = "v1=" + "0" * 64 + "," + pagerduty_signature(PD_SECRET, body)  # during a secret rotation
    assert post_pd(client, body, rotated).json()["status"] == "applied"
    alert = svc.get_alert(alert_id)
    assert alert["state"] == "resolved" and alert["resolved_by"] == "pagerduty:Raj"


def test_pagerduty_bad_signature_is_refused_and_changes_nothing(store: Store, setup) -> None:  # noqa: ANN001
    client, svc, alert_id = setup
    body = pd_body(alert_id, "incident.acknowledged", "evt-bad")
    before = timeline(store, alert_id)
    for signature in (None, "v1=" + "f" * 64, pagerduty_signature("another-secret", body)):
        r = post_pd(client, body, signature)
        assert r.status_code == 401 and "Signature" in r.json()["detail"]
    altered = body.replace(b"Jane Doe", b"Mallory")
    assert post_pd(client, altered, pagerduty_signature(PD_SECRET, body)).status_code == 401
    assert svc.get_alert(alert_id)["state"] == "firing"
    assert timeline(store, alert_id) == before


def test_a_replayed_pagerduty_delivery_changes_nothing(store: Store, setup) -> None:  # noqa: ANN001
    client, svc, alert_id = setup
    ack = pd_body(alert_id, "incident.acknowledged", "evt-replay")
    assert post_pd(client, ack, pagerduty_signature(PD_SECRET, ack)).json()["status"] == "applied"
    after_first = timeline(store, alert_id)
    replay = post_pd(client, ack, pagerduty_signature(PD_SECRET, ack))
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert timeline(store, alert_id) == after_first
    assert svc.get_alert(alert_id)["acknowledged_by"] == "pagerduty:Jane Doe"


def test_pagerduty_events_for_other_incidents_are_ignored(store: Store, setup) -> None:  # noqa: ANN001
    client, svc, alert_id = setup
    body = json.dumps({"event": {"id": "x", "event_type": "incident.acknowledged",
                                 "data": {"incident_key": "someone-elses-incident"}}}).encode()  # fmt: skip
    assert post_pd(client, body, pagerduty_signature(PD_SECRET, body)).json()["status"] == "ignored"
    body = pd_body(alert_id, "incident.priority_updated", "evt-p")
    assert post_pd(client, body, pagerduty_signature(PD_SECRET, body)).json()["status"] == "ignored"
    assert svc.get_alert(alert_id)["state"] == "firing"
    not_json = b"{not json"
    assert post_pd(client, not_json, pagerduty_signature(PD_SECRET, not_json)).status_code == 400


def og_body(alert_id: int, action: str, who: str = "sam@example.com") -> bytes:
    return json.dumps({"action": action, "alert": {"alertId": "og-1", "alias": f"obs-alert-{alert_id}-abc123",
                                                   "username": who, "message": "high_error_rate"},
                       "source": {"name": "web", "type": "web"}}).encode()  # fmt: skip


def test_opsgenie_acknowledge_and_close_with_the_shared_secret_and_replay(store: Store, setup) -> None:  # noqa: ANN001
    client, svc, alert_id = setup
    body = og_body(alert_id, "Acknowledge")
    wrong = client.post("/webhooks/opsgenie", content=body, headers={"X-Opsgenie-Secret": "nope"})
    assert wrong.status_code == 401
    assert client.post("/webhooks/opsgenie", content=body).status_code == 401
    assert svc.get_alert(alert_id)["state"] == "firing"
    ok = client.post("/webhooks/opsgenie", content=body, headers={"X-Opsgenie-Secret": OG_SECRET})
    assert ok.json()["status"] == "applied"
    assert svc.get_alert(alert_id)["acknowledged_by"] == "opsgenie:sam@example.com"
    before = timeline(store, alert_id)
    again = client.post("/webhooks/opsgenie", content=body, headers={"X-Opsgenie-Secret": OG_SECRET})
    assert again.json()["status"] == "duplicate" and timeline(store, alert_id) == before
    close = client.post(
        "/webhooks/opsgenie", content=og_body(alert_id, "Close"), headers={"X-Opsgenie-Secret": OG_SECRET}
    )
    assert close.json()["status"] == "applied"
    assert svc.get_alert(alert_id)["resolved_by"] == "opsgenie:sam@example.com"
    assert ("resolved", "opsgenie:sam@example.com") in timeline(store, alert_id)
