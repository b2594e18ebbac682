"""The record of everything that happens to alerts and rules.

`timeline` appends an `alert_events` row (the alert's timeline on screen: fired, held, notified,
delivered, escalated, acknowledged, resolved); `activity` appends an `activity_events` row (the
console's activity feed). Both are written on the caller's connection, inside the transaction of
the change they describe, so a change and its record commit or roll back together.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import schema

ACTIVITY_SEVERITY = {"info": "low", "warning": "medium", "critical": "critical"}
CATEGORY = "alerts"


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def timeline(
    conn: sa.Connection, alert_id: int, kind: str, now: datetime, actor: str | None = None, **detail: Any
) -> None:
    conn.execute(
        sa.insert(schema.alert_events).values(
            alert_id=alert_id, ts=now, kind=kind, actor=actor, detail=jsonable(detail) if detail else None
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
    conn.execute(
        sa.insert(schema.activity_events).values(
            id=uuid.uuid4().hex,
            ts=now,
            event_type=event_type,
            title=title[:200],
            description=description,
            severity=severity if severity in ("low", "medium", "high", "critical") else "low",
            category=CATEGORY,
            user_id=actor,
            metadata=jsonable(dict(metadata)) if metadata else None,
        )
    )
