"""What the worker evaluates each tick: every metric the enabled rules watch, from the store.

Sources, each optional in the sense that a failure of one is logged and makes the evaluation
incomplete (so nothing resolves for lack of data that tick):

- bot metrics: `BotMetricsCollector(store).feed_to_alerting(...)` and its `alert_metrics(now=)`
  extras when `observability.bot_metrics` is installed, else the same figures straight from the
  raw tables (error_rate, cache_hit_rate, <bot>.response_time_p95, handoff.response_time_p95,
  handoff.failure_rate, blocked_handoffs_1h, rate_limit_error_rate, <bot>.seconds_since_last_response);
- SLA: `PerformanceTracker(store).check_sla_compliance("1h")` when installed, as the worst
  P95/target ratio per bot (`<bot>.sla_p95_ratio`);
- recorded metrics (`system_metrics`) that rules name, e.g. system_load, ai_confidence,
  safety_score, response_time or any custom metric: the mean over ALERT_METRIC_WINDOW_S;
- custom alerts: recorded metrics whose metadata has threshold_warning / threshold_critical;
- alerting itself: alerts_fired_1h and notification_failures{channel}.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability import schema
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
from observability.alerting.rules import META_RULES, all_rules, sla_targets
from observability.settings import Settings
from observability.store import Store

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


class _Capture:
    """Stands in for the alerting service in `feed_to_alerting`: collects, evaluates nothing."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def update_metric(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        self.values[name] = value


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation (numpy's default, PostgreSQL's percentile_cont)."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def gather(store: Store, settings: Settings, now: datetime) -> Inputs:
    out = Inputs()
    stats: dict[str, Any] = {}
    with store.connect() as conn:
        rules = [r for r in all_rules(conn) if r.enabled]
    for name, fn in (
        ("bot_metrics", lambda: stats.update(bot_metrics(store, settings, now))),
        ("sla", lambda: merge_sla(stats, sla_ratios(store, settings, now), sla_targets(settings))),
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
    derived, problems = samples_mod.from_stats(stats, sla_targets(settings))
    out.samples = derived + out.samples
    out.problems.extend(problems)
    return out


# ---- bot metrics --------------------------------------------------------------------------------


def bot_metrics(store: Store, settings: Settings, now: datetime) -> dict[str, Any]:
    """The collector's alert metrics over the alerting window (the values `feed_to_alerting`
    pushes, from the same `alert_metrics` call), made safe for rules: a rate over no traffic is
    "no data", not 0%."""
    try:
        from observability.bot_metrics import BotMetricsCollector
    except ImportError:
        return fallback_bot_metrics(store, settings, now)
    collector = BotMetricsCollector(store)
    window_minutes = max(settings.alert_metric_window_s / 60.0, 1.0 / 60.0)
    try:
        values = dict(collector.alert_metrics(window_minutes=window_minutes, now=now))
    except TypeError:  # an older collector: let it push its values into a capture
        capture = _Capture()
        collector.feed_to_alerting(capture)
        values = dict(capture.values)
    stats = _flatten_extras(values)
    if values.get("interactions") == 0:
        stats["cache_hit_rate"] = None
        stats["error_rate"] = None
    for key, value in values.items():
        prefix, _, rest = key.partition(".")
        if rest == "interactions" and value == 0:  # an idle bot: its rates mean nothing
            for family in ("cache_hit_rate", "error_rate"):
                stats[f"{prefix}.{family}"] = None
    if values.get("handoff.count") == 0:
        stats["handoff.failure_rate"] = None
    # a bot idle for longer than the window still needs its silence measured
    for bot, seconds in last_responses(store, now).items():
        stats.setdefault(f"{bot}.seconds_since_last_response", seconds)
    return stats


def last_responses(store: Store, now: datetime) -> dict[str, float]:
    """Seconds since each bot's last interaction, for bots heard from in the last 24 hours."""
    try:
        from observability.bot_metrics import metric_prefix
    except ImportError:  # pragma: no cover

        def metric_prefix(bot: str) -> str:
            return bot

    bi = schema.bot_interactions
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(bi.c.bot, sa.func.max(bi.c.ts))
            .where(bi.c.ts > now - UNRESPONSIVE_LOOKBACK, bi.c.ts <= now)
            .group_by(bi.c.bot)
        ).all()
    return {metric_prefix(bot): max(0.0, (now - ts).total_seconds()) for bot, ts in rows}


def _flatten_extras(extras: Mapping[str, Any]) -> dict[str, Any]:
    """Accept both `{"lead_bot.x": v}` and `{"x": {"lead_bot": v}}`; drop what is not a metric."""
    out: dict[str, Any] = {}
    for key, value in extras.items():
        if isinstance(value, Mapping):
            out[key] = {k: v for k, v in value.items() if v is None or isinstance(v, (int, float))}
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[key] = value
    return out


def fallback_bot_metrics(store: Store, settings: Settings, now: datetime) -> dict[str, Any]:
    """The collector's alert inputs computed from the raw tables (used until it is installed)."""
    window = now - timedelta(seconds=settings.alert_metric_window_s)
    bi, ho, llm = schema.bot_interactions, schema.handoffs, schema.llm_calls
    stats: dict[str, Any] = {}
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(bi.c.bot, bi.c.duration_ms, bi.c.success, bi.c.cache_hit).where(
                bi.c.ts > window, bi.c.ts <= now
            )
        ).all()
        per_bot: dict[str, list[float]] = defaultdict(list)
        errors = hits = 0
        for bot, duration, success, hit in rows:
            per_bot[bot].append(float(duration))
            errors += 0 if success else 1
            hits += 1 if hit else 0
        stats["error_rate"] = errors / len(rows) if rows else None
        stats["cache_hit_rate"] = hits / len(rows) if rows else None
        for bot, durations in per_bot.items():
            stats[f"{bot}.response_time_p95"] = percentile(durations, 0.95)

        hrows = conn.execute(
            sa.select(ho.c.duration_ms, ho.c.success, ho.c.blocked).where(ho.c.ts > window, ho.c.ts <= now)
        ).all()
        if hrows:
            stats["handoff.response_time_p95"] = percentile([float(r[0]) for r in hrows], 0.95)
            stats["handoff.failure_rate"] = sum(1 for r in hrows if not r[1]) / len(hrows)
        else:
            stats["handoff.failure_rate"] = None
        stats["blocked_handoffs_1h"] = float(
            conn.execute(
                sa.select(sa.func.count()).where(
                    ho.c.blocked.is_(True), ho.c.ts > now - timedelta(hours=1), ho.c.ts <= now
                )
            ).scalar()
            or 0
        )
        err = sa.func.lower(sa.func.coalesce(llm.c.error_type, ""))
        is_rl = sa.or_(err.like("%rate%limit%"), err.like("%ratelimit%"), err == "429")
        total, limited = conn.execute(
            sa.select(sa.func.count(), sa.func.sum(sa.case((is_rl, 1), else_=0))).where(
                llm.c.ts > window, llm.c.ts <= now
            )
        ).one()
        stats["rate_limit_error_rate"] = (float(limited or 0) / total) if total else None
        last = conn.execute(
            sa.select(bi.c.bot, sa.func.max(bi.c.ts))
            .where(bi.c.ts > now - UNRESPONSIVE_LOOKBACK, bi.c.ts <= now)
            .group_by(bi.c.bot)
        ).all()
        stats["seconds_since_last_response"] = {bot: max(0.0, (now - ts).total_seconds()) for bot, ts in last}
    return stats


# ---- SLA ----------------------------------------------------------------------------------------


def _num(d: Mapping[str, Any], *paths: str) -> float | None:
    for path in paths:
        cur: Any = d
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        if isinstance(cur, (int, float)) and not isinstance(cur, bool):
            return float(cur)
    return None


def sla_ratios(store: Store, settings: Settings, now: datetime) -> dict[str, Any]:
    """Worst P95/target ratio per bot from the performance tracker over the alerting window
    (empty if the tracker is not installed)."""
    try:
        from observability.performance import PerformanceTracker
    except ImportError:
        return {}
    tracker = PerformanceTracker(store)
    window = max(int(settings.alert_metric_window_s), 1)
    try:
        report = tracker.check_sla_compliance(window=window, now=now)
    except TypeError:
        report = tracker.check_sla_compliance(window="1h")
    items = report.values() if isinstance(report, Mapping) else report
    worst: dict[str, tuple[float, str]] = {}
    for item in items or ():
        if not isinstance(item, Mapping):
            item = getattr(item, "__dict__", {})
        bot = item.get("bot") or item.get("bot_name")
        op = item.get("operation") or ""
        target = _num(
            item, "target_p95_ms", "p95_target_ms", "target_p95", "p95_target", "targets.p95", "target.p95"
        )
        actual = _num(item, "actual_p95_ms", "p95_ms", "actual_p95", "p95", "actual.p95", "actuals.p95")
        if not bot or not target or actual is None:
            continue
        ratio = actual / target
        if bot not in worst or ratio > worst[bot][0]:
            worst[bot] = (ratio, f"{op} P95 {actual:.0f} ms vs target {target:.0f} ms".strip())
    return {
        f"{bot}.sla_p95_ratio": {"value": ratio, "detail": detail, "labels": {"bot": bot}}
        for bot, (ratio, detail) in worst.items()
    }


def merge_sla(stats: dict[str, Any], tracker: Mapping[str, Any], targets: Mapping[str, float]) -> None:
    """Per bot, keep the worse of the tracker's ratio and the collector's P95 over its target."""
    for key, entry in tracker.items():
        bot = entry["labels"]["bot"]
        p95 = stats.get(f"{bot}.response_time_p95")
        target = targets.get(bot)
        if isinstance(p95, (int, float)) and target and p95 / target > entry["value"]:
            entry = {**entry, "value": p95 / target, "detail": f"P95 {p95:.0f} ms vs target {target:.0f} ms"}
        stats[key] = entry


# ---- recorded metrics ---------------------------------------------------------------------------


def recorded_metrics(store: Store, settings: Settings, now: datetime, rules: list[AlertRule]) -> list[Sample]:
    names = sorted({r.family for r in rules if r.family not in PRODUCED})
    if not names:
        return []
    sm = schema.system_metrics
    window = now - timedelta(seconds=settings.alert_metric_window_s)
    with store.connect() as conn:
        rows = dict(
            conn.execute(
                sa.select(sm.c.metric_name, sa.func.avg(sm.c.value))
                .where(sm.c.metric_name.in_(names), sm.c.ts > window, sm.c.ts <= now)
                .group_by(sm.c.metric_name)
            ).all()
        )
        if "response_time" in names and "response_time" not in rows:
            bi = schema.bot_interactions
            avg = conn.execute(
                sa.select(sa.func.avg(bi.c.duration_ms)).where(bi.c.ts > window, bi.c.ts <= now)
            ).scalar()
            if avg is not None:
                rows["response_time"] = avg
    return [make_sample(name, {}, None if rows.get(name) is None else float(rows[name])) for name in names]


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
        failures = channel_failures(conn, now)
    out = [make_sample("alerts_fired_1h", {}, float(fired or 0))]
    out.extend(make_sample("notification_failures", {"channel": c}, float(n)) for c, n in failures.items())
    return out
