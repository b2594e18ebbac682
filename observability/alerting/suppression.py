"""The stages that may hold a due notification, in Alertmanager's order: inhibit, silence, cooldown.

A held step is not dropped: the alert keeps its due step and the reason is shown on its timeline;
the step goes out as soon as nothing holds it (the inhibiting alert resolves, the silence ends, the
cooldown passes) provided the alert is still firing and unacknowledged.

Before all three: an alert whose condition is clear, kept firing for `keep_firing_for` in case
it comes back, takes no step (no held notification released, no escalation) unless the condition
returns, so an incident that is over pages nobody.

Inhibition: while `bot_unresponsive` is open for a bot, that bot's SLA and error-rate alerts are
held (a dead bot is one incident, not three); and while a rule has an open alert for a bot, the
same rule's overall alert (no `bot` label, e.g. the system-wide error rate) is held, since the
bot's alert already explains it. An inhibiting alert counts from the moment it is pending, so a
cause still waiting out its `for` holds a symptom that crossed its threshold a tick earlier.

Cooldown: after a notification for a rule and label set, another alert with the same dedup key is
not notified again until the rule's cooldown has passed; the alert itself is recorded all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.alerting.model import OPEN_STATES, STATE_PENDING, AlertRule
from observability.alerting.silences import matching_silence
from observability.store import schema


@dataclass(frozen=True)
class Inhibition:
    source: str  # rule whose open alerts inhibit
    targets: tuple[str, ...]  # rules whose notifications are held
    equal: tuple[str, ...]  # labels that must be equal (and present) on both


INHIBITIONS: tuple[Inhibition, ...] = (
    Inhibition("bot_unresponsive", ("sla_violation", "high_error_rate"), ("bot",)),
)


@dataclass(frozen=True)
class Hold:
    reason: str
    until: datetime | None = None  # when to look again (None: next tick)


def inhibited_by(conn: sa.Connection, alert: Mapping[str, Any]) -> tuple[int, str] | None:
    labels = alert.get("labels") or {}
    a = schema.alerts
    for rule in INHIBITIONS:
        if alert["rule_name"] not in rule.targets or any(k not in labels for k in rule.equal):
            continue
        rows = conn.execute(
            sa.select(a.c.id, a.c.labels, a.c.state).where(
                a.c.rule_name == rule.source, a.c.state.in_(OPEN_STATES)
            )
        ).all()
        for row in rows:
            src = row.labels or {}
            if all(src.get(k) == labels[k] for k in rule.equal):
                return row.id, rule.source + _pending(row.state)
    if "bot" not in labels:  # the overall series: a bot's alert of the same rule explains it
        rows = conn.execute(
            sa.select(a.c.id, a.c.labels, a.c.state).where(
                a.c.rule_name == alert["rule_name"], a.c.state.in_(OPEN_STATES), a.c.id != alert["id"]
            )
        ).all()
        for row in rows:
            if (row.labels or {}).get("bot"):
                return row.id, f"{alert['rule_name']} for bot {row.labels['bot']}{_pending(row.state)}"
    return None


def _pending(state: str) -> str:
    """A pending cause already holds its symptoms back, but it is dropped, not kept, if it clears
    without firing: the reason says so, since its number may then lead nowhere."""
    return ", pending: dropped if it clears without firing" if state == STATE_PENDING else ""


def check(
    conn: sa.Connection, alert: Mapping[str, Any], rule: AlertRule, now: datetime, level: int
) -> Hold | None:
    """Why this alert's next step must wait, or None when it may go out now."""
    if alert.get("clear_since") is not None:
        # clear, kept firing for keep_firing_for: page nobody unless the condition comes back
        return Hold(
            f"condition clear since {alert['clear_since']:%Y-%m-%d %H:%M:%S} UTC; resolves unless it returns"
        )
    inhibitor = inhibited_by(conn, alert)
    if inhibitor is not None:
        return Hold(f"inhibited by alert #{inhibitor[0]} ({inhibitor[1]})")
    silence = matching_silence(conn, now, alert["rule_name"], alert.get("labels") or {}, alert["severity"])
    if silence is not None:
        return Hold(f"silenced by silence #{silence.id} until {silence.ends_at:%Y-%m-%d %H:%M:%S} UTC: {silence.reason}",
                    silence.ends_at)  # fmt: skip
    if level == 1 and rule.cooldown_s > 0:
        a = schema.alerts
        last = conn.execute(
            sa.select(sa.func.max(a.c.last_notified_at)).where(
                a.c.dedup_key == alert["dedup_key"], a.c.id != alert["id"]
            )
        ).scalar()
        if last is not None:
            until = last + timedelta(seconds=rule.cooldown_s)
            if now < until:
                return Hold(f"cooldown: {rule.name} notified at {last:%H:%M:%S}; next notification from "
                            f"{until:%H:%M:%S} UTC", until)  # fmt: skip
    return None
