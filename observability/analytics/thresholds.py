"""The warning and critical thresholds of source document 004 (system load, response time, AI
confidence, safety score): the one reader of the file named by `ALERT_THRESHOLDS_CONFIG`
(default `data/alert_thresholds.json`).

Both the live-monitoring drill-down (which colours a metric) and alerting (which turns each pair
into a built-in rule) read the file here, so they can never disagree on a threshold or on what a
malformed file means. It lives in analytics because alerting may import analytics, not the reverse.

The file maps a metric to `{"warning": w, "critical": c}` (an outer `{"thresholds": {...}}` wrapper
is accepted). When `critical` is above `warning`, higher values are worse (`system_load`); when
below, lower values are worse (`ai_confidence`). A missing or malformed file raises
`ThresholdsError` naming the file and the entry; `thresholds_or_defaults` is the forgiving form for
displays, which logs that error and falls back to the source document's values.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Source document 004, "Alert Thresholds Configuration" (without its product prefix).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "system_load": {"warning": 70.0, "critical": 85.0},
    "response_time": {"warning": 2000.0, "critical": 5000.0},
    "ai_confidence": {"warning": 0.6, "critical": 0.4},
    "safety_score": {"warning": 0.8, "critical": 0.6},
}


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

    def levels(self) -> dict[str, float]:
        return {"warning": self.warning, "critical": self.critical}


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
    if isinstance(raw, dict) and isinstance(raw.get("thresholds"), dict):
        raw = raw["thresholds"]
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


def thresholds_or_defaults(path: Path | str) -> dict[str, dict[str, float]]:
    """metric -> {"warning", "critical"}: the file's pairs over the source document's defaults;
    the defaults alone (with the error logged) when the file is missing or malformed."""
    out = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    try:
        pairs = load_thresholds(path)
    except ThresholdsError as exc:
        log.error("%s; showing the default thresholds", exc)
        return out
    out.update({name: pair.levels() for name, pair in pairs.items()})
    return out
