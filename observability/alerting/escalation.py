"""Escalation: which channels each level reaches, when the next level is due, and doing one step.

    level 1  at once                               the rule's channels (every severity)
    level 2  ALERT_ESCALATION_L2_DELAY_S (300 s)   email + Slack + webhook  (critical, unacknowledged)
    level 3  ALERT_ESCALATION_L3_DELAY_S (900 s)   PagerDuty + Opsgenie     (critical, unacknowledged)

Delays count from the moment level 1 went out (`escalation_started_at`). After a step that was
held (silence, inhibition) or taken by hand, the next level also keeps at least the difference of
their delays from now, so held levels do not go out back to back.

The alert row stores `escalation_level` (the last level done) and `next_escalation_at` (when the
next is due), so a restarted worker neither skips nor repeats a step. Each step runs in one
transaction that locks the alert row (SELECT ... FOR UPDATE on PostgreSQL), re-checks that the alert
is still firing and still at the level it was read at, queues the outbox rows, and moves the level
with a guarded UPDATE: a late or duplicate step changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.alerting import audit, outbox, suppression
from observability.alerting import channels as ch
from observability.alerting.model import MANAGED_CHANNELS, MAX_LEVEL, STATE_FIRING, AlertRule
from observability.alerting.rules import get_rule
from observability.settings import Settings
from observability.store import Store, schema

log = logging.getLogger(__name__)

LEVEL_CHANNELS: dict[int, tuple[str, ...]] = {2: ("email", "slack", "webhook"), 3: ("pagerduty", "opsgenie")}


class StepConflict(RuntimeError):
    """Someone else moved the alert first; the transaction rolls back and nothing happens."""


def level_delay(settings: Settings, level: int) -> float:
    return {1: 0.0, 2: settings.alert_escalation_l2_delay_s, 3: settings.alert_escalation_l3_delay_s}[level]


def level_channels(rule: AlertRule, alert: Mapping[str, Any], level: int) -> tuple[str, ...]:
    chans = rule.channels if level == 1 else LEVEL_CHANNELS[level]
    if rule.managed_by == MANAGED_CHANNELS:  # never announce a failing channel through itself
        failing = (alert.get("labels") or {}).get("channel")
        chans = tuple(c for c in chans if c != failing)
    return chans


def escalates(alert: Mapping[str, Any]) -> bool:
    return alert["state"] == STATE_FIRING and alert["severity"] == "critical"


def next_due(
    settings: Settings, alert: Mapping[str, Any], level_done: int, now: datetime, *, keep_gap: bool = False
) -> datetime | None:
    """When the level after `level_done` is due, or None when no automatic step follows.

    On schedule, level n is due `delay(n)` after level 1 went out (a step a few seconds late
    because of the tick does not shift the next). With `keep_gap` (the step was held back by a
    silence or an inhibition, or taken by hand), the next level also waits at least the
    difference of the two delays from now, so held levels do not go out back to back."""
    if level_done >= MAX_LEVEL or not escalates(alert):
        return None
    nxt = level_done + 1
    started = alert.get("escalation_started_at") or now
    due = started + timedelta(seconds=level_delay(settings, nxt))
    if keep_gap:
        gap = level_delay(settings, nxt) - (level_delay(settings, level_done) if level_done >= 1 else 0.0)
        due = max(due, now + timedelta(seconds=max(gap, 0.0)))
    return due


def _update(conn: sa.Connection, alert: dict[str, Any], values: dict[str, Any]) -> None:
    a = schema.alerts
    res = conn.execute(
        sa.update(a)
        .where(
            a.c.id == alert["id"],
            a.c.state == alert["state"],
            a.c.escalation_level == alert["escalation_level"],
        )
        .values(**values)
    )
    if res.rowcount != 1:
        raise StepConflict(f"alert #{alert['id']} changed under this step")
    alert.update(values)


def run_step(
    conn: sa.Connection,
    store: Store,
    settings: Settings,
    alert: dict[str, Any],
    rule: AlertRule,
    now: datetime,
    *,
    actor: str | None = None,
    manual: bool = False,
) -> int | None:
    """Do the alert's next level now (or record why it waits). Returns the level done, or None.

    The caller holds the transaction and has locked and re-checked the row. `manual` (an operator's
    escalate) skips inhibition, silences and cooldown: a person asked for it.
    """
    level = int(alert["escalation_level"]) + 1
    if level > MAX_LEVEL:
        return None
    if not manual:
        hold = suppression.check(conn, alert, rule, now, level)
        if hold is not None:
            values: dict[str, Any] = {"next_escalation_at": hold.until or now}
            if hold.reason != alert.get("suppressed_by"):
                values["suppressed_by"] = hold.reason[:200]
                audit.timeline(conn, alert["id"], "notification_held", now, level=level, reason=hold.reason)
            _update(conn, alert, values)
            return None
    wanted = level_channels(rule, alert, level)
    usable = [c for c in wanted if ch.configured(c, settings)]
    skipped = [c for c in wanted if c not in usable]
    queued = outbox.enqueue(conn, store, alert, rule, level=level, channels=usable, kind="trigger", now=now)
    values = {
        "escalation_level": level,
        "suppressed_by": None,
        "escalation_started_at": alert.get("escalation_started_at") or now,
    }
    if queued:
        values["last_notified_at"] = now
    held = alert.get("suppressed_by") is not None
    values["next_escalation_at"] = next_due(
        settings, {**alert, **values}, level, now, keep_gap=manual or held
    )
    _update(conn, alert, values)
    kind = "notified" if level == 1 else "escalated"
    audit.timeline(
        conn, alert["id"], kind, now, actor, level=level, channels=queued, not_configured=skipped, manual=manual,
        next_escalation_at=alert["next_escalation_at"],
    )  # fmt: skip
    if level > 1:
        who = f" by {actor}" if manual and actor else ""
        audit.activity(
            conn, now, "alert.escalated", f"Alert #{alert['id']} {alert['rule_name']} escalated to level {level}{who}",
            severity="high" if alert["severity"] != "critical" else "critical", actor=actor,
            description=f"Notified {', '.join(queued) or 'no configured channel'}"
            + (f"; not configured: {', '.join(skipped)}" if skipped else ""),
            metadata={"alert_id": alert["id"], "rule": alert["rule_name"], "level": level, "manual": manual},
        )  # fmt: skip
    return level


def lock_alert(conn: sa.Connection, alert_id: int) -> dict[str, Any] | None:
    a = schema.alerts
    row = conn.execute(sa.select(a).where(a.c.id == alert_id).with_for_update()).first()
    return dict(row._mapping) if row else None


def process_escalations(
    store: Store, settings: Settings, now: datetime, *, limit: int = 500
) -> list[tuple[int, int]]:
    """Run every due step (held level-1 notifications and escalations). Returns (alert, level) done."""
    a = schema.alerts
    with store.connect() as conn:
        due = conn.execute(
            sa.select(a.c.id, a.c.escalation_level)
            .where(
                a.c.state == STATE_FIRING, a.c.next_escalation_at.is_not(None), a.c.next_escalation_at <= now
            )
            .order_by(a.c.next_escalation_at, a.c.id)
            .limit(limit)
        ).all()
    done: list[tuple[int, int]] = []
    for alert_id, seen_level in due:
        try:
            with store.begin() as conn:
                alert = lock_alert(conn, alert_id)
                if (
                    alert is None or alert["state"] != STATE_FIRING or alert["escalation_level"] != seen_level
                    or alert["next_escalation_at"] is None or alert["next_escalation_at"] > now
                ):  # fmt: skip
                    continue  # acknowledged, resolved or already stepped meanwhile
                rule = get_rule(conn, alert["rule_name"])
                if rule is None:
                    _update(conn, alert, {"next_escalation_at": None})
                    audit.timeline(conn, alert_id, "escalation_stopped", now, reason="rule deleted")
                    continue
                level = run_step(conn, store, settings, alert, rule, now)
                if level is not None:
                    done.append((alert_id, level))
        except StepConflict as exc:
            log.info("escalation step skipped: %s", exc)
    return done
