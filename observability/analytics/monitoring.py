"""What is happening right now: the console's overview and the live metrics and per-metric
drill-down of source document 004, as plain functions.

`overview_kpis(store)` gives the home page's headline, `bots_now` its per-bot table, `slow_bots`
which bot breaches its SLA since when, `open_alerts` the alerts still open and `known_bots` the bots
the filters offer. `live_metrics(store)` answers like the document's `GET /monitoring/metrics`;
`drill_down(store, metric, timeframe)` like `GET /monitoring/metrics/detailed/{metric}`: history,
P50/P95/P99, thresholds, trend direction, percentage change and an `is_concerning` flag. The pure
parts (`trend_analysis`, `threshold_status`) are testable without a store.

LLM figures (response time, Claude requests and cost) come from `LLMObservabilityService`, operation
latency and SLAs from `PerformanceTracker`, thresholds from `observability.analytics.thresholds`;
the rest (conversations, messages, recorded gauges, interventions, alerts) are counted here in SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from observability.analytics import sla, threshold_figures
from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.performance import PerformanceTracker
from observability.analytics.thresholds import thresholds_or_defaults
from observability.analytics.window import chart_granularity, source_note
from observability.settings import get_settings
from observability.store import Store, schema
from observability.store.control_state import active_where, system_stopped
from observability.store.sqlhelpers import GRANULARITIES, epoch_bucket, group_percentiles
from observability.timeutil import Window, floor_day, resolve_now, utcnow, window_seconds

TIMEFRAMES = ("1h", "6h", "24h", "7d", "30d")
FIRING_STATES = ("firing", "acknowledged")

STABLE_PCT = 1.0  # |change| below this is "stable"
CONCERNING_PCT = 10.0  # a move this large in the bad direction is concerning


@dataclass(frozen=True)
class MetricDef:
    name: str
    label: str
    unit: str  # "", "ms", "%", "usd", "score"
    kind: str  # gauge (system_metrics) | count | latency | cost
    bad_direction: str | None  # "up", "down" or None (neither direction is bad in itself)
    live_key: str  # key in live_metrics() giving the current value
    now_metric: str = ""  # catalog name of the current value (its label says its window)
    series_metric: str = ""  # catalog name of one point of the history (per interval)

    @property
    def has_percentiles(self) -> bool:
        """Percentiles of measured values (latency, gauges); never of per-interval counts, which
        mean nothing ("P50 19 conversations")."""
        return self.kind in ("gauge", "latency")


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("conversations", "Active conversations", "", "count", None, "conversations_active",
                  "active_conversations", "conversations_per_bucket"),
        MetricDef("messages", "Messages", "", "count", None, "messages_processed", "messages_today", "messages"),
        MetricDef("ai_confidence", "AI confidence", "score", "gauge", "down", "ai_confidence_avg",
                  "ai_confidence_alert", "ai_confidence"),
        MetricDef("safety_score", "Safety score", "score", "gauge", "down", "safety_score_avg",
                  "safety_score_alert", "safety_score"),
        MetricDef("response_time", "Response time", "ms", "latency", "up", "response_time_now",
                  "response_time_alert_ms", "llm_mean_bucket_ms"),
        MetricDef("system_load", "System load", "%", "gauge", "up", "system_load", "system_load_alert",
                  "system_load_mean"),
        MetricDef("human_interventions", "Human interventions", "", "count", "up", "human_interventions",
                  "human_interventions_today", "human_interventions"),
        MetricDef("alerts", "Alerts fired", "", "count", "up", "alert_count", "firing_alerts", "alerts_fired"),
        MetricDef("claude_requests", "Claude requests", "", "count", None, "claude_requests_today",
                  "claude_requests_today", "claude_requests"),
        MetricDef("claude_cost", "Claude cost", "usd", "cost", "up", "claude_cost_today", "claude_cost_today_usd",
                  "claude_cost_usd"),
    )
}  # fmt: skip


# ---- pure parts -------------------------------------------------------------------------------


def threshold_status(
    value: float | None, thresholds: Mapping[str, float] | None, bad_direction: str | None
) -> str:
    """'ok', 'warning' or 'critical': strictly beyond a threshold, as the threshold rules compare
    (`gt` / `lt`): a value equal to it is not a breach (the page said "warning" at exactly 70 %
    system load while high_system_load stayed quiet)."""
    if value is None or not thresholds or bad_direction is None:
        return "ok"
    for level in ("critical", "warning"):
        t = thresholds.get(level)
        if t is None:
            continue
        if (bad_direction == "up" and value > t) or (bad_direction == "down" and value < t):
            return level
    return "ok"


def trend_analysis(
    values: Sequence[float | None],
    bad_direction: str | None,
    status: str = "ok",
) -> dict:
    """Compare the mean of the later half of a series with the earlier half.

    direction: up / down / stable (|change| < 1 %); percentage_change relative to the earlier
    half, or None when the earlier half is zero (a rise from nothing has no percentage: a 30-day
    chart over a store holding a day read "+100 %"); is_concerning when the move is >= 10 % in
    the metric's bad direction or the current value is past a threshold, so a rise from zero
    alone is not, and the page does not call "concerning" what its status calls "ok"."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if len(vals) < 2:
        return {"direction": "stable", "percentage_change": 0.0, "is_concerning": status != "ok"}
    half = len(vals) // 2
    prev, cur = float(np.mean(vals[:half])), float(np.mean(vals[half:]))
    if prev == 0:
        direction = "stable" if cur == 0 else ("up" if cur > 0 else "down")
        return {"direction": direction, "percentage_change": 0.0 if cur == 0 else None,
                "is_concerning": status != "ok"}  # fmt: skip
    pct = (cur - prev) / abs(prev) * 100.0
    direction = "stable" if abs(pct) < STABLE_PCT else ("up" if pct > 0 else "down")
    bad_move = (bad_direction == "up" and pct >= CONCERNING_PCT) or (
        bad_direction == "down" and pct <= -CONCERNING_PCT
    )
    return {
        "direction": direction,
        "percentage_change": round(pct, 2),
        "is_concerning": bool(bad_move or status != "ok"),
    }


# ---- counts -----------------------------------------------------------------------------------


def is_claude(provider: str | None, model: str | None) -> bool:
    """Claude calls: Anthropic's API, or a model named claude-* through another provider."""
    return (provider or "").lower() == "anthropic" or (model or "").startswith("claude")


def active_conversation_count(store: Store, now: datetime | None = None) -> int:
    """Conversations active now (`control_state.active_where`: activity in the last 15 minutes, not
    stopped, none during a system-wide stop)."""
    c = schema.conversations
    with store.connect() as conn:
        where = active_where(system_stopped(conn), now)
        return int(conn.execute(sa.select(sa.func.count()).select_from(c).where(where)).scalar() or 0)


def firing_alert_count(store: Store) -> int:
    """Alerts firing or acknowledged (not yet resolved)."""
    a = schema.alerts
    with store.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(a).where(a.c.state.in_(FIRING_STATES))
            ).scalar()
            or 0
        )


# ---- overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewKpis:
    requests_per_min: float
    error_rate: float
    p95_latency_ms: float | None
    spend_today_usd: float
    active_conversations: int
    firing_alerts: int
    requests_last_5m: int


def overview_kpis(store: Store, now: datetime | None = None) -> OverviewKpis:
    """Home page headline: requests/min and error rate over the last 5 minutes
    (LLMObservabilityService.dashboard(300)), P95 latency over the last hour (exact,
    latency_report), spend today (UTC), active conversations (last 15 min), firing or acknowledged
    alerts."""
    now = resolve_now(now)
    svc = LLMObservabilityService(store)
    five = svc.dashboard(300, now=now)
    hour = svc.latency_report(None, 3600, now=now)
    return OverviewKpis(
        requests_per_min=five.requests_per_minute,
        error_rate=five.error_rate,
        p95_latency_ms=hour.p95 if hour.count else None,
        spend_today_usd=svc.spend_today_usd(now=now),
        active_conversations=active_conversation_count(store, now),
        firing_alerts=firing_alert_count(store),
        requests_last_5m=five.total_requests,
    )


def known_bots(store: Store) -> list[str]:
    """Bots seen in the rollups and raw operations (for filters); cheap. The handoff service
    (`sla.HANDOFF_STEP`) is a step between bots, not a bot, and is left out."""
    names: set[str] = set()
    with store.connect() as conn:
        for t in (schema.rollup_llm_hour, schema.rollup_ops_hour):
            names.update(r[0] for r in conn.execute(sa.select(t.c.bot).distinct()) if r[0])
        if not names:
            since = utcnow() - timedelta(hours=1)
            for t in (schema.llm_calls, schema.bot_operations):
                names.update(
                    r[0] for r in conn.execute(sa.select(t.c.bot).where(t.c.ts >= since).distinct()) if r[0]
                )
    return sorted(names - {sla.HANDOFF_STEP})


OPEN_ALERT_COLUMNS = ("id", "state", "severity", "rule", "message", "value", "threshold", "fired_at",
                      "acknowledged_by", "escalation_level")  # fmt: skip


def open_alerts(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Alerts firing or acknowledged, critical first, newest first (keys: OPEN_ALERT_COLUMNS)."""
    a = schema.alerts
    sev = sa.case((a.c.severity == "critical", 0), (a.c.severity == "warning", 1), else_=2)
    stmt = (
        sa.select(a.c.id, a.c.state, a.c.severity, a.c.rule_name, a.c.message, a.c.value, a.c.threshold,
                  a.c.fired_at, a.c.acknowledged_by, a.c.escalation_level)
        .where(a.c.state.in_(FIRING_STATES))
        .order_by(sev, a.c.fired_at.desc())
        .limit(limit)
    )  # fmt: skip
    with store.connect() as conn:
        return [dict(zip(OPEN_ALERT_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]


def slow_bots(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
              now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Which bot is slow, since when, and what it costs: one row per (bot, operation) whose P95 in
    its latest chart bucket (one of the last five) is above its SLA target, with the start of that
    breach (`breaching_since`: the first bucket of the current run of breaching buckets; buckets
    without operations are skipped), its P95 now (`p95_now`, against `target_p95`), the number of
    breaching `buckets` and the bot's LLM spend over the window (`spend_usd`); longest breach
    first. From `bot_timeseries`, the SLA table and `cost_by_bot`."""
    now = resolve_now(now)
    tracker = PerformanceTracker(store)
    granularity = chart_granularity(window)
    series = tracker.bot_timeseries(window, granularity, bot=list(bots) if bots else None, by_operation=True,
                                    now=now)  # fmt: skip
    targets = {(t.bot, t.operation): t.p95_ms for t in tracker.sla_targets}
    per: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in series:
        if (r["bot"], r["operation"]) in targets and r["p95"] is not None:
            per[(r["bot"], r["operation"])].append(r)
    if not per:
        return []
    last = max(r["bucket"] for rows in per.values() for r in rows)
    recent = last - timedelta(seconds=5 * GRANULARITIES[granularity])
    spend = LLMObservabilityService(store).cost_by_bot(window, now=now)
    out = []
    for (bot, op), rows in sorted(per.items()):
        target = targets[(bot, op)]
        if rows[-1]["bucket"] < recent or rows[-1]["p95"] <= target:
            continue  # no recent data for this pair, or within target now
        i = len(rows) - 1
        while i > 0 and rows[i - 1]["p95"] > target:
            i -= 1
        out.append({"bot": bot, "operation": op, "p95_now": float(rows[-1]["p95"]), "target_p95": float(target),
                    "breaching_since": rows[i]["bucket"], "buckets": len(rows) - i,
                    "spend_usd": float(spend.get(bot, 0.0))})  # fmt: skip
    return sorted(out, key=lambda r: r["breaching_since"])


def sla_breaches_now(store: Store, now: datetime | None = None) -> list[sla.SlaRow]:
    """`sla.alert_breaches` at `now`: the breaches the `sla_violation` rule acts on."""
    return sla.alert_breaches(store, now=resolve_now(now))


def bots_now(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per bot: LLM requests (`requests_1h`), error rate (`error_rate_1h`) and `p50_ms` /
    `p95_ms` over the last hour (exact), `spend_today_usd` (UTC), and the operations breaching their
    SLA now (`slow_operations`: the SLA evaluation over the alert window, `sla.evaluate`, counting the
    pairs with at least ALERT_MIN_SAMPLES operations, as the `sla_violation` rule does)."""
    now = resolve_now(now)
    svc = LLMObservabilityService(store)
    hour = {r["bot"]: r for r in svc.cost_breakdown("bot", 3600, now=now, percentiles=True)}
    since_midnight = (now - floor_day(now)).total_seconds()
    today = svc.cost_by_bot(since_midnight, now=now) if since_midnight > 0 else {}
    slow_ops: dict[str, list[str]] = defaultdict(list)
    for r in sla_breaches_now(store, now):
        slow_ops[r.bot].append(r.operation)
    # a bot breaching its SLA is listed even without LLM calls (else its breach had no row to show)
    names = sorted(b for b in set(hour) | set(today) | set(slow_ops) if b is not None)
    if not names:
        return []
    rows = []
    for b in names:
        h = hour.get(b, {})
        rows.append({"bot": b, "requests_1h": int(h.get("requests", 0)), "error_rate_1h": float(h.get("error_rate", 0.0)),
                     "p50_ms": h.get("p50"), "p95_ms": h.get("p95"), "spend_today_usd": float(today.get(b, 0.0)),
                     "slow_operations": ", ".join(slow_ops.get(b, []))})  # fmt: skip
    return rows


# ---- live metrics (source document 004) --------------------------------------------------------


def live_metrics(store: Store, now: datetime | None = None) -> dict:
    """The live figures of source document 004 (its GET /monitoring/metrics response), plus
    `response_time_now`, the mean LLM call latency of the alert window: the figure the
    `high_response_time` rule judges (`threshold_figures.judged_now`; `response_time_avg` is the
    last hour's mean, kept for the document's response shape)."""
    now = resolve_now(now)
    today = floor_day(now)
    hour_ago = now - timedelta(hours=1)
    c, m, sm, iv = schema.conversations, schema.messages, schema.system_metrics, schema.interventions
    llm = LLMObservabilityService(store)
    since_midnight = (now - today).total_seconds()
    claude = [
        r
        for r in (
            llm.cost_breakdown(("provider", "model"), since_midnight, now=now) if since_midnight > 0 else []
        )
        if is_claude(r["provider"], r["model"])
    ]
    last_hour = llm.totals(3600, now=now)
    judged = threshold_figures.judged_now(store, [threshold_figures.MEASURED_RESPONSE_TIME], now)
    with store.connect() as conn:
        # conversations with activity today, like "active conversations" (which reads the same
        # column over 15 minutes): counting those *started* today showed 0 beside hundreds of
        # today's messages whenever the conversations had begun before midnight
        conv_today = conn.execute(
            sa.select(sa.func.count())
            .select_from(c)
            .where(c.c.last_activity_at >= today, c.c.started_at <= now)
        ).scalar()
        msgs = conn.execute(
            sa.select(sa.func.count()).select_from(m).where(m.c.ts >= today, m.c.ts <= now)
        ).scalar()
        avgs = dict(
            conn.execute(
                sa.select(sm.c.metric_name, sa.func.avg(sm.c.value))
                .where(
                    sm.c.metric_name.in_(["ai_confidence", "safety_score"]),
                    sm.c.ts >= hour_ago,
                    sm.c.ts <= now,
                )
                .group_by(sm.c.metric_name)
            ).all()
        )
        load = conn.execute(
            sa.select(sm.c.value).where(sm.c.metric_name == "system_load", sm.c.ts <= now)
            .order_by(sm.c.ts.desc()).limit(1)
        ).scalar()  # fmt: skip
        interventions = conn.execute(
            sa.select(sa.func.count())
            .select_from(iv)
            .where(iv.c.action == "take_control", iv.c.created_at >= today)
        ).scalar()
    return {
        "conversations_active": active_conversation_count(store, now),
        "conversations_total_today": int(conv_today or 0),
        "messages_processed": int(msgs or 0),
        "ai_confidence_avg": None if avgs.get("ai_confidence") is None else float(avgs["ai_confidence"]),
        "safety_score_avg": None if avgs.get("safety_score") is None else float(avgs["safety_score"]),
        "human_interventions": int(interventions or 0),
        "alert_count": firing_alert_count(store),
        "system_load": None if load is None else float(load),
        "response_time_avg": last_hour["avg_latency_ms"] if last_hour["requests"] else None,
        "response_time_now": judged[threshold_figures.MEASURED_RESPONSE_TIME],
        "claude_requests_today": sum(r["requests"] for r in claude),
        "claude_cost_today": sum(r["cost_usd"] for r in claude),
        "timestamp": now.isoformat() + "Z",
    }


# ---- drill-down -------------------------------------------------------------------------------


@dataclass
class DrillDown:
    metric_name: str
    label: str
    unit: str
    timeframe: str
    current_value: float | None
    historical_data: pd.DataFrame  # columns ts, value
    percentile_data: dict[str, float | None]
    thresholds: dict[str, float]
    trend_analysis: dict
    status: str  # ok | warning | critical
    source: str
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The source document's response shape."""
        hist = [
            {
                "timestamp": pd.Timestamp(r.ts).isoformat() + "Z",
                "value": None if pd.isna(r.value) else float(r.value),
            }
            for r in self.historical_data.itertuples(index=False)
        ]
        return {
            "metric_name": self.metric_name,
            "current_value": self.current_value,
            "historical_data": hist,
            "percentile_data": self.percentile_data,
            "thresholds": self.thresholds,
            "trend_analysis": self.trend_analysis,
        }


def _history_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(
        [(int(r[0]), None if r[1] is None else float(r[1])) for r in rows], columns=["ts", "value"]
    )
    if not df.empty:
        df["ts"] = pd.to_datetime(df["ts"], unit="s")
        df = df.sort_values("ts").reset_index(drop=True)
    return df


def _fill_counts(
    df: pd.DataFrame, start: datetime, end: datetime, step: int, since: datetime | None = None
) -> pd.DataFrame:
    """Count series: buckets without rows are zero, not missing; but buckets before `since` (the
    store's first message: a 30-day chart over a store holding a day) are missing, not zero, so
    the chart and the trend do not count time the store did not exist as quiet time."""
    idx = pd.date_range(
        pd.Timestamp(start).floor(f"{step}s"), pd.Timestamp(end).floor(f"{step}s"), freq=f"{step}s"
    )
    s = df.set_index("ts")["value"] if not df.empty else pd.Series(dtype=float)
    s = s.reindex(idx, fill_value=0.0).astype(float)
    if since is not None:
        s[idx < pd.Timestamp(since).floor(f"{step}s")] = np.nan
    return pd.DataFrame({"ts": idx, "value": s.to_numpy(dtype=float)})


def _store_since(conn: sa.Connection) -> datetime | None:
    """When the store's data begins: its first message (kept by retention, indexed by time)."""
    return conn.execute(sa.select(sa.func.min(schema.messages.c.ts))).scalar()


def drill_down(store: Store, metric: str, timeframe: str = "1h", now: datetime | None = None) -> DrillDown:
    """History, percentiles, thresholds and trend of one metric over a timeframe (1h ... 30d)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}")
    d = METRICS[metric]
    now = resolve_now(now)
    seconds = window_seconds(timeframe)
    start = now - timedelta(seconds=seconds)
    granularity = chart_granularity(timeframe)
    step = GRANULARITIES[granularity]
    source = "exact, from raw events"
    pct: list[float | None] = [None, None, None]
    distinct_total = None
    with store.connect() as conn:
        since = None if d.kind == "gauge" else _store_since(conn)  # counts: missing before the store began
        if d.kind == "gauge":
            sm = schema.system_metrics
            where = sa.and_(sm.c.metric_name == metric, sm.c.ts >= start, sm.c.ts <= now)
            b = epoch_bucket(store, sm.c.ts, step)
            rows = conn.execute(
                sa.select(b, sa.func.avg(sm.c.value)).where(where).group_by(sa.literal_column("1"))
            ).all()
            hist = _history_frame(rows)
            pct = group_percentiles(store, conn, sm, sm.c.value, [], where).get((), pct)
        elif d.kind in ("latency", "cost") or metric == "claude_requests":
            hist = None
        else:
            if metric == "messages":
                t, tcol, val = schema.messages, schema.messages.c.ts, sa.func.count()
                extra = sa.true()
            elif metric == "conversations":
                t, tcol = schema.messages, schema.messages.c.ts
                val, extra = sa.func.count(sa.distinct(schema.messages.c.conversation_id)), sa.true()
            elif metric == "human_interventions":
                t, tcol, val = schema.interventions, schema.interventions.c.created_at, sa.func.count()
                extra = schema.interventions.c.action == "take_control"
            else:  # alerts fired
                t, tcol, val = schema.alerts, schema.alerts.c.fired_at, sa.func.count()
                extra = schema.alerts.c.fired_at.is_not(None)
            b = epoch_bucket(store, tcol, step)
            rows = conn.execute(
                sa.select(b, val)
                .select_from(t)
                .where(tcol >= start, tcol <= now, extra)
                .group_by(sa.literal_column("1"))
            ).all()
            hist = _fill_counts(_history_frame(rows), start, now, step, since)
            if metric == "conversations":  # distinct over the whole timeframe: a conversation active
                # in 40 of the chart's minutes is one conversation, not 40 (the sum of the intervals)
                distinct_total = conn.execute(
                    sa.select(val).select_from(t).where(tcol >= start, tcol <= now)
                ).scalar()
    if hist is None:  # LLM-based metrics, from the LLM service: raw under 24 h, rollups beyond
        source = source_note(timeframe)
        llm = LLMObservabilityService(store)
        if metric == "response_time":  # the mean per interval: the statistic the thresholds judge
            rows = llm.llm_timeseries(seconds, granularity, now=now)
            hist = pd.DataFrame({"ts": pd.to_datetime([r["bucket"] for r in rows]),
                                 "value": [float(r["avg_latency_ms"]) if r["requests"] else None for r in rows]})  # fmt: skip
            rep = llm.latency_report(None, seconds, now=now)
            if rep.count:
                pct = [rep.p50, rep.p95, rep.p99]
        else:
            col = "requests" if metric == "claude_requests" else "cost_usd"
            per: dict = {}
            for r in llm.llm_timeseries(seconds, granularity, group_by=("provider", "model"), now=now):
                if is_claude(r["provider"], r["model"]):
                    per[r["bucket"]] = per.get(r["bucket"], 0.0) + float(r[col])
            hist = pd.DataFrame({"ts": pd.to_datetime(list(per)), "value": list(per.values())})
            hist = _fill_counts(hist, start, now, step, since)
    extra: dict[str, Any] = {"interval_s": step}
    # a store younger than the timeframe: its figures cover less time than the label says
    first = hist.loc[hist["value"].notna(), "ts"].min() if not hist.empty else None
    young = first is not None and pd.notna(first) and first > pd.Timestamp(start) + pd.Timedelta(seconds=step)
    extra["data_since"] = first.to_pydatetime() if young else None
    if not d.has_percentiles:  # counts per interval: their total and peak, no percentiles
        source = source if d.kind == "cost" or metric == "claude_requests" else "exact"
        values = hist["value"].dropna() if not hist.empty else pd.Series(dtype=float)
        total = distinct_total if metric == "conversations" else (values.sum() if len(values) else 0.0)
        extra.update(total=float(total or 0),
                     peak=float(values.max()) if len(values) else None)  # fmt: skip
    thresholds = thresholds_or_defaults(get_settings().alert_thresholds_config).get(metric, {})
    if metric in threshold_figures.CATALOG_NAMES:  # what its threshold rule judges, one definition
        current = threshold_figures.judged_now(store, [metric], now)[metric]
    else:  # the "now" figure of `d.now_metric`, over its own window
        current = live_metrics(store, now).get(d.live_key)
    status = threshold_status(current, thresholds, d.bad_direction)
    trend = trend_analysis(hist["value"].tolist() if not hist.empty else [], d.bad_direction, status)
    return DrillDown(
        metric_name=metric, label=d.label, unit=d.unit, timeframe=timeframe, current_value=current,
        historical_data=hist,
        percentile_data=dict(zip(("p50", "p95", "p99"), [None if v is None else float(v) for v in pct], strict=False))
        if d.has_percentiles else {},
        thresholds=dict(thresholds), trend_analysis=trend, status=status, source=source, extra=extra,
    )  # fmt: skip
