"""Warning and critical thresholds of source document 004 (system load, response time, AI
confidence, safety score), read from the JSON file named by `ALERT_THRESHOLDS_CONFIG`
(default `data/alert_thresholds.json`).

The file maps a metric to `{"warning": w, "critical": c}`. When `critical` is above `warning`,
higher values are worse (`system_load`); when below, lower values are worse (`ai_confidence`).
Each entry becomes a built-in two-level rule (`high_system_load`, `low_ai_confidence`, ...) whose
thresholds the evaluation keeps in step with the file; the console can toggle those rules and
change their channels, not their thresholds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from observability.alerting.model import MANAGED_THRESHOLDS, AlertRule


class ThresholdsError(ValueError):
    """The thresholds file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class ThresholdPair:
    metric: str
    warning: float
    critical: float

    @property
    def higher_is_worse(self) -> bool:
        return self.critical >= self.warning

    @property
    def comparison(self) -> str:
        return "gt" if self.higher_is_worse else "lt"

    @property
    def rule_name(self) -> str:
        return ("high_" if self.higher_is_worse else "low_") + self.metric


_cache: dict[Path, tuple[float, dict[str, ThresholdPair]]] = {}


def load_thresholds(path: Path | str) -> dict[str, ThresholdPair]:
    """Parse and check the file (cached until its modification time changes)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise ThresholdsError(f"thresholds file {path} cannot be read: {exc.strerror}") from exc
    hit = _cache.get(path)
    if hit and hit[0] == mtime:
        return hit[1]
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ThresholdsError(f"thresholds file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ThresholdsError(f"thresholds file {path} must hold a JSON object of metric -> levels")
    out: dict[str, ThresholdPair] = {}
    for metric, levels in raw.items():
        if not isinstance(levels, dict) or not {"warning", "critical"} <= set(levels):
            raise ThresholdsError(f"{path}: {metric!r} needs both 'warning' and 'critical'")
        try:
            w, c = float(levels["warning"]), float(levels["critical"])
        except (TypeError, ValueError) as exc:
            raise ThresholdsError(f"{path}: thresholds of {metric!r} must be numbers") from exc
        if not (math.isfinite(w) and math.isfinite(c)):
            raise ThresholdsError(f"{path}: thresholds of {metric!r} must be finite numbers")
        out[metric] = ThresholdPair(metric, w, c)
    _cache[path] = (mtime, out)
    return out


def threshold_rule(pair: ThresholdPair) -> AlertRule:
    worse = "above" if pair.higher_is_worse else "below"
    return AlertRule(
        name=pair.rule_name,
        metric=pair.metric,
        comparison=pair.comparison,
        threshold=pair.warning,
        critical_threshold=pair.critical,
        severity="warning",
        cooldown_s=300.0,
        channels=("email", "slack"),
        description=f"{pair.metric} {worse} its warning / critical thresholds (ALERT_THRESHOLDS_CONFIG)",
        enabled=True,
        builtin=True,
        managed_by=MANAGED_THRESHOLDS,
    )
