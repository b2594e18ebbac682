"""Silences: maintenance windows that hold notifications (never the alert records).

A silence names a rule (or any rule) and label matchers (label -> value; `alertname` and
`severity` match the alert's rule and severity), a start, an end and a reason. While it is active
(`starts_at <= now < ends_at`) matching alerts still fire, are recorded and shown, but their
notifications wait; when it ends, an alert that is still firing and unacknowledged is notified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.alerting.model import MAX_SILENCE_S
from observability.settings import Settings
from observability.store import schema


def longest_silence_s(settings: Settings) -> float:
    """The longest silence that may be set: `ALERT_SILENCE_MAX_S` (7 days by default), never more
    than `MAX_SILENCE_S` (30 days). One definition for the service that enforces it and the forms
    that show it (the Silences tab said "30 days" while 7 were enforced)."""
    return min(MAX_SILENCE_S, settings.alert_silence_max_s)


@dataclass(frozen=True)
class Silence:
    id: int
    rule_name: str | None
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str | None
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, rule_name: str, labels: Mapping[str, str], severity: str | None = None) -> bool:
        if self.rule_name and self.rule_name != rule_name:
            return False
        full = {**labels, "alertname": rule_name}
        if severity:
            full["severity"] = severity
        return all(full.get(k) == v for k, v in self.matchers.items())

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        d = {
            "id": self.id, "rule_name": self.rule_name, "matchers": dict(self.matchers),
            "starts_at": self.starts_at, "ends_at": self.ends_at, "reason": self.reason,
            "created_by": self.created_by, "created_at": self.created_at,
        }  # fmt: skip
        if now is not None:
            d["active"] = self.active(now)
        return d


def row_to_silence(row: Any) -> Silence:
    m = row._mapping
    return Silence(
        m["id"], m["rule_name"], dict(m["matchers"] or {}), m["starts_at"], m["ends_at"], m["reason"],
        m["created_by"], m["created_at"],
    )  # fmt: skip


def active_silences(conn: sa.Connection, now: datetime) -> list[Silence]:
    t = schema.silences
    rows = conn.execute(sa.select(t).where(t.c.starts_at <= now, t.c.ends_at > now).order_by(t.c.id)).all()
    return [row_to_silence(r) for r in rows]


def matching_silence(
    conn: sa.Connection, now: datetime, rule_name: str, labels: Mapping[str, str], severity: str | None
) -> Silence | None:
    """The active silence (the one ending last) that covers this alert, if any."""
    found = [s for s in active_silences(conn, now) if s.matches(rule_name, labels, severity)]
    return max(found, key=lambda s: s.ends_at) if found else None
