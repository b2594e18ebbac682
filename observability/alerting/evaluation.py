"""Evaluation: samples in, alert transitions out.

For each enabled rule, each series (label set) of its metric is judged against the rule's
threshold(s) and moved one step through the lifecycle:

    condition true,  no open alert     -> pending (rule has `for`) or firing
    condition true,  pending           -> firing once `for` has elapsed since pending_since
    condition true,  firing / acked    -> value, message and severity kept current
    condition false, pending           -> dropped (it never fired)
    condition false, firing / acked    -> clear_since set; resolved once clear for keep_firing_for

so a metric flapping around its threshold neither opens (thanks to `for`) nor closes (thanks to
`keep_firing_for`) alerts every tick.

A breach measured over fewer events than ALERT_MIN_SAMPLES (`Sample.samples`; 1 failure in 3
interactions) is "no data": it opens nothing and does not advance a pending alert; nor does it
start the clearing of a firing alert, so an incident's alert stays open while its traffic dips
below the minimum (it does not cancel a clearing under way either). A clear value counts whatever
the number of events behind it.

A series missing from the input is left alone, unless the evaluation is `complete` (the
worker's, where every source answered): then a missing series counts as clear, so alerts of
vanished series (or of deleted and disabled rules) resolve.

Each transition is its own transaction that locks the alert row and re-checks it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.alerting import lifecycle
from observability.alerting.escalation import StepConflict, lock_alert
from observability.alerting.model import (
    OPEN_STATES,
    STATE_PENDING,
    SYSTEM_ACTOR,
    AlertRule,
    InvalidTransition,
    Sample,
    breach,
    dedup_key,
)
from observability.alerting.rules import all_rules
from observability.alerting.suppression import INHIBITIONS
from observability.settings import Settings
from observability.store import Store, schema

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    fired: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    changed: int = 0
    problems: list[str] = field(default_factory=list)


def severity_of(rule: AlertRule, sample: Sample) -> str | None:
    if sample.value is None:
        return None
    if sample.thresholds is not None:  # a custom metric carries its own thresholds
        warning, critical, comparison = sample.thresholds
        return breach(sample.value, comparison, warning, critical, "warning")
    return rule.breach(sample.value)


def _matches(rule: AlertRule, sample: Sample) -> bool:
    """A rule watches every series of its metric (one alert per bot) that its scope allows; a
    series measured from another source (`source` label, e.g. `interactions.rate_limit_error_rate`)
    only when the rule names that source, so one incident does not raise one rule twice."""
    if sample.metric != rule.family:
        return False
    labels = sample.label_dict
    fixed = rule.fixed_labels
    if "source" in labels and "source" not in fixed:
        return False
    return all(labels.get(k) == v for k, v in fixed.items())


def evaluate(
    store: Store,
    settings: Settings,
    samples: list[Sample],
    now: datetime,
    *,
    complete: bool = False,
) -> EvaluationResult:
    result = EvaluationResult()
    a = schema.alerts
    with store.connect() as conn:
        rules = all_rules(conn)
        open_rows = [dict(r._mapping) for r in conn.execute(sa.select(a).where(a.c.state.in_(OPEN_STATES)))]
    enabled = {r.name: r for r in rules if r.enabled}
    open_by_key = {row["dedup_key"]: row for row in open_rows}
    by_family: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_family[s.metric].append(s)

    # Inhibiting rules first, and a rule's per-bot series before its overall one, so that what
    # holds a notification exists before the notification is considered in the same tick.
    sources = {i.source for i in INHIBITIONS}
    ordered = sorted(enabled.values(), key=lambda r: (r.name not in sources, r.name))
    seen: set[str] = set()
    for rule in ordered:
        for sample in sorted(by_family.get(rule.family, ()), key=lambda s: "bot" not in s.label_dict):
            if not _matches(rule, sample):
                continue
            labels = sample.label_dict
            key = dedup_key(rule.name, labels)
            if key in seen:
                continue
            seen.add(key)
            _series(
                store,
                settings,
                rule,
                labels,
                sample,
                severity_of(rule, sample),
                open_by_key.get(key),
                now,
                result,
            )
    if complete:
        for row in open_rows:
            if row["dedup_key"] in seen:
                continue
            rule = enabled.get(row["rule_name"])
            labels = row["labels"] or {}
            if rule is None:
                _close_orphan(store, settings, row, now, result)
            else:
                _series(store, settings, rule, labels, Sample(rule.family), None, row, now, result)
    return result


def _series(
    store: Store,
    settings: Settings,
    rule: AlertRule,
    labels: dict[str, str],
    sample: Sample,
    severity: str | None,
    row: dict[str, Any] | None,
    now: datetime,
    result: EvaluationResult,
) -> None:
    if (
        severity is not None
        and sample.samples is not None
        and sample.samples < max(settings.alert_min_samples, 1)
    ):
        if row is None or row["state"] == STATE_PENDING or row["clear_since"] is None:
            return  # a breach over too few events: no data, the alert (or its absence) stays as it is
        severity = None  # clearing goes on: too few events to call it back
    try:
        with store.begin() as conn:
            if row is None:
                if severity is None:
                    return
                alert = lifecycle.open_alert(conn, store, settings, rule, labels, sample, severity, now)
                if alert is not None:
                    (result.pending if alert["state"] == STATE_PENDING else result.fired).append(alert["id"])
                    result.changed += 1
                return
            alert = lock_alert(conn, row["id"])
            if alert is None or alert["state"] not in OPEN_STATES:
                return  # resolved or dropped by someone else since we read it
            if severity is not None:
                if alert["state"] == STATE_PENDING:
                    if (now - alert["pending_since"]).total_seconds() >= rule.for_s:
                        lifecycle.refresh(conn, settings, alert, rule, sample, severity, now)
                        lifecycle.fire(conn, store, settings, alert, rule, now)
                        result.fired.append(alert["id"])
                    else:
                        lifecycle.refresh(conn, settings, alert, rule, sample, severity, now)
                else:
                    lifecycle.refresh(conn, settings, alert, rule, sample, severity, now)
                result.changed += 1
                return
            if alert["state"] == STATE_PENDING:
                lifecycle.drop_pending(conn, alert)
                result.changed += 1
                return
            clear_since = alert["clear_since"] or now
            keep = (
                settings.alert_keep_firing_for_s if rule.keep_firing_for_s is None else rule.keep_firing_for_s
            )
            if (now - clear_since).total_seconds() >= keep:
                lifecycle.resolve(
                    conn, store, settings, alert, rule, now, actor=SYSTEM_ACTOR,
                    reason=f"condition clear since {clear_since:%Y-%m-%d %H:%M:%S} UTC (keep_firing_for {keep:g}s)",
                )  # fmt: skip
                result.resolved.append(alert["id"])
                result.changed += 1
            elif alert["clear_since"] is None:
                lifecycle.start_clear(conn, alert, now)
                result.changed += 1
    except (StepConflict, InvalidTransition) as exc:  # someone else changed the alert first
        log.info("evaluation of %s skipped: %s", rule.name, exc)


def _close_orphan(
    store: Store, settings: Settings, row: dict[str, Any], now: datetime, result: EvaluationResult
) -> None:
    """An open alert whose rule was deleted or disabled behind our back: resolve (or drop) it."""
    try:
        with store.begin() as conn:
            alert = lock_alert(conn, row["id"])
            if alert is None or alert["state"] not in OPEN_STATES:
                return
            if alert["state"] == STATE_PENDING:
                lifecycle.drop_pending(conn, alert)
                return
            lifecycle.resolve(conn, store, settings, alert, None, now, actor=SYSTEM_ACTOR,
                              reason="its rule was deleted or disabled")  # fmt: skip
            result.resolved.append(alert["id"])
    except InvalidTransition as exc:
        log.info("orphan alert #%s left alone: %s", row["id"], exc)
