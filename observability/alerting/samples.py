"""Turning metric values, however they arrive, into samples: (metric family, labels, value).

Accepted shapes (mixable in one dict):

    {"error_rate": 0.07}                                   one series, no labels
    {"lead_bot.response_time_p95": 2400.0}                 family response_time_p95, bot=lead_bot
    {"seconds_since_last_response": {"lead_bot": 420}}     one series per bot
    {"x": {"value": 0.3, "labels": {...}, "detail": "..."}} explicit labels and a note
    {"any key": {"metric": "error_rate", "value": 0.3, "labels": {...}}}  explicit metric too
    {"error_rate": None}                                   "no value now": the series is clear

Derived series: `<bot>.response_time_p95` with a P95 target in `data/alert_rules.json` yields
`<bot>.sla_p95_ratio` (value / target) unless that ratio was given; `<x>.success_rate` yields
`<x>.failure_rate` unless given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from observability.alerting.model import Sample, make_sample, parse_metric

log = logging.getLogger(__name__)


def _number(value: Any) -> float | None | bool:
    """float, None (no value), or False (not a number at all)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    v = float(value)
    return v if math.isfinite(v) else None


def from_stats(
    stats: Mapping[str, Any] | Iterable[Sample], sla_targets: Mapping[str, float] | None = None
) -> tuple[list[Sample], list[str]]:
    """Samples from a stats mapping (or pass-through Samples); returns (samples, problems)."""
    samples: list[Sample] = []
    problems: list[str] = []
    items = stats.items() if isinstance(stats, Mapping) else ((None, s) for s in stats)
    for key, raw in items:
        if isinstance(raw, Sample):
            samples.append(raw)
            continue
        if not isinstance(key, str) or not key:
            problems.append(f"metric name must be a non-empty string, got {key!r:.40}")
            continue
        family, labels = parse_metric(key)
        if isinstance(raw, Mapping) and "value" in raw:
            v = _number(raw.get("value"))
            if v is False:
                problems.append(f"{key}: value must be a number, got {raw.get('value')!r:.40}")
                continue
            if raw.get("metric"):
                family, labels = parse_metric(str(raw["metric"]))
            labels = {**labels, **{str(k): str(x) for k, x in (raw.get("labels") or {}).items()}}
            samples.append(make_sample(family, labels, v, detail=raw.get("detail")))
        elif isinstance(raw, Mapping):
            for scope, sub in raw.items():
                v = _number(sub)
                if v is False:
                    problems.append(f"{key}.{scope}: value must be a number, got {sub!r:.40}")
                    continue
                samples.append(make_sample(family, {**labels, "bot": str(scope)}, v))
        else:
            v = _number(raw)
            if v is False:
                problems.append(f"{key}: value must be a number, got {raw!r:.40}")
                continue
            samples.append(make_sample(family, labels, v))
    samples.extend(_derived(samples, sla_targets or {}))
    for p in problems:
        log.warning("alerting input ignored: %s", p)
    return samples, problems


def _derived(samples: list[Sample], targets: Mapping[str, float]) -> list[Sample]:
    have = {(s.metric, s.labels) for s in samples}
    out: list[Sample] = []
    for s in samples:
        bot = s.label_dict.get("bot")
        if s.metric == "response_time_p95" and bot in targets and targets[bot] > 0:
            if ("sla_p95_ratio", s.labels) not in have:
                ratio = None if s.value is None else s.value / targets[bot]
                detail = None if s.value is None else f"P95 {s.value:.0f} ms vs target {targets[bot]:.0f} ms"
                out.append(Sample("sla_p95_ratio", s.labels, ratio, detail))
        elif s.metric == "success_rate" and ("failure_rate", s.labels) not in have:
            out.append(Sample("failure_rate", s.labels, None if s.value is None else 1.0 - s.value))
    return out
