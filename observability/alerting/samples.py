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

Minimum sample size: a rate or a percentile over few events says little (1 failure in 3
interactions is 33%; the P95 of 3 durations is their maximum). Each such sample carries its count
(`Sample.samples`) and `evaluation` judges it: below ALERT_MIN_SAMPLES a breach is "no data" (it
opens nothing and keeps an open alert as it is), while a clear value still counts as clear; over
no event at all the value is None (clear: nothing failed, nothing was slow). The count comes from the same stats, as
the bot metrics collector names them, or from an explicit `"samples"` next to `"value"`:

    error_rate, cache_hit_rate             interactions        <bot>.error_rate: <bot>.interactions
    <x>.failure_rate                       <x>.count           (handoff.failure_rate: handoff.count)
    rate_limit_error_rate                  llm_calls           [source=bot_interactions]: interactions
    <bot>.response_time_p95, .sla_p95_ratio  <bot>.interactions, else <bot>.count (handoff.count)
    {"error_rate": {"value": 0.3, "samples": 3}}

A rate or percentile with no known count is judged on its value alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
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
    """Samples from a stats mapping (or pass-through Samples); returns (samples, problems).
    Rates and percentiles get their event counts (see the module docstring)."""
    samples: list[Sample] = []
    problems: list[str] = []
    counts: dict[Any, float] = {}
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
            sample = make_sample(family, labels, v, detail=raw.get("detail"))
            n = _number(raw.get("samples"))
            if n is False:
                problems.append(f"{key}: samples must be a number, got {raw.get('samples')!r:.40}")
                continue
            if n is not None:
                counts[(sample.metric, sample.labels)] = n
            samples.append(sample)
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
            if v is not None:
                counts[key] = v
    samples.extend(_derived(samples, sla_targets or {}))
    samples = attach_counts(samples, counts)
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


def count_keys(sample: Sample) -> tuple[str, ...]:
    """Stats keys that may hold the number of events `sample` is a rate or percentile over (the
    first present counts); empty when it is neither."""
    labels = sample.label_dict
    bot, source = labels.get("bot"), labels.get("source")
    family = sample.metric
    if family == "rate_limit_error_rate":
        if source:
            return ("interactions",) if source == "bot_interactions" else ()
        return (f"{bot}.llm_calls",) if bot else ("llm_calls",)
    if source or family not in (
        "error_rate",
        "cache_hit_rate",
        "failure_rate",
        "response_time_p95",
        "sla_p95_ratio",
    ):
        return ()
    if not bot:
        return ("interactions",) if family in ("error_rate", "cache_hit_rate") else ()
    # a bot's interactions; the handoff service's handoffs (handoff.count)
    return (f"{bot}.interactions", f"{bot}.count")


def attach_counts(samples: list[Sample], counts: Mapping[Any, float]) -> list[Sample]:
    """Each rate or percentile with a known count carries it; over no event at all it has no value."""
    out: list[Sample] = []
    for s in samples:
        n = counts.get((s.metric, s.labels))
        for key in count_keys(s) if n is None else ():
            n = counts.get(key)
            if n is not None:
                break
        if n is not None:
            s = replace(s, samples=n)
            if n <= 0 and s.value is not None:
                s = replace(s, value=None, detail="no events in the window")
        out.append(s)
    return out
