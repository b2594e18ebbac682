"""Live metrics and per-metric drill-down of source document 004, as plain functions.

`live_metrics(store)` answers like the document's `GET /monitoring/metrics`;
`drill_down(store, metric, timeframe)` like `GET /monitoring/metrics/detailed/{metric}`: history,
P50/P95/P99, thresholds, trend direction, percentage change and an `is_concerning` flag. The pure
parts (`trend_analysis`, `threshold_status`, `load_thresholds`) are testable without a store.

LLM figures (response time, Claude requests and cost) come from `LLMObservabilityService`; the
rest (conversations, messages, recorded gauges, interventions, alerts) are counted here in SQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.performance import (
    GRANULARITIES,
    chart_granularity,
    source_note,
    window_to_seconds,
)
from observability.settings import get_settings
from observability.store import Store, schema
from observability.store.sqlhelpers import epoch_bucket, exact_percentiles, group_percentiles
from observability.timeutil import floor_day, resolve_now

log = logging.getLogger(__name__)

TIMEFRAMES = ("1h", "6h", "24h", "7d", "30d")
ACTIVE_CONVERSATION_S = 900  # a conversation with activity this recently is active
FIRING_STATES = ("firing", "acknowledged")

# Source document 004, "Alert Thresholds Configuration" (without its product prefix).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "system_load": {"warning": 70.0, "critical": 85.0},
    "response_time": {"warning": 2000.0, "critical": 5000.0},
    "ai_confidence": {"warning": 0.6, "critical": 0.4},
    "safety_score": {"warning": 0.8, "critical": 0.6},
}
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


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("conversations", "Active conversations", "", "count", None, "conversations_active"),
        MetricDef("messages", "Messages", "", "count", None, "messages_processed"),
        MetricDef("ai_confidence", "AI confidence", "score", "gauge", "down", "ai_confidence_avg"),
        MetricDef("safety_score", "Safety score", "score", "gauge", "down", "safety_score_avg"),
        MetricDef("response_time", "Response time", "ms", "latency", "up", "response_time_avg"),
        MetricDef("system_load", "System load", "%", "gauge", "up", "system_load"),
        MetricDef("human_interventions", "Human interventions", "", "count", "up", "human_interventions"),
        MetricDef("alerts", "Alerts fired", "", "count", "up", "alert_count"),
        MetricDef("claude_requests", "Claude requests", "", "count", None, "claude_requests_today"),
        MetricDef("claude_cost", "Claude cost", "usd", "cost", "up", "claude_cost_today"),
    )
}


# ---- pure parts -------------------------------------------------------------------------------


def load_thresholds(path: Path | None = None) -> dict[str, dict[str, float]]:
    """Thresholds from ALERT_THRESHOLDS_CONFIG (data/alert_thresholds.json) over the defaults.

    The file maps metric -> {"warning": x, "critical": y}; a `thresholds` wrapper key is accepted;
    unreadable files and malformed entries fall back to the source document's values."""
    out = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    path = path or get_settings().alert_thresholds_config
    try:
        raw = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable thresholds file %s: %s", path, exc)
        raw = {}
    if isinstance(raw, dict) and isinstance(raw.get("thresholds"), dict):
        raw = raw["thresholds"]
    for name, t in (raw or {}).items() if isinstance(raw, dict) else ():
        if isinstance(t, Mapping):
            vals = {k: float(t[k]) for k in ("warning", "critical") if isinstance(t.get(k), (int, float))}
            if vals:
                out.setdefault(name, {}).update(vals)
    return out


def threshold_status(
    value: float | None, thresholds: Mapping[str, float] | None, bad_direction: str | None
) -> str:
    """'ok', 'warning' or 'critical'. Lower-is-worse metrics breach when value <= threshold."""
    if value is None or not thresholds or bad_direction is None:
        return "ok"
    for level in ("critical", "warning"):
        t = thresholds.get(level)
        if t is None:
            continue
        if (bad_direction == "up" and value >= t) or (bad_direction == "down" and value <= t):
            return level
    return "ok"


def trend_analysis(
    values: Sequence[float | None],
    bad_direction: str | None,
    status: str = "ok",
) -> dict:
    """Compare the mean of the later half of a series with the earlier half.

    direction: up / down / stable (|change| < 1 %); percentage_change relative to the earlier
    half; is_concerning when the move is >= 10 % in the metric's bad direction or the current
    value is past a threshold."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if len(vals) < 2:
        return {"direction": "stable", "percentage_change": 0.0, "is_concerning": status != "ok"}
    half = len(vals) // 2
    prev, cur = float(np.mean(vals[:half])), float(np.mean(vals[half:]))
    if prev == 0:
        pct = 0.0 if cur == 0 else 100.0 * (1 if cur > 0 else -1)
    else:
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


# ---- live metrics -----------------------------------------------------------------------------


def is_claude(provider: str | None, model: str | None) -> bool:
    """Claude calls: Anthropic's API, or a model named claude-* through another provider."""
    return (provider or "").lower() == "anthropic" or (model or "").startswith("claude")


def active_conversation_count(
    store: Store, now: datetime | None = None, window_s: int = ACTIVE_CONVERSATION_S
) -> int:
    """Conversations with activity in the last `window_s` seconds that are not stopped."""
    c = schema.conversations
    since = resolve_now(now) - timedelta(seconds=window_s)
    with store.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(c)
                .where(c.c.last_activity_at >= since, c.c.state != "stopped")
            ).scalar()
            or 0
        )


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


def live_metrics(store: Store, now: datetime | None = None) -> dict:
    """The live figures of source document 004 (its GET /monitoring/metrics response)."""
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
    with store.connect() as conn:
        conv_today = conn.execute(
            sa.select(sa.func.count()).select_from(c).where(c.c.started_at >= today)
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


def _fill_counts(df: pd.DataFrame, start: datetime, end: datetime, step: int) -> pd.DataFrame:
    """Count series: buckets without rows are zero, not missing."""
    idx = pd.date_range(
        pd.Timestamp(start).floor(f"{step}s"), pd.Timestamp(end).floor(f"{step}s"), freq=f"{step}s"
    )
    s = df.set_index("ts")["value"] if not df.empty else pd.Series(dtype=float)
    s = s.reindex(idx, fill_value=0.0)
    return pd.DataFrame({"ts": idx, "value": s.to_numpy(dtype=float)})


def drill_down(store: Store, metric: str, timeframe: str = "1h", now: datetime | None = None) -> DrillDown:
    """History, percentiles, thresholds and trend of one metric over a timeframe (1h ... 30d)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}")
    d = METRICS[metric]
    now = resolve_now(now)
    seconds = window_to_seconds(timeframe)
    start = now - timedelta(seconds=seconds)
    granularity = chart_granularity(timeframe)
    step = GRANULARITIES[granularity]
    source = "exact, from raw events"
    pct: list[float | None] = [None, None, None]
    with store.connect() as conn:
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
            hist = _fill_counts(_history_frame(rows), start, now, step)
    if hist is None:  # LLM-based metrics, from the LLM service: raw under 24 h, rollups beyond
        source = source_note(timeframe)
        llm = LLMObservabilityService(store)
        if metric == "response_time":
            rows = llm.llm_timeseries(seconds, granularity, now=now)
            hist = pd.DataFrame({"ts": pd.to_datetime([r["bucket"] for r in rows]),
                                 "value": [float(r["avg_latency_ms"]) for r in rows]})  # fmt: skip
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
            hist = _fill_counts(hist, start, now, step)
    if d.kind in ("count", "cost") or metric == "claude_requests":
        source = (source if d.kind == "cost" or metric == "claude_requests" else "exact") + (
            f"; percentiles over {step // 60}-minute buckets"
        )
        pct = exact_percentiles(hist["value"].dropna().tolist()) if not hist.empty else pct
    thresholds = load_thresholds().get(metric, {})
    live = live_metrics(store, now)
    current = live.get(d.live_key)
    if current is None and not hist.empty and hist["value"].notna().any():
        current = float(hist["value"].dropna().iloc[-1])
    status = threshold_status(current, thresholds, d.bad_direction)
    trend = trend_analysis(hist["value"].tolist() if not hist.empty else [], d.bad_direction, status)
    return DrillDown(
        metric_name=metric, label=d.label, unit=d.unit, timeframe=timeframe, current_value=current,
        historical_data=hist, percentile_data=dict(zip(("p50", "p95", "p99"), [None if v is None else float(v) for v in pct], strict=False)),
        thresholds=dict(thresholds), trend_analysis=trend, status=status, source=source,
    )  # fmt: skip
