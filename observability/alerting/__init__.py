"""Alerting: rules, the alert lifecycle, escalation, and delivery through an outbox.

    from observability.alerting import AlertingService
    svc = AlertingService(store)
    svc.check_and_send_alerts({"error_rate": 0.12, "lead_bot.response_time_p95": 2600.0})
    svc.acknowledge_alert(alert_id, "alice")

Modules: `model` (rules, metrics, validation), `rules` (store, defaults, seeding), `thresholds`
(ALERT_THRESHOLDS_CONFIG), `samples` (metric values in), `inputs` (the worker's metric sources),
`evaluation` + `lifecycle` (state machine), `suppression` (inhibition, silences, cooldown),
`escalation`, `outbox` + `delivery`, `channels/` (email, Slack, webhook, PagerDuty, Opsgenie),
`silences`, `audit`, `service` (the facade), `steps` (worker steps).
"""

from observability.alerting.model import (
    CHANNELS,
    METRICS,
    SEVERITIES,
    AlertNotFound,
    AlertRule,
    ConditionStillHolds,
    InvalidTransition,
    RuleNotFound,
    RuleValidationError,
    SilenceNotFound,
)
from observability.alerting.rules import seed_default_rules
from observability.alerting.service import AlertingService

__all__ = [
    "CHANNELS", "METRICS", "SEVERITIES", "AlertNotFound", "AlertRule", "AlertingService", "ConditionStillHolds", "InvalidTransition",
    "RuleNotFound", "RuleValidationError", "SilenceNotFound", "seed_default_rules",
]  # fmt: skip
