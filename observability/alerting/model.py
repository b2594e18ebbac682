"""What alerting talks about: rules, metrics, severities, channels, and their validation.

A rule compares one metric with a threshold (`gt`, `gte`, `lt`, `lte`, `eq`). A metric name is a
family (`error_rate`) optionally scoped to a bot (`lead_bot.response_time_p95`): the scope becomes
the `bot` label, so one rule on `response_time_p95` watches every bot and keeps one alert per bot,
while a rule on `lead_bot.response_time_p95` watches that bot only. A rule with a
`critical_threshold` has two levels: crossing `threshold` warns, crossing `critical_threshold` is
critical (the thresholds of source document 004 work this way).

`validate_rule` turns user input (a dict from the console, an `AlertRule` from code) into a clean
`AlertRule` or raises `RuleValidationError` with one message per bad field; nothing is written
before it passes.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
STATE_PENDING, STATE_FIRING, STATE_ACKNOWLEDGED, STATE_RESOLVED = (
    "pending", "firing", "acknowledged", "resolved",
)  # fmt: skip
OPEN_STATES = (STATE_PENDING, STATE_FIRING, STATE_ACKNOWLEDGED)
ACTIVE_STATES = (STATE_FIRING, STATE_ACKNOWLEDGED)

CHANNELS = ("email", "slack", "webhook", "pagerduty", "opsgenie")
MAX_LEVEL = 3
SYSTEM_ACTOR = "system"

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
}
COMPARISON_SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=="}
_COMPARISON_ALIASES = {v: k for k, v in COMPARISON_SYMBOLS.items()} | {"=": "eq"}

# managed_by values: rules the system keeps in step with something else
MANAGED_THRESHOLDS = "thresholds_config"  # thresholds come from ALERT_THRESHOLDS_CONFIG
MANAGED_CUSTOM = "custom_metrics"  # thresholds come from each metric's metadata
MANAGED_VOLUME = "alert_volume"
MANAGED_CHANNELS = "channel_health"
CUSTOM_METRIC_FAMILY = "custom_metric"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_SCOPE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str  # ratio | ms | s | count | percent | score | x (ratio to a target)
    description: str
    scoped: bool = False  # may be prefixed with a bot: `lead_bot.<name>`
    # a rate or percentile over the events of the alerting window: a breach over fewer than
    # ALERT_MIN_SAMPLES events is "no data", and the shipped rules on it wait ALERT_DEFAULT_FOR_S
    sampled: bool = False


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "error_rate", "ratio", "share of failed bot responses over the last 5 minutes", True, True
        ),
        MetricInfo("cache_hit_rate", "ratio", "share of responses served from cache", True, True),
        MetricInfo("response_time_p95", "ms", "95th percentile response time", True, True),
        MetricInfo("failure_rate", "ratio", "share of failed operations (handoff.failure_rate)", True, True),
        MetricInfo(
            "sla_p95_ratio", "x", "P95 latency divided by its SLA target (above 1 breaks the SLA)", True, True
        ),
        MetricInfo("seconds_since_last_response", "s", "seconds since the bot last answered", True),
        MetricInfo("blocked_handoffs_1h", "count", "circular handoffs blocked in the last hour"),
        MetricInfo(
            "rate_limit_error_rate", "ratio", "share of LLM calls refused for rate limits", True, True
        ),
        MetricInfo("system_load", "percent", "host CPU load recorded by the worker"),
        MetricInfo("response_time", "ms", "mean LLM call latency (measured from the calls)"),
        MetricInfo("ai_confidence", "score", "average AI confidence (recorded metric)"),
        MetricInfo("safety_score", "score", "average safety score (recorded metric)"),
        MetricInfo("alerts_fired_1h", "count", "alerts that fired in the last hour"),
        MetricInfo(
            "notification_failures", "count", "failed delivery attempts on a channel since its last success"
        ),
    )
}
# Units whose values are bounded: thresholds outside are a mistake we can name.
# Scopes that name a data source rather than a bot.
SOURCE_SCOPES = {"interactions": "bot_interactions"}
_UNIT_RANGE = {"ratio": (0.0, 1.0), "score": (0.0, 1.0), "percent": (0.0, 100.0)}

# Durations a rule or silence may have: beyond these a typo (3,000 years of `for`) would silently
# disable an alert, so the service refuses them and names the bound.
MAX_FOR_S = 24 * 3600.0  # a condition that must hold a day before it fires is a report, not an alert
MAX_COOLDOWN_S = 24 * 3600.0
MAX_KEEP_FIRING_S = 24 * 3600.0
MIN_SILENCE_S = 60.0
MAX_SILENCE_S = 30 * 24 * 3600.0  # a month of maintenance; longer is a disabled rule
# What a rule gets when its input leaves these out (the console's form says so beside the field).
DEFAULT_COOLDOWN_S = 300.0
DEFAULT_FOR_S = 0.0


def human_duration(seconds: float) -> str:
    """`86400` -> "24 h", `2592000` -> "30 days", for bounds in error messages."""
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# The console's label of each rule field: errors name the field as the form does ("Keep firing must
# be a number", not "keep_firing_for must be a number"); an API client has the field's key besides.
FIELD_LABELS = {
    "name": "Name", "metric": "Metric", "comparison": "Comparison", "threshold": "Threshold",
    "critical_threshold": "Critical at", "severity": "Severity", "cooldown_s": "Cooldown",
    "for_s": "For", "keep_firing_for_s": "Keep firing", "channels": "Channels", "description": "Description",
    "enabled": "Enabled",
}  # fmt: skip


def _bounded(value: float | None, key: str, what: str, hi: float, errors: dict[str, str]) -> None:
    if value is not None and key not in errors and not 0 <= value <= hi:
        errors[key] = f"{what} must be between 0 and {hi:g} s ({human_duration(hi)}), got {value:,.15g} s"


class RuleValidationError(ValueError):
    """Bad rule input. `errors` maps each bad field to a message a user can act on."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class AlertNotFound(LookupError):
    pass


class SilenceNotFound(LookupError):
    """No silence has that id (the API answers 404, as for an unknown alert)."""


class ConditionStillHolds(ValueError):
    """Resolve refused: the alert's condition still holds (it would fire again at once)."""


class RuleNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """The alert is not in a state where this action makes sense (e.g. resolving a resolved alert)."""


def parse_metric(name: str) -> tuple[str, dict[str, str]]:
    """`lead_bot.response_time_p95` -> ("response_time_p95", {"bot": "lead_bot"}); others unchanged."""
    scope, dot, family = name.partition(".")
    if dot and family in METRICS and METRICS[family].scoped and _SCOPE_RE.match(scope):
        if scope in SOURCE_SCOPES:  # e.g. interactions.rate_limit_error_rate: not a bot
            return family, {"source": SOURCE_SCOPES[scope]}
        return family, {"bot": scope}
    return name, {}


def normalize_comparison(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if v in COMPARISONS:
        return v
    return _COMPARISON_ALIASES.get(v)


def labels_key(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))


def dedup_key(rule_name: str, labels: Mapping[str, str]) -> str:
    """One open alert per rule and label set: `rule{k="v",...}` (hashed when very long)."""
    key = f"{rule_name}{{{labels_key(labels)}}}"
    if len(key) > 400:
        key = key[:350] + "#" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return key


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "no data"
    family, _ = parse_metric(metric)
    unit = METRICS[family].unit if family in METRICS else ""
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.0f} s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "count":
        return f"{value:.0f}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    threshold: float
    comparison: str = "gt"
    severity: str = "warning"
    cooldown_s: float = DEFAULT_COOLDOWN_S
    channels: tuple[str, ...] = ("slack",)
    description: str = ""
    enabled: bool = True
    for_s: float = DEFAULT_FOR_S
    keep_firing_for_s: float | None = None  # None: ALERT_KEEP_FIRING_FOR_S
    critical_threshold: float | None = None
    builtin: bool = False
    managed_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def family(self) -> str:
        return CUSTOM_METRIC_FAMILY if self.managed_by == MANAGED_CUSTOM else parse_metric(self.metric)[0]

    @property
    def fixed_labels(self) -> dict[str, str]:
        return {} if self.managed_by == MANAGED_CUSTOM else parse_metric(self.metric)[1]

    def breach(self, value: float | None) -> str | None:
        """The severity this value deserves under the rule, or None when the condition is clear."""
        return breach(value, self.comparison, self.threshold, self.critical_threshold, self.severity)

    def condition_text(self) -> str:
        if self.managed_by == MANAGED_CUSTOM:
            return "metric metadata threshold_warning / threshold_critical"
        sym = COMPARISON_SYMBOLS[self.comparison]
        text = f"{self.metric} {sym} {format_value(self.metric, self.threshold)}"
        if self.critical_threshold is not None:
            text += f" (critical {sym} {format_value(self.metric, self.critical_threshold)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def breach(
    value: float | None, comparison: str, threshold: float | None, critical: float | None, base: str
) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    cmp = COMPARISONS[comparison]
    if critical is not None and cmp(value, critical):
        return "critical"
    if threshold is not None and cmp(value, threshold):
        return base
    return None


RULE_FIELDS = (
    "name", "metric", "comparison", "threshold", "critical_threshold", "severity", "cooldown_s",
    "channels", "description", "enabled", "for_s", "keep_firing_for_s",
)  # fmt: skip


def _number(
    value: Any, what: str, errors: dict[str, str], key: str, *, optional: bool = False
) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        errors[key] = f"{what} is required"
        return None
    if isinstance(value, bool):
        errors[key] = f"{what} must be a number, got {value!r}"
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[key] = f"{what} must be a number, got {value!r:.40}"
        return None
    if not math.isfinite(number):
        errors[key] = f"{what} must be a finite number, got {value!r:.40}"
        return None
    return number


def _channels(value: Any, errors: dict[str, str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        errors["channels"] = f"Channels must be a list of channel names ({', '.join(CHANNELS)})"
        return ()
    out: list[str] = []
    for ch in value:
        name = str(ch).strip().lower()
        if name not in CHANNELS:
            errors["channels"] = f"unknown channel {ch!r:.40}: channels are {', '.join(CHANNELS)}"
            return ()
        if name not in out:
            out.append(name)
    if not out:
        errors["channels"] = f"at least one channel is required ({', '.join(CHANNELS)})"
    return tuple(out)


def validate_rule(
    data: Mapping[str, Any] | AlertRule,
    *,
    custom_metrics: Iterable[str] = (),
    existing: AlertRule | None = None,
) -> AlertRule:
    """Check rule input and return a clean AlertRule; raise RuleValidationError listing every problem.

    `existing` is the stored rule when editing: unspecified fields keep its values, and managed
    rules refuse changes to what they are managed by. `custom_metrics` are metric names recorded
    in `system_metrics`, which rules may watch besides the built-in families.
    """
    raw = data.to_dict() if isinstance(data, AlertRule) else dict(data)
    unknown = set(raw) - set(RULE_FIELDS) - {
        "builtin", "managed_by", "created_at", "updated_at", "updated_by",
    }  # fmt: skip
    errors: dict[str, str] = {}
    if unknown:
        errors["fields"] = f"unknown field(s): {', '.join(sorted(unknown))}"
    base = existing.to_dict() if existing else {}
    merged = {**base, **{k: v for k, v in raw.items() if k in RULE_FIELDS}}

    name = merged.get("name")
    if existing is not None and name != existing.name:
        errors["name"] = "a rule cannot be renamed; create a new rule and delete this one"
    elif not isinstance(name, str) or not _NAME_RE.match(name.strip()):
        errors["name"] = "Name must be 1-100 characters: letters, digits, '_', '.', '-'"
    else:
        name = name.strip()

    managed = existing.managed_by if existing else None
    metric = merged.get("metric")
    if managed is not None and existing is not None:
        for key in ("metric",) + (("threshold", "critical_threshold", "comparison") if managed in (
            MANAGED_THRESHOLDS, MANAGED_CUSTOM) else ()):  # fmt: skip
            if (
                key in raw
                and raw[key] != base.get(key)
                and not (key in ("threshold", "critical_threshold") and _same_number(raw[key], base.get(key)))
            ):
                where = {
                    MANAGED_THRESHOLDS: "the thresholds file (ALERT_THRESHOLDS_CONFIG)",
                    MANAGED_CUSTOM: "each metric's threshold_warning / threshold_critical metadata",
                }.get(managed, "the system")
                errors[key] = f"{FIELD_LABELS[key]} of built-in rule {existing.name!r} comes from {where}"
    elif not isinstance(metric, str) or not metric.strip():
        errors["metric"] = "Metric is required"
    else:
        metric = metric.strip()
        family, _ = parse_metric(metric)
        known = family in METRICS or metric in set(custom_metrics)
        if not known:
            names = ", ".join(sorted(METRICS))
            errors["metric"] = (
                f"unknown metric {metric!r:.60}: use one of {names} (optionally prefixed by a bot, "
                "e.g. lead_bot.response_time_p95) or a metric recorded with record_metric"
            )

    comparison = normalize_comparison(merged.get("comparison", "gt"))
    if comparison is None:
        errors["comparison"] = f"Comparison must be one of {', '.join(COMPARISONS)} (or > >= < <= ==)"

    threshold = _number(merged.get("threshold"), "Threshold", errors, "threshold")
    critical = _number(
        merged.get("critical_threshold"), "Critical at", errors, "critical_threshold", optional=True
    )
    if managed != MANAGED_CUSTOM and isinstance(metric, str) and "metric" not in errors:
        family, _ = parse_metric(metric)
        unit = METRICS[family].unit if family in METRICS else None
        for key, value in (("threshold", threshold), ("critical_threshold", critical)):
            if value is None or key in errors:
                continue
            if unit in _UNIT_RANGE:
                lo, hi = _UNIT_RANGE[unit]
                if not lo <= value <= hi:
                    hint = " (rates are fractions: 5% is 0.05)" if unit == "ratio" else ""
                    errors[key] = (
                        f"{FIELD_LABELS[key]} {value:g} for {metric} must be between {lo:g} and {hi:g}{hint}"
                    )
            elif unit in ("ms", "s", "count", "x") and value < 0:
                errors[key] = f"{FIELD_LABELS[key]} {value:g} for {metric} must not be negative"
    if (
        critical is not None and threshold is not None and comparison is not None
        and "critical_threshold" not in errors and managed != MANAGED_CUSTOM
        and not (COMPARISONS[comparison](critical, threshold) or critical == threshold)
    ):  # fmt: skip
        errors["critical_threshold"] = (
            f"Critical at {critical:g} must be beyond the Threshold {threshold:g} (the warning level) "
            f"in the direction of the comparison ({COMPARISON_SYMBOLS[comparison]})"
        )

    severity = merged.get("severity", "warning")
    if severity not in SEVERITIES:
        errors["severity"] = f"Severity must be one of {', '.join(SEVERITIES)}"

    cooldown = _number(merged.get("cooldown_s", DEFAULT_COOLDOWN_S), "Cooldown", errors, "cooldown_s")
    _bounded(cooldown, "cooldown_s", "Cooldown", MAX_COOLDOWN_S, errors)
    for_s = _number(merged.get("for_s", DEFAULT_FOR_S), "For", errors, "for_s")
    _bounded(for_s, "for_s", "For", MAX_FOR_S, errors)
    keep = _number(merged.get("keep_firing_for_s"), "Keep firing", errors, "keep_firing_for_s", optional=True)
    _bounded(keep, "keep_firing_for_s", "Keep firing", MAX_KEEP_FIRING_S, errors)

    channels = _channels(merged.get("channels", ("slack",)), errors)
    description = merged.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        errors["description"] = "Description must be text of at most 2000 characters"
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        errors["enabled"] = "Enabled must be true or false"

    if errors:
        raise RuleValidationError(errors)
    return AlertRule(
        name=name,
        metric=metric,
        threshold=float(threshold),
        comparison=comparison,
        severity=severity,
        cooldown_s=float(cooldown),
        channels=channels,
        description=description,
        enabled=enabled,
        for_s=float(for_s),
        keep_firing_for_s=keep,
        critical_threshold=critical,
        builtin=existing.builtin if existing else bool(raw.get("builtin", False)),
        managed_by=managed if existing else raw.get("managed_by"),
        created_at=existing.created_at if existing else None,
    )


def _same_number(a: Any, b: Any) -> bool:
    try:
        return a is None and b is None or float(a) == float(b)
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Sample:
    """One value of one series: a metric family, its labels, and optionally its own thresholds."""

    metric: str
    labels: tuple[tuple[str, str], ...] = ()
    value: float | None = None
    detail: str | None = None
    # custom metrics carry their thresholds: (warning, critical, comparison)
    thresholds: tuple[float | None, float | None, str] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    # how many events a rate or percentile is computed over, when known (ALERT_MIN_SAMPLES)
    samples: float | None = None

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def make_sample(
    metric: str, labels: Mapping[str, str] | None = None, value: float | None = None, **kw: Any
) -> Sample:
    return Sample(metric, tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items())), value, **kw)
