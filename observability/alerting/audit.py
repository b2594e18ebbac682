"""The record of everything that happens to alerts and rules.

Notes, reasons and other detail values are PII-redacted on the way in (`REDACT_PII`).
`timeline` appends an `alert_events` row (the alert's timeline on screen: fired, held, notified,
delivered, escalated, acknowledged, resolved); `activity` appends the console's activity-feed row
through the one writer, `observability.auth.audit_event`, in category `alerts`. Both are written
on the caller's connection, inside the transaction of the change they describe, so a change and
its record commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.auth import audit_event, jsonable
from observability.redaction import redact_value
from observability.store import schema

ACTIVITY_SEVERITY = {"info": "low", "warning": "medium", "critical": "critical"}
CATEGORY = "alerts"


def timeline(
    conn: sa.Connection, alert_id: int, kind: str, now: datetime, actor: str | None = None, **detail: Any
) -> None:
    conn.execute(
        sa.insert(schema.alert_events).values(
            alert_id=alert_id,
            ts=now,
            kind=kind,
            actor=actor,
            detail=redact_value(jsonable(detail)) if detail else None,
        )
    )


def activity(
    conn: sa.Connection,
    now: datetime,
    event_type: str,
    title: str,
    *,
    severity: str = "low",
    description: str | None = None,
    actor: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    audit_event(
        conn,
        event_type,
        title,
        user=actor,
        severity=severity,
        category=CATEGORY,
        description=description,
        metadata=metadata,
        now=now,
    )
