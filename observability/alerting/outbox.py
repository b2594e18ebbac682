"""The notification outbox: rows written in the same transaction as the alert change they announce.

One row per (alert, level, channel, kind), enforced by a unique constraint and inserted with
ON CONFLICT DO NOTHING, so a step that runs twice (a retried transaction, a second worker, a
restart) cannot queue a second copy. The row carries a snapshot of the alert at that moment; the
channel turns it into its own format when delivering. No secret is ever stored in the row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.alerting.model import MANAGED_CUSTOM, AlertRule, fingerprint, format_value
from observability.store import Store, schema


def _iso(value: datetime | None) -> str | None:
    return value.replace(microsecond=0).isoformat() if value else None


def snapshot(alert: Mapping[str, Any], rule: AlertRule | None, *, level: int, kind: str) -> dict[str, Any]:
    labels = dict(alert.get("labels") or {})
    metric = labels.get("metric", "") if rule is not None and rule.managed_by == MANAGED_CUSTOM else (
        rule.metric if rule else "")  # fmt: skip
    return {
        "alert_id": alert["id"],
        "rule": alert["rule_name"],
        "labels": labels,
        "severity": alert["severity"],
        "state": alert["state"],
        "metric": metric,
        "value": alert.get("value"),
        "threshold": alert.get("threshold"),
        "value_text": format_value(metric, alert.get("value")) if metric else None,
        "threshold_text": format_value(metric, alert.get("threshold")) if metric else None,
        "message": alert.get("message"),
        "description": rule.description if rule else None,
        "fired_at": _iso(alert.get("fired_at")),
        "resolved_at": _iso(alert.get("resolved_at")),
        "acknowledged_by": alert.get("acknowledged_by"),
        "resolved_by": alert.get("resolved_by"),
        "dedup_key": alert["dedup_key"],
        "fingerprint": fingerprint(alert["dedup_key"]),
        "level": level,
        "kind": kind,
    }


def enqueue(
    conn: sa.Connection,
    store: Store,
    alert: Mapping[str, Any],
    rule: AlertRule | None,
    *,
    level: int,
    channels: Iterable[str],
    kind: str,
    now: datetime,
) -> list[str]:
    """Queue one row per channel; returns the channels actually queued (new rows)."""
    t = schema.notifications
    payload = snapshot(alert, rule, level=level, kind=kind)
    queued: list[str] = []
    for channel in channels:
        stmt = (
            store.insert(t)
            .values(
                alert_id=alert["id"],
                level=level,
                channel=channel,
                kind=kind,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )  # fmt: skip
            .on_conflict_do_nothing(index_elements=["alert_id", "level", "channel", "kind"])
            .returning(t.c.id)
        )
        if conn.execute(stmt).first() is not None:
            queued.append(channel)
    return queued


def triggered_channels(conn: sa.Connection, alert_id: int) -> set[str]:
    """Channels that were (or will be) told this alert fired: trigger rows not given up on."""
    t = schema.notifications
    rows = conn.execute(
        sa.select(t.c.channel)
        .where(t.c.alert_id == alert_id, t.c.kind == "trigger", t.c.status != "dead")
        .distinct()
    )
    return {r[0] for r in rows}
