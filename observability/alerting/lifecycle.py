"""The alert lifecycle: pending -> firing -> acknowledged -> resolved, one transition at a time.

Every function here runs on the caller's connection inside its transaction, on a row the caller
locked; each appends the timeline (`alert_events`) and activity feed rows of the change and queues
the outbox rows it implies, so the change, its record and its notifications commit together.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.alerting import audit, escalation, outbox
from observability.alerting import channels as ch
from observability.alerting.model import (
    COMPARISON_SYMBOLS,
    MANAGED_CUSTOM,
    STATE_ACKNOWLEDGED,
    STATE_FIRING,
    STATE_PENDING,
    STATE_RESOLVED,
    AlertRule,
    InvalidTransition,
    Sample,
    dedup_key,
    format_value,
)
from observability.analytics import sla
from observability.settings import Settings
from observability.store import Store, schema
from observability.telemetry import increment_counter


def threshold_for(rule: AlertRule, severity: str, sample: Sample | None) -> tuple[float | None, str]:
    """The threshold that was crossed for this severity, and the comparison used."""
    if rule.managed_by == MANAGED_CUSTOM and sample is not None and sample.thresholds:
        warning, critical, comparison = sample.thresholds
        return (critical if severity == "critical" and critical is not None else warning), comparison
    if severity == "critical" and rule.critical_threshold is not None:
        return rule.critical_threshold, rule.comparison
    return rule.threshold, rule.comparison


def describe(
    rule: AlertRule, labels: Mapping[str, str], sample: Sample, severity: str
) -> tuple[str, float | None]:
    metric = labels.get("metric", rule.metric) if rule.managed_by == MANAGED_CUSTOM else rule.metric
    threshold, comparison = threshold_for(rule, severity, sample)
    scope = sla.scope_label(
        {k: v for k, v in labels.items() if not (k == "metric" and rule.managed_by == MANAGED_CUSTOM)}
    )
    where = f" [{scope}]" if scope else ""
    text = (
        f"{metric}{where} is {format_value(metric, sample.value)} "
        f"({COMPARISON_SYMBOLS[comparison]} {format_value(metric, threshold)}, {severity})"
    )
    if sample.detail:
        text += f": {sample.detail}"
    return text, threshold


def _activity_severity(severity: str) -> str:
    return audit.ACTIVITY_SEVERITY.get(severity, "low")


def open_alert(
    conn: sa.Connection,
    store: Store,
    settings: Settings,
    rule: AlertRule,
    labels: Mapping[str, str],
    sample: Sample,
    severity: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Insert a new open alert (pending, or firing at once when the rule has no `for`).

    Returns None when another evaluation opened the same dedup key first (the unique partial
    index on open alerts decides)."""
    a = schema.alerts
    message, threshold = describe(rule, labels, sample, severity)
    state = STATE_PENDING if rule.for_s > 0 else STATE_FIRING
    values = {
        "rule_name": rule.name, "dedup_key": dedup_key(rule.name, labels), "labels": dict(labels),
        "state": state, "severity": severity, "value": sample.value, "threshold": threshold, "message": message,
        "pending_since": now, "last_true_at": now, "escalation_level": 0, "created_at": now,
    }  # fmt: skip
    stmt = (
        store.insert(a)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[a.c.dedup_key], index_where=a.c.state != STATE_RESOLVED)
        .returning(a.c.id)
    )
    alert_id = conn.execute(stmt).scalar()
    if alert_id is None:
        return None
    alert = escalation.lock_alert(conn, alert_id)
    if state == STATE_FIRING:
        fire(conn, store, settings, alert, rule, now)
    return alert


def fire(
    conn: sa.Connection,
    store: Store,
    settings: Settings,
    alert: dict[str, Any],
    rule: AlertRule,
    now: datetime,
) -> None:
    """pending (or new) -> firing; level 1 goes out in this same transaction unless something holds it."""
    a = schema.alerts
    values = {"state": STATE_FIRING, "fired_at": now, "next_escalation_at": now, "clear_since": None}
    res = conn.execute(
        sa.update(a)
        .where(a.c.id == alert["id"], a.c.state.in_((STATE_PENDING, STATE_FIRING)))
        .values(**values)
    )
    if res.rowcount != 1:
        raise escalation.StepConflict(f"alert #{alert['id']} changed before it could fire")
    alert.update(values)
    audit.timeline(
        conn, alert["id"], "fired", now, severity=alert["severity"], value=alert["value"],
        threshold=alert["threshold"], message=alert["message"], pending_since=alert["pending_since"],
    )  # fmt: skip
    audit.activity(
        conn, now, "alert.fired", f"Alert fired: {rule.name} ({alert['severity']})",
        severity=_activity_severity(alert["severity"]), description=alert["message"],
        metadata={"alert_id": alert["id"], "rule": rule.name, "labels": alert["labels"]},
    )  # fmt: skip
    increment_counter("obs.alert.triggered", rule=rule.name, severity=alert["severity"])
    escalation.run_step(conn, store, settings, alert, rule, now)


def refresh(
    conn: sa.Connection,
    settings: Settings,
    alert: dict[str, Any],
    rule: AlertRule,
    sample: Sample,
    severity: str,
    now: datetime,
) -> None:
    """The condition still holds: keep value, message and severity current; cancel a running clear."""
    a = schema.alerts
    message, threshold = describe(rule, alert["labels"] or {}, sample, severity)
    values: dict[str, Any] = {"last_true_at": now}
    if sample.value != alert["value"]:
        values["value"] = sample.value
    if message != alert["message"]:
        values["message"] = message
    if threshold != alert["threshold"]:
        values["threshold"] = threshold
    if alert["clear_since"] is not None:
        values["clear_since"] = None
    if severity != alert["severity"] and alert["state"] == STATE_PENDING:
        values["severity"] = severity
    elif severity != alert["severity"]:
        values["severity"] = severity
        audit.timeline(conn, alert["id"], "severity_changed", now, previous=alert["severity"], severity=severity,
                       value=sample.value)  # fmt: skip
        audit.activity(
            conn, now, "alert.severity_changed", f"Alert #{alert['id']} {rule.name} is now {severity}",
            severity=_activity_severity(severity), description=message,
            metadata={"alert_id": alert["id"], "rule": rule.name, "previous": alert["severity"]},
        )  # fmt: skip
        if alert["state"] == STATE_FIRING and alert["escalation_level"] >= 1:
            # the escalation clock restarts as if the level already sent had gone out now, and is
            # stored: later levels keep their spacing (L3 comes 15 minutes after turning critical,
            # not at once because the alert first fired long ago)
            level = alert["escalation_level"]
            values["escalation_started_at"] = now - timedelta(seconds=escalation.level_delay(settings, level))
            values["next_escalation_at"] = escalation.next_due(settings, {**alert, **values}, level, now)
    conn.execute(sa.update(a).where(a.c.id == alert["id"]).values(**values))
    alert.update(values)


def start_clear(conn: sa.Connection, alert: dict[str, Any], now: datetime) -> None:
    a = schema.alerts
    conn.execute(sa.update(a).where(a.c.id == alert["id"]).values(clear_since=now))
    alert["clear_since"] = now


def drop_pending(conn: sa.Connection, alert: Mapping[str, Any]) -> None:
    """A pending alert whose condition cleared before `for` elapsed never existed as far as anyone
    was told: its row goes (it has no timeline yet)."""
    a = schema.alerts
    conn.execute(sa.delete(a).where(a.c.id == alert["id"], a.c.state == STATE_PENDING))


def resolve(
    conn: sa.Connection,
    store: Store,
    settings: Settings,
    alert: dict[str, Any],
    rule: AlertRule | None,
    now: datetime,
    *,
    actor: str,
    reason: str,
) -> None:
    """firing/acknowledged -> resolved; tells the channels that keep state (and the webhook)."""
    if alert["state"] not in (STATE_FIRING, STATE_ACKNOWLEDGED):
        raise InvalidTransition(
            f"alert #{alert['id']} is {alert['state']}; only firing or acknowledged alerts resolve"
        )
    a = schema.alerts
    values = {"state": STATE_RESOLVED, "resolved_at": now, "resolved_by": actor, "next_escalation_at": None,
              "suppressed_by": None}  # fmt: skip
    res = conn.execute(
        sa.update(a).where(a.c.id == alert["id"], a.c.state == alert["state"]).values(**values)
    )
    if res.rowcount != 1:
        raise InvalidTransition(f"alert #{alert['id']} changed meanwhile; look again")
    alert.update(values)
    targets = [
        c
        for c in ch.SEND_RESOLVED
        if c in outbox.triggered_channels(conn, alert["id"]) and ch.configured(c, settings)
    ]
    queued = outbox.enqueue(conn, store, alert, rule, level=0, channels=targets, kind="resolve", now=now)
    audit.timeline(conn, alert["id"], "resolved", now, actor, reason=reason, notify=queued)
    audit.activity(
        conn, now, "alert.resolved", f"Alert #{alert['id']} {alert['rule_name']} resolved"
        + ("" if actor == "system" else f" by {actor}"),
        severity="low", actor=None if actor == "system" else actor, description=reason,
        metadata={"alert_id": alert["id"], "rule": alert["rule_name"], "labels": alert["labels"]},
    )  # fmt: skip


def acknowledge(
    conn: sa.Connection, store: Store, settings: Settings, alert: dict[str, Any], rule: AlertRule | None, now: datetime,
    *, actor: str, note: str | None = None,
) -> None:  # fmt: skip
    """firing -> acknowledged: escalation stops; PagerDuty and Opsgenie are told."""
    if alert["state"] == STATE_ACKNOWLEDGED:
        raise InvalidTransition(
            f"alert #{alert['id']} was already acknowledged by {alert['acknowledged_by']}"
        )
    if alert["state"] != STATE_FIRING:
        raise InvalidTransition(
            f"alert #{alert['id']} is {alert['state']}; only firing alerts can be acknowledged"
        )
    a = schema.alerts
    values = {"state": STATE_ACKNOWLEDGED, "acknowledged_by": actor, "acknowledged_at": now,
              "next_escalation_at": None, "suppressed_by": None}  # fmt: skip
    res = conn.execute(sa.update(a).where(a.c.id == alert["id"], a.c.state == STATE_FIRING).values(**values))
    if res.rowcount != 1:
        raise InvalidTransition(f"alert #{alert['id']} changed meanwhile; look again")
    alert.update(values)
    targets = [
        c
        for c in ch.STATEFUL
        if c in outbox.triggered_channels(conn, alert["id"]) and ch.configured(c, settings)
    ]
    queued = outbox.enqueue(conn, store, alert, rule, level=0, channels=targets, kind="ack", now=now)
    audit.timeline(conn, alert["id"], "acknowledged", now, actor, note=note, notify=queued,
                   level=alert["escalation_level"])  # fmt: skip
    audit.activity(
        conn, now, "alert.acknowledged", f"Alert #{alert['id']} {alert['rule_name']} acknowledged by {actor}",
        severity="low", actor=actor, description=note,
        metadata={"alert_id": alert["id"], "rule": alert["rule_name"]},
    )  # fmt: skip
