"""What the worker evaluates each tick: every metric the enabled rules watch, from the store.

Sources, each optional in the sense that a failure of one is logged and makes the evaluation
incomplete (so nothing resolves for lack of data that tick):

- bot metrics: `BotMetricsCollector(store).alert_metrics(window_minutes=, now=)` over
  ALERT_METRIC_WINDOW_S (the values `feed_to_alerting` pushes: error_rate, cache_hit_rate,
  <bot>.response_time_p95, handoff.response_time_p95, handoff.failure_rate, blocked_handoffs_1h,
  rate_limit_error_rate, per-bot rates and counts), the number of LLM calls in the window, and
  <bot>.seconds_since_last_response measured up to `now`; rates over fewer events than
  ALERT_MIN_SAMPLES are "no data" (see `samples` and `evaluation`);
- SLA: the one SLA evaluation (`analytics.sla.evaluate`) over the same window, as the worst
  P95/target ratio per bot (`<bot>.sla_p95_ratio`), and nothing else: the collector's bot-level
  `<bot>.response_time_p95` is not turned into an SLA ratio here, so `sla_violation` fires only on
  a figure the Bot health table shows;
- the metrics threshold rules judge (`analytics.threshold_figures.judged_now`, which Live monitoring
  reads too): response_time, the mean LLM call latency over ALERT_METRIC_WINDOW_S; system_load,
  ai_confidence, safety_score or any custom metric, the mean of its recorded values over it;
- custom alerts: recorded metrics whose metadata has threshold_warning / threshold_critical;
- alerting itself: alerts_fired_1h and notification_failures{channel}.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.alerting import samples as samples_mod
from observability.alerting.delivery import channel_failures
from observability.alerting.model import (
    CUSTOM_METRIC_FAMILY,
    METRICS,
    AlertRule,
    Sample,
    make_sample,
    normalize_comparison,
)
from observability.alerting.rules import META_RULES, all_rules
from observability.analytics import sla, threshold_figures
from observability.analytics.bot_metrics import BotMetricsCollector, metric_prefix
from observability.settings import Settings
from observability.store import Store, schema

log = logging.getLogger(__name__)

# Families the bot-metric and alerting sources produce; every other family a rule names is looked
# up among recorded metrics.
PRODUCED = frozenset({
    "error_rate", "cache_hit_rate", "response_time_p95", "failure_rate", "sla_p95_ratio",
    "seconds_since_last_response", "blocked_handoffs_1h", "rate_limit_error_rate", "alerts_fired_1h",
    "notification_failures", CUSTOM_METRIC_FAMILY,
})  # fmt: skip
UNRESPONSIVE_LOOKBACK = timedelta(hours=24)  # bots silent longer than this are considered retired


@dataclass
class Inputs:
    samples: list[Sample] = field(default_factory=list)
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def gather(store: Store, settings: Settings, now: datetime) -> Inputs:
    out = Inputs()
    stats: dict[str, Any] = {}
    with store.connect() as conn:
        rules = [r for r in all_rules(conn) if r.enabled]
    for name, fn in (
        ("bot_metrics", lambda: stats.update(bot_metrics(store, settings, now))),
        ("sla", lambda: stats.update(sla_ratios(store, settings, now))),
        ("recorded", lambda: out.samples.extend(recorded_metrics(store, settings, now, rules))),
        ("custom", lambda: out.samples.extend(custom_metrics(store, settings, now))),
        ("alerting", lambda: out.samples.extend(alerting_metrics(store, now))),
    ):
        try:
            fn()
            out.sources[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - one failing source must not stop the others
            log.warning("alert input %s failed: %s", name, exc)
            out.sources[name] = f"error: {exc}"
            out.problems.append(f"{name}: {exc}")
            out.complete = False
    # no SLA targets here: `sla_p95_ratio` is the SLA evaluation's alone, never derived from the
    # collector's bot-level response time (a figure the Bot health table does not show)
    derived, problems = samples_mod.from_stats(stats, {})
    out.samples = derived + out.samples
    out.problems.extend(problems)
    return out


# ---- bot metrics --------------------------------------------------------------------------------


def bot_metrics(store: Store, settings: Settings, now: datetime) -> dict[str, Any]:
    """The collector's alert metrics over the alerting window (the values `feed_to_alerting`
    pushes, from the same `alert_metrics` call), plus `llm_calls`, the number of LLM calls in the
    window (the count behind `rate_limit_error_rate`, as `<bot>.interactions` and `handoff.count`
    are behind the other rates: see ALERT_MIN_SAMPLES in `samples`)."""
    window_minutes = max(settings.alert_metric_window_s, 1.0) / 60.0
    stats: dict[str, Any] = dict(
        BotMetricsCollector(store).alert_metrics(window_minutes=window_minutes, now=now)
    )
    stats["llm_calls"] = float(llm_call_count(store, now - timedelta(minutes=window_minutes), now))
    # silence measured up to `now` (also for a bot idle for longer than the window)
    for bot, seconds in last_responses(store, now).items():
        stats[f"{bot}.seconds_since_last_response"] = seconds
    return stats


def llm_call_count(store: Store, start: datetime, end: datetime) -> int:
    llm = schema.llm_calls
    with store.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).where(llm.c.ts >= start, llm.c.ts < end)).scalar() or 0
        )


def last_responses(store: Store, now: datetime) -> dict[str, float]:
    """Seconds since each bot's last interaction at or before `now`, for bots heard from in the
    last 24 hours."""
    bi = schema.bot_interactions
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(bi.c.bot, sa.func.max(bi.c.ts))
            .where(bi.c.ts > now - UNRESPONSIVE_LOOKBACK, bi.c.ts <= now)
            .group_by(bi.c.bot)
        ).all()
    return {metric_prefix(bot): max(0.0, (now - ts).total_seconds()) for bot, ts in rows}


# ---- SLA ----------------------------------------------------------------------------------------


def sla_ratios(store: Store, settings: Settings, now: datetime) -> dict[str, Any]:
    """Worst P95/target ratio per bot from the one SLA evaluation (`analytics.sla.evaluate`) over
    the alerting window, with the number of operations behind it: the worst among operations with
    at least ALERT_MIN_SAMPLES operations, else the worst of the few (the P95 of a handful of
    operations is their maximum, which `evaluation` does not let open an alert)."""
    evaluation = sla.evaluate(store, max(int(settings.alert_metric_window_s), 1), now=now)
    return {
        f"{bot}.sla_p95_ratio": {
            "value": r.p95_ratio, "labels": {"bot": bot}, "samples": r.count,
            "detail": f"{sla.pair_label(bot, r.operation)} P95 {r.actual['p95']:.0f} ms vs target {r.target['p95']:.0f} ms",
        }
        for bot, r in evaluation.worst_p95_ratio(settings.alert_min_samples).items()
    }  # fmt: skip


# ---- recorded metrics ---------------------------------------------------------------------------


def recorded_metrics(store: Store, settings: Settings, now: datetime, rules: list[AlertRule]) -> list[Sample]:
    """The families rules name that no other source produces: the figure each is judged by,
    defined once in `analytics.threshold_figures` (Live monitoring's status reads the same)."""
    names = sorted({r.family for r in rules if r.family not in PRODUCED})
    if not names:
        return []
    values = threshold_figures.judged_now(store, names, now, settings)
    return [make_sample(name, {}, values.get(name)) for name in names]


def custom_metrics(store: Store, settings: Settings, now: datetime) -> list[Sample]:
    """Recorded metrics carrying threshold_warning / threshold_critical in their metadata."""
    sm = schema.system_metrics
    window = now - timedelta(seconds=settings.alert_metric_window_s)
    warn = sm.c.metadata["threshold_warning"].as_string()
    crit = sm.c.metadata["threshold_critical"].as_string()
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(sm.c.metric_name, sm.c.value, sm.c.metadata)
            .where(sm.c.ts > window, sm.c.ts <= now, sa.or_(warn.is_not(None), crit.is_not(None)))
            .order_by(sm.c.ts)
        ).all()
    values: dict[str, list[float]] = defaultdict(list)
    latest_meta: dict[str, dict] = {}
    for name, value, meta in rows:
        if name in METRICS:
            continue  # built-in metrics have rules of their own
        values[name].append(float(value))
        latest_meta[name] = meta if isinstance(meta, dict) else {}
    out = []
    for name, vals in values.items():
        meta = latest_meta[name]
        warning, critical = _f(meta.get("threshold_warning")), _f(meta.get("threshold_critical"))
        if warning is None and critical is None:
            continue
        comparison = normalize_comparison(meta.get("comparison") or "")
        if comparison is None:
            if warning is not None and critical is not None:
                comparison = "lt" if critical < warning else "gt"
            else:
                comparison = "gt"
        out.append(
            make_sample(
                CUSTOM_METRIC_FAMILY,
                {"metric": name},
                sum(vals) / len(vals),
                thresholds=(warning, critical, comparison),
            )  # fmt: skip
        )
    return out


def _f(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ---- alerting itself -----------------------------------------------------------------------------


def alerting_metrics(store: Store, now: datetime) -> list[Sample]:
    a = schema.alerts
    with store.connect() as conn:
        fired = conn.execute(
            sa.select(sa.func.count()).where(
                a.c.fired_at > now - timedelta(hours=1),
                a.c.fired_at <= now,
                a.c.rule_name.not_in(sorted(META_RULES)),
            )
        ).scalar()
        failures = channel_failures(conn, now, include_tests=False)  # a failed test pages nobody
    out = [make_sample("alerts_fired_1h", {}, float(fired or 0))]
    out.extend(make_sample("notification_failures", {"channel": c}, float(n)) for c, n in failures.items())
    return out
