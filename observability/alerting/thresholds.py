"""Built-in alert rules from the thresholds of source document 004 (system load, response time, AI
confidence, safety score), which `observability.analytics.thresholds` reads from the file named by
`ALERT_THRESHOLDS_CONFIG` (the same reader the live-monitoring page uses).

Each entry becomes a built-in two-level rule (`high_system_load`, `low_ai_confidence`, ...) whose
thresholds the evaluation keeps in step with the file; the console can toggle those rules and
change their channels, not their thresholds.
"""

from __future__ import annotations

from observability.alerting.model import MANAGED_THRESHOLDS, AlertRule
from observability.analytics.thresholds import ThresholdPair


def comparison(pair: ThresholdPair) -> str:
    """The rule's comparison: above the thresholds is bad, or below them."""
    return "gt" if pair.higher_is_worse else "lt"


def rule_name(pair: ThresholdPair) -> str:
    """`high_system_load`, `low_ai_confidence`, ..."""
    return ("high_" if pair.higher_is_worse else "low_") + pair.metric


def threshold_rule(pair: ThresholdPair, for_s: float = 0.0) -> AlertRule:
    """The built-in rule that keeps a metric within its warning / critical thresholds.

    It waits `for_s` (ALERT_DEFAULT_FOR_S) in pending like the shipped rules on rates: its value is
    the mean of the few samples recorded in the window, and one busy second on a worker that has
    just started must not page anybody."""
    worse = "above" if pair.higher_is_worse else "below"
    return AlertRule(
        name=rule_name(pair),
        metric=pair.metric,
        comparison=comparison(pair),
        threshold=pair.warning,
        critical_threshold=pair.critical,
        severity="warning",
        cooldown_s=300.0,
        channels=("email", "slack"),
        description=f"{pair.metric} {worse} its warning / critical thresholds (ALERT_THRESHOLDS_CONFIG)",
        enabled=True,
        for_s=float(for_s),
        builtin=True,
        managed_by=MANAGED_THRESHOLDS,
    )
