"""Issue 14, clean data paths: secrets never stored, shown or logged; channels that cannot leak;
personal data masked at the ingest boundary; data rendered as text; private files; permissions."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from support.alerting import Harness
from support.net import free_port

from observability.redaction import scrub
from observability.settings import Settings
from observability.store import schema

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

# ---- 1. secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /T0/B0/PathS3cret",
            "PathS3cret",
        ),
        ("POST https://hooks.example.com/services/T0/B0/PathS3cret failed", "PathS3cret"),
        ("GET https://api.example.com/v1/alerts?token=QueryS3cret&x=1 refused", "QueryS3cret"),
        ("slack said xoxb-1234-5678-S3cretS3cret", "S3cretS3cret"),
        ("bad key AKIAIOSFODNN7S3CRETX", "IOSFODNN7S3CRETX"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJTM2NyZXQifQ.c2lnbmF0dXJlUzNjcmV0", "c2lnbmF0dXJlUzNjcmV0"),
        ("GenieKey og-S3cret-key-1234 rejected", "og-S3cret-key-1234"),
    ],
)
def test_scrub_reduces_urls_to_scheme_and_host_and_masks_token_shapes(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    if "://" in text:
        host = text.split("://")[1].split("/")[0]
        assert host in cleaned, "the host stays, so an operator can tell which peer failed"


def test_settings_repr_masks_every_secret_including_url_passwords() -> None:
    s = Settings.from_env({
        "DATABASE_URL": "postgresql+psycopg://app:db-S3cret@db:5432/obs",
        "REDIS_URL": "redis://:redis-S3cret@cache:6379/0",
        "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-S3cret",
        "ALERT_WEBHOOK_URL": "https://hooks.example.com/in?token=hook-S3cret",
        "ALERT_WEBHOOK_HEADERS": json.dumps({"Authorization": "Bearer header-S3cret"}),
        "ALERT_WEBHOOK_PAGERDUTY_URL": "https://events.example.com/v2/enqueue?key=pd-S3cret",
        "SESSION_SECRET": "session-S3cret",
    })  # fmt: skip
    text = repr(s)
    assert "S3cret" not in text and "db:5432" in text and "cache:6379" in text
    assert s.database_url.endswith("app:db-S3cret@db:5432/obs"), "the value itself is unchanged"


@SQLITE_ONLY
def test_a_failed_delivery_stores_shows_and_logs_no_webhook_token(
    alerting: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead_url = f"http://127.0.0.1:{free_port()}/services/T0/B0/PathS3cret?token=QueryS3cret"
    alerting.reconfigure(alert_slack_webhook_url=dead_url, alert_delivery_max_attempts=1)
    result = alerting.svc.send_test_notification("slack", alerting.users["operator"])
    assert not result["ok"] and "127.0.0.1" in result["detail"] and "S3cret" not in result["detail"]
    [a] = alerting.at(0, {"cache_hit_rate": 0.2})  # slack only, dead after one attempt
    timeline = alerting.svc.alert_timeline(a["id"])
    assert "delivery_dead" in [e["kind"] for e in timeline]
    with alerting.store.connect() as conn:
        errors = conn.execute(sa.select(schema.notifications.c.last_error)).scalars().all()
        feed = conn.execute(
            sa.select(schema.activity_events.c.title, schema.activity_events.c.description)
        ).all()
    assert any(e and "127.0.0.1" in e for e in errors)
    stored = json.dumps([errors, [tuple(f) for f in feed], [e["detail"] for e in timeline]], default=str)
    assert any("gave up" in (f.title or "") and "127.0.0.1" in (f.description or "") for f in feed)
    assert "S3cret" not in stored
    assert "S3cret" not in caplog.text
