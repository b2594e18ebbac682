"""The one writer of the activity feed (`activity_events`): security, control, alerting and budget
changes all append their record here.

A row is written on the caller's connection, inside the transaction of the change it describes, so
a change and its record commit or roll back together. Title, description and metadata values
are PII-redacted here (`REDACT_PII`), whoever writes them. Metadata is made JSON-safe here (datetimes
become ISO strings) and an unknown severity is stored as `low`, so no caller can write a row the
feed cannot show.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.events import SEVERITIES
from observability.redaction import redact_if_enabled, redact_value
from observability.store import schema
from observability.timeutil import to_naive_utc, utcnow


def jsonable(value: Any) -> Any:
    """`value` with datetimes as ISO strings and every mapping/sequence as plain JSON types."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def audit_event(
    conn: sa.Connection,
    event_type: str,
    title: str,
    *,
    user: str | None,
    severity: str = "low",
    category: str = "security",
    description: str | None = None,
    conversation_id: str | None = None,
    account_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Append an activity-feed event inside the caller's transaction (never a secret in it)."""
    conn.execute(
        sa.insert(schema.activity_events).values(
            id=uuid.uuid4().hex,
            ts=to_naive_utc(now) or utcnow(),
            event_type=event_type,
            title=redact_if_enabled(title)[:200],
            description=redact_if_enabled(description),
            severity=severity if severity in SEVERITIES else "low",
            category=category,
            account_id=account_id,
            conversation_id=conversation_id,
            user_id=user,
            metadata=redact_value(jsonable(dict(metadata))) if metadata else None,
        )
    )
