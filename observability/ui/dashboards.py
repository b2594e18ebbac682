"""Frames for the console pages: the analytics services' results as small pandas frames, plus the
few page-specific queries no service has.

Every figure a service computes comes from that service: LLM spend, tokens, latency and the
month-end forecast from `LLMObservabilityService`; operation latency, throughput and SLA
compliance from `PerformanceTracker`; interactions and handoffs from `BotMetricsCollector`; agent
costs, efficiency and cost anomalies from `DecisionCostTracker`; live figures from
`observability.analytics.monitoring`. Functions here only call them and shape the results (rename columns,
filter bots, derive rates for a regrouped frame) so one definition of each figure serves the
pages, the worker and the tests. What is left in SQL here is page-specific: the bots seen (for the
filters), the open alerts list, the activity feed (filters, paging, mark-as-read, VIP ordering) and
the conversation-quality listings.

Every function takes a `Store` (and `now=` where a window is involved) and returns frames, dicts
or dataclasses that `observability.ui.data` caches. Windows are names like "1h", "24h", "7d" or
seconds; `bots` is a sequence of bot names, empty for every bot.

State-changing functions (`set_monthly_budget`, `mark_activity_read`) take the acting user's name
and check the permission in the service function itself (`observability.auth.authorize`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from observability import auth
from observability.analytics.agent_costs import CALL_COLUMNS, DecisionCostTracker
from observability.analytics.bot_metrics import BotMetricsCollector
from observability.analytics.conversation_analytics import ConversationAnalytics
from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.monitoring import FIRING_STATES, active_conversation_count, firing_alert_count
from observability.analytics.performance import (
    GRANULARITIES,
    PerformanceTracker,
    chart_granularity,
    reads_rollups,
    source_note,
    window_to_seconds,
)
from observability.store import Store, schema
from observability.store.sqlhelpers import count_true, epoch_bucket
from observability.timeutil import floor_day, resolve_now, utcnow

__all__ = ["active_conversation_count", "firing_alert_count", "source_note"]

HIGH_SEVERITIES = ("high", "critical")
# a frame's additive columns (summed by `regroup`) and the rates derived from them
ADDITIVE = ("requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "total_tokens", "cost_usd", "cost_saved_usd")  # fmt: skip

window_seconds = window_to_seconds  # "1h" | "24h" | "7d" | "15m" | "30d" | seconds -> seconds
day_start = floor_day


def source_of(window: str | int | float) -> str:
    """'raw' (exact percentiles) under 24 hours, else 'rollup' (percentiles within 1%)."""
    return "rollup" if reads_rollups(window_to_seconds(window)) else "raw"


# ---- small helpers ----------------------------------------------------------------------------


def _bots(bots: Sequence[str] | None) -> list[str] | None:
    """A bot filter for the services: None for every bot."""
    return list(bots) if bots else None


def _frame(rows: Iterable, columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _series(rows: list[dict], columns: Sequence[str] = ()) -> pd.DataFrame:
    """Service time-series rows (with `bucket`) as a frame with a `ts` column, oldest first."""
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["ts", *columns])
    if "bucket" in df:
        df = df.rename(columns={"bucket": "ts"})
    if not df.empty:
        df["ts"] = pd.to_datetime(df["ts"])
    return df


def _with_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Rates derived from the additive columns (after summing rows)."""
    req = df["requests"].where(df["requests"] > 0)
    df["error_rate"] = (df["errors"] / req).fillna(0.0)
    df["cache_hit_rate"] = (df["cache_hits"] / req).fillna(0.0)
    if "cost_usd" in df:
        df["cost_per_request"] = (df["cost_usd"] / req).fillna(0.0)
        total = df["cost_usd"].sum()
        df["share_of_cost"] = df["cost_usd"] / total if total else 0.0
    return df


def _plain(value: object) -> object:
    """Dataclasses and numpy scalars to plain dicts/floats, so results cache and serialise."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


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
    """Bots seen in the rollups and raw operations (for filters); cheap."""
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
    return sorted(names)


def open_alerts(store: Store, limit: int = 20) -> pd.DataFrame:
    """Alerts firing or acknowledged, critical first, newest first."""
    a = schema.alerts
    sev = sa.case((a.c.severity == "critical", 0), (a.c.severity == "warning", 1), else_=2)
    stmt = (
        sa.select(a.c.id, a.c.state, a.c.severity, a.c.rule_name, a.c.message, a.c.value, a.c.threshold,
                  a.c.fired_at, a.c.acknowledged_by, a.c.escalation_level)
        .where(a.c.state.in_(FIRING_STATES))
        .order_by(sev, a.c.fired_at.desc())
        .limit(limit)
    )  # fmt: skip
    cols = ["id", "state", "severity", "rule", "message", "value", "threshold", "fired_at", "acknowledged_by",
            "escalation_level"]  # fmt: skip
    with store.connect() as conn:
        return _frame(conn.execute(stmt), cols)


def bots_now(store: Store, now: datetime | None = None) -> pd.DataFrame:
    """One row per bot: LLM requests, error rate and P50/P95 over the last hour (exact), spend
    today (UTC), and the operations breaching their SLA now (`slow_bots` over the last hour)."""
    now = resolve_now(now)
    svc = LLMObservabilityService(store)
    cols = ["bot", "requests_1h", "error_rate_1h", "p50_ms", "p95_ms", "spend_today_usd", "slow_operations"]
    hour = {r["bot"]: r for r in svc.cost_breakdown("bot", 3600, now=now, percentiles=True)}
    since_midnight = (now - floor_day(now)).total_seconds()
    today = svc.cost_by_bot(since_midnight, now=now) if since_midnight > 0 else {}
    names = sorted(b for b in set(hour) | set(today) if b is not None)
    if not names:
        return pd.DataFrame(columns=cols)
    slow = slow_bots(store, "1h", None, now)
    slow_ops = slow.groupby("bot")["operation"].agg(", ".join).to_dict() if not slow.empty else {}
    rows = []
    for b in names:
        h = hour.get(b, {})
        rows.append((b, int(h.get("requests", 0)), float(h.get("error_rate", 0.0)), h.get("p50"), h.get("p95"),
                     float(today.get(b, 0.0)), slow_ops.get(b, "")))  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


# ---- LLM calls: requests, latency, tokens, spend (LLMObservabilityService) ----------------------


def requests_series(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """LLM requests, errors, tokens and cost per chart bucket and bot (columns ts, bot, ...)."""
    rows = LLMObservabilityService(store).llm_timeseries(
        window_to_seconds(window), chart_granularity(window), group_by=("bot",), bot=_bots(bots), now=now
    )
    return _series(rows, ("bot", "requests"))


def latency_by_bot(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """LLM latency P50/P95/P99, mean, min, max and count per bot (`latency_by_bot`)."""
    reports = LLMObservabilityService(store).latency_by_bot(
        window_to_seconds(window), bots=_bots(bots), now=now
    )
    return pd.DataFrame([{**r.as_dict(), "bot": b} for b, r in reports.items() if r.count],
                        columns=["bot", "p50", "p95", "p99", "mean", "min", "max", "count", "approximate"])  # fmt: skip


def token_series(store: Store, window: str = "24h", bots: Sequence[str] | None = None, by: str = "model",
                 now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per chart bucket and model (or bot, agent): requests, cache hits, the four token counts,
    cost (`llm_timeseries`)."""
    if by not in ("model", "bot", "agent"):
        raise ValueError("by must be model, bot or agent")
    rows = LLMObservabilityService(store).llm_timeseries(
        window_to_seconds(window), chart_granularity(window), group_by=(by,), bot=_bots(bots), now=now
    )
    df = _series(rows, (by, "requests", "cache_hits", "input_tokens", "output_tokens", "cache_read_tokens",
                        "cache_write_tokens", "total_tokens", "cost_usd"))  # fmt: skip
    if by in df:
        df[by] = df[by].fillna("(none)")
    return df


def cache_hit_series(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
                     now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per chart bucket: requests, cache hits and the cache hit rate over the selected bots."""
    rows = LLMObservabilityService(store).llm_timeseries(
        window_to_seconds(window), chart_granularity(window), bot=_bots(bots), now=now
    )
    return _series(rows, ("requests", "cache_hits", "cache_hit_rate"))


def llm_breakdown(store: Store, window: str | int = "24h", bots: Sequence[str] | None = None,
                  by: Sequence[str] = ("model",), now: datetime | None = None,
                  percentiles: bool = False) -> pd.DataFrame:  # fmt: skip
    """`cost_breakdown`: LLM totals grouped by any of model, provider, bot, agent, most expensive
    first (with latency percentiles when asked)."""
    rows = LLMObservabilityService(store).cost_breakdown(
        tuple(by), window_to_seconds(window), bot=_bots(bots), now=now, percentiles=percentiles
    )
    df = pd.DataFrame(rows)
    for k in by:
        if k in df:
            df[k] = df[k].fillna("(none)")
    return df


def llm_totals(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
               now: datetime | None = None) -> dict:  # fmt: skip
    """The window's totals (`LLMObservabilityService.totals`): requests, tokens, cost, saved, rates."""
    return LLMObservabilityService(store).totals(window_to_seconds(window), bot=_bots(bots), now=now)


def regroup(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Re-aggregate a breakdown (e.g. by model, bot and agent) to fewer keys: additive columns are
    summed, rates recomputed; so one query serves several charts."""
    if df.empty:
        return df
    cols = [c for c in ADDITIVE if c in df.columns]
    out = _with_rates(df.groupby(list(keys), as_index=False, dropna=False)[cols].sum())
    return out.sort_values("cost_usd", ascending=False).reset_index(drop=True) if "cost_usd" in out else out


def top_conversations(store: Store, window: str = "24h", bots: Sequence[str] | None = None, limit: int = 20,
                      order: str = "tokens", now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`top_conversations`: conversations using the most tokens (or cost). Raw rows grouped in SQL,
    so windows longer than 24 hours are capped at 24 hours (there is no per-conversation rollup)."""
    secs = min(window_to_seconds(window), 86_400)
    rows = LLMObservabilityService(store).top_conversations(
        secs, limit=limit, by="cost" if order == "cost" else "tokens", bot=_bots(bots), now=now
    )
    cols = ["conversation_id", "bot", "requests", "input_tokens", "output_tokens", "cache_read_tokens",
            "total_tokens", "cost_usd", "cost_saved_usd", "errors", "first_ts", "last_ts"]  # fmt: skip
    return pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)


def cost_by_day(store: Store, window: str = "30d", bots: Sequence[str] | None = None,
                now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`daily_spend` by model over the UTC days the window touches: ts (the day), model, cost_usd,
    requests, cost_saved_usd."""
    now = resolve_now(now)
    days = (now.date() - (now - timedelta(seconds=window_to_seconds(window))).date()).days + 1
    rows = LLMObservabilityService(store).daily_spend(days, by="model", bot=_bots(bots), now=now)
    cols = ["ts", "model", "cost_usd", "requests", "cost_saved_usd"]
    return pd.DataFrame([(r["day"], r["model"], r["cost_usd"], r["requests"], r["cost_saved_usd"]) for r in rows],
                        columns=cols)  # fmt: skip


def unknown_models(store: Store, window: str = "30d", now: datetime | None = None) -> pd.DataFrame:
    """`unknown_model_calls` as a frame: calls to models the price table did not know (priced 0)."""
    rows = LLMObservabilityService(store).unknown_model_calls(window_to_seconds(window), now=now)
    return pd.DataFrame(rows, columns=["model", "provider", "calls", "input_tokens", "output_tokens",
                                       "caller_cost_usd", "first_seen", "last_seen"])  # fmt: skip


def spend_forecast(store: Store, now: datetime | None = None) -> dict:
    """`spend_forecast` (month to date, forecast, budget) plus `daily`: spend per UTC day of the
    month so far (`daily_spend`) with its running total (a frame)."""
    now = resolve_now(now)
    svc = LLMObservabilityService(store)
    fc = svc.spend_forecast(now=now)
    rows = svc.daily_spend(now.day, now=now)
    daily = pd.DataFrame([(r["day"], r["cost_usd"], r["cost_saved_usd"]) for r in rows],
                         columns=["day", "cost_usd", "saved_usd"])  # fmt: skip
    daily["cumulative_usd"] = daily["cost_usd"].cumsum()
    return {**fc, "daily": daily}


def set_monthly_budget(store: Store, user_name: str, usd: float, now: datetime | None = None) -> float:
    """`LLMObservabilityService.set_monthly_budget`: managers and admins only (`budget.set`)."""
    return LLMObservabilityService(store).set_monthly_budget(user_name, usd, now=now)


# ---- agent costs (DecisionCostTracker) ----------------------------------------------------------


def cost_report(store: Store, window: str = "7d", bots: Sequence[str] | None = None,
                now: datetime | None = None) -> dict:  # fmt: skip
    """`DecisionCostTracker.report`: {"ranking": frame, "anomalies": frame, "anomaly_count",
    "z_threshold", "min_decisions", "total_cost"}. Anomalies are single calls whose cost is more
    than z_threshold sample standard deviations above their agent's mean (agents with fewer than
    min_decisions calls are not judged); each row's `trace_id` opens the call. `bots` filters the
    anomaly rows."""
    rep = DecisionCostTracker(store).report(window, now=resolve_now(now))
    ranking = pd.DataFrame(rep.efficiency_ranking)
    anomalies = pd.DataFrame([_plain(a) for a in rep.anomalies])
    if not anomalies.empty:
        anomalies = anomalies.drop(columns=["trace_ids"], errors="ignore")
        if bots:
            anomalies = anomalies[anomalies["bot"].isin(list(bots))].reset_index(drop=True)
    return {"ranking": ranking, "anomalies": anomalies, "anomaly_count": rep.anomaly_count,
            "z_threshold": rep.z_threshold, "min_decisions": rep.min_decisions,
            "total_cost": rep.total_cost}  # fmt: skip


def calls_by_ids(store: Store, trace_ids: Sequence[str]) -> pd.DataFrame:
    """`DecisionCostTracker.calls`: the LLM calls behind an anomaly, most expensive first."""
    return pd.DataFrame(DecisionCostTracker(store).calls(list(trace_ids)), columns=list(CALL_COLUMNS))


# ---- bot operations and SLA (PerformanceTracker) ------------------------------------------------


def sla_compliance(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`check_sla_compliance` as a frame, one row per SLA target: requests, errors, error and cache
    hit rate, P50/P95/P99 against their targets, violations; `compliant` is None for a target
    without operations in the window. `bots` filters rows."""
    rows = PerformanceTracker(store).check_sla_compliance(window, now=resolve_now(now))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if bots:
        df = df[df["bot"].isin(list(bots))]
    df = df.rename(
        columns={"actual_p50": "p50", "actual_p95": "p95", "actual_p99": "p99", "count": "requests"}
    )
    df["compliant"] = df["compliant"].astype(object).where(df["requests"] > 0, None)
    df["violations"] = df["violations"].map("; ".join)
    return df.sort_values(["bot", "operation"]).reset_index(drop=True)


def bot_throughput(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`get_all_bot_stats` per bot: operations (`requests`) and per minute, errors, error and cache
    hit rate, P50/P95/P99."""
    stats = PerformanceTracker(store).get_all_bot_stats(window, bots=_bots(bots), now=resolve_now(now))
    df = pd.DataFrame(list(stats.values()))
    if df.empty:
        return df
    df = df.rename(columns={"count": "requests", "error_count": "errors"})
    df["per_min"] = df["requests"] / (window_to_seconds(window) / 60.0)
    return df


def ops_latency_series(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                       now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`bot_timeseries` per chart bucket and bot: P50/P95/P99 of operation durations, requests,
    error rate."""
    rows = PerformanceTracker(store).bot_timeseries(window, chart_granularity(window), bot=_bots(bots),
                                                    now=resolve_now(now))  # fmt: skip
    return _series(rows, ("bot", "requests", "p95"))


def slow_bots(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
              now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Which bot is slow, since when, and what it costs: one row per (bot, operation) whose P95 in
    its latest chart bucket (one of the last five) is above its SLA target, with the start of that
    breach (the first bucket of the current run of breaching buckets; buckets without operations
    are skipped), its P95 now and the bot's LLM spend over the window. From `bot_timeseries`, the
    SLA table and `cost_by_bot`."""
    cols = ["bot", "operation", "p95_now", "target_p95", "breaching_since", "buckets", "spend_usd"]
    now = resolve_now(now)
    tracker = PerformanceTracker(store)
    granularity = chart_granularity(window)
    series = tracker.bot_timeseries(window, granularity, bot=_bots(bots), by_operation=True, now=now)
    targets = {(t.bot, t.operation): t.p95_ms for t in tracker.sla_targets}
    per: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in series:
        if (r["bot"], r["operation"]) in targets and r["p95"] is not None:
            per[(r["bot"], r["operation"])].append(r)
    if not per:
        return pd.DataFrame(columns=cols)
    last = max(r["bucket"] for rows in per.values() for r in rows)
    recent = last - timedelta(seconds=5 * GRANULARITIES[granularity])
    spend = LLMObservabilityService(store).cost_by_bot(window_to_seconds(window), now=now)
    out = []
    for (bot, op), rows in sorted(per.items()):
        target = targets[(bot, op)]
        if rows[-1]["bucket"] < recent or rows[-1]["p95"] <= target:
            continue  # no recent data for this pair, or within target now
        i = len(rows) - 1
        while i > 0 and rows[i - 1]["p95"] > target:
            i -= 1
        out.append((bot, op, float(rows[-1]["p95"]), float(target), pd.Timestamp(rows[i]["bucket"]), len(rows) - i,
                    float(spend.get(bot, 0.0))))  # fmt: skip
    df = pd.DataFrame(out, columns=cols)
    return df.sort_values("breaching_since").reset_index(drop=True)


# ---- interactions and handoffs (BotMetricsCollector) --------------------------------------------


def bot_summaries(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                  now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`get_system_summary`'s per-bot summaries (bots with interactions only)."""
    summary = BotMetricsCollector(store).get_system_summary(
        window_to_seconds(window) / 60, now=resolve_now(now)
    )
    rows = [{"bot": b, **s} for b, s in summary["bots"].items() if s["total_interactions"]]
    df = pd.DataFrame(rows)
    if not df.empty and bots:
        df = df[df["bot"].isin(list(bots))].reset_index(drop=True)
    return df


def interaction_series(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                       now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`interaction_timeseries` per chart bucket and bot: interactions, errors, mean duration."""
    rows = BotMetricsCollector(store).interaction_timeseries(
        window_to_seconds(window) / 60, chart_granularity(window), bots=_bots(bots), now=resolve_now(now)
    )
    return _series(rows, ("bot", "interactions", "mean_ms"))


def handoff_summary(store: Store, window: str = "1h", now: datetime | None = None) -> dict:
    """`handoff_summary`: totals, success rate, durations, blocked."""
    return BotMetricsCollector(store).handoff_summary(window_to_seconds(window) / 60, now=resolve_now(now))


def handoff_matrix(store: Store, window: str = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`handoff_matrix`: source -> target, handoffs, successes, success rate, blocked, mean duration."""
    rows = BotMetricsCollector(store).handoff_matrix(window_to_seconds(window) / 60, bots=_bots(bots),
                                                     now=resolve_now(now))  # fmt: skip
    df = pd.DataFrame(rows, columns=["source", "target", "count", "successes", "success_rate", "blocked",
                                     "avg_duration_ms"])  # fmt: skip
    df = df.rename(columns={"count": "handoffs", "avg_duration_ms": "mean_ms"})
    return df.sort_values(["source", "target"]).reset_index(drop=True)


# ---- activity feed ----------------------------------------------------------------------------


def activity_filters(store: Store, now: datetime | None = None, days: int = 7) -> dict[str, list[str]]:
    """Distinct event types, categories and accounts seen in the feed's last `days` days."""
    a = schema.activity_events
    since = resolve_now(now) - timedelta(days=days)
    with store.connect() as conn:
        types = [
            r[0] for r in conn.execute(sa.select(a.c.event_type).where(a.c.ts >= since).distinct()) if r[0]
        ]
        accounts = [
            r[0] for r in conn.execute(sa.select(a.c.account_id).where(a.c.ts >= since).distinct()) if r[0]
        ]
    return {"types": sorted(types), "accounts": sorted(accounts)}


def activity_page(
    store: Store,
    user_name: str | None,
    severities: Sequence[str] | None = None,
    event_type: str | None = None,
    account_id: str | None = None,
    unread_only: bool = False,
    page: int = 1,
    page_size: int = 50,
    vip_first: bool = False,
    window: str = "7d",
    now: datetime | None = None,
) -> tuple[pd.DataFrame, int]:
    """One page of the activity feed, newest first, with a `read` column for `user_name`.

    Returns (rows, total matching). `vip_first` orders VIP accounts' events and high/critical
    severities first (the VIP view of source document 004)."""
    a, r, acc = schema.activity_events, schema.activity_reads, schema.accounts
    page_size = max(1, min(int(page_size), 200))
    page = max(1, int(page))
    read = sa.select(r.c.event_id).where(r.c.event_id == a.c.id, r.c.user_name == (user_name or "")).exists()
    end = resolve_now(now)
    conds = [a.c.ts >= end - timedelta(seconds=window_to_seconds(window)), a.c.ts <= end]
    if severities:
        conds.append(a.c.severity.in_(list(severities)))
    if event_type:
        conds.append(a.c.event_type == event_type)
    if account_id:
        conds.append(a.c.account_id == account_id)
    if unread_only:
        conds.append(~read)
    where = sa.and_(*conds)
    vip = sa.func.coalesce(acc.c.vip, sa.false())
    cols = [a.c.id, a.c.ts, a.c.severity, a.c.event_type, a.c.category, a.c.title, a.c.description,
            a.c.account_id, vip.label("vip"), a.c.conversation_id, read.label("read")]  # fmt: skip
    j = a.outerjoin(acc, acc.c.id == a.c.account_id)
    order = [a.c.ts.desc(), a.c.id]
    if vip_first:
        high = sa.case((a.c.severity.in_(HIGH_SEVERITIES), 0), else_=1)
        order = [sa.case((vip == sa.true(), 0), else_=1), high, *order]
    stmt = sa.select(*cols).select_from(j).where(where).order_by(*order).limit(page_size)
    stmt = stmt.offset((page - 1) * page_size)
    names = ["id", "ts", "severity", "type", "category", "title", "description", "account", "vip",
             "conversation", "read"]  # fmt: skip
    with store.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(a).where(where)).scalar() or 0)
        df = _frame(conn.execute(stmt), names)
    if not df.empty:
        df["vip"] = df["vip"].astype(bool)
        df["read"] = df["read"].astype(bool)
    return df, total


def activity_counts(store: Store, window: str = "24h", now: datetime | None = None) -> pd.DataFrame:
    """Activity events per time bucket and severity."""
    a = schema.activity_events
    end = resolve_now(now)
    b = epoch_bucket(store, a.c.ts, GRANULARITIES[chart_granularity(window)]).label("ts")
    stmt = (
        sa.select(b, a.c.severity, sa.func.count())
        .where(a.c.ts >= end - timedelta(seconds=window_to_seconds(window)), a.c.ts <= end)
        .group_by(sa.literal_column("1"), a.c.severity)
    )
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), ["ts", "severity", "events"])
    if not df.empty:
        df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="s")
        df["events"] = df["events"].astype(int)
        df = df.sort_values("ts").reset_index(drop=True)
    return df


def unread_count(store: Store, user_name: str | None, window: str = "7d", now: datetime | None = None) -> int:
    """Events of the window this user has not marked as read."""
    a, r = schema.activity_events, schema.activity_reads
    end = resolve_now(now)
    read = sa.select(r.c.event_id).where(r.c.event_id == a.c.id, r.c.user_name == (user_name or "")).exists()
    since = a.c.ts >= end - timedelta(seconds=window_to_seconds(window))
    with store.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(a).where(since, a.c.ts <= end, ~read)
            ).scalar()
            or 0
        )


def mark_activity_read(
    store: Store, user_name: str, event_ids: Iterable[str], now: datetime | None = None
) -> int:
    """Mark events as read for this user (`activity.mark_read`); returns how many ids were given."""
    user = auth.authorize(store, user_name, "activity.mark_read")
    ids = sorted({str(i) for i in event_ids if i})
    if not ids:
        return 0
    now = resolve_now(now)
    with store.begin() as conn:
        store.insert_ignore(conn, schema.activity_reads, ("event_id", "user_name", "read_at"),
                            [(i, user.name, now) for i in ids])  # fmt: skip
    return len(ids)


def vip_conversations(
    store: Store, limit: int = 50, now: datetime | None = None, days: int = 7
) -> pd.DataFrame:
    """Conversations of VIP accounts, most recently active first (last `days` days)."""
    c, acc = schema.conversations, schema.accounts
    since = resolve_now(now) - timedelta(days=days)
    cols = [c.c.id, acc.c.name, c.c.account_id, c.c.bot, c.c.state, c.c.operator, c.c.last_activity_at,
            c.c.message_count, c.c.sentiment, c.c.quality_score, c.c.resolved]  # fmt: skip
    stmt = (
        sa.select(*cols).select_from(c.join(acc, acc.c.id == c.c.account_id))
        .where(acc.c.vip == sa.true(), c.c.last_activity_at >= since)
        .order_by(c.c.last_activity_at.desc()).limit(limit)
    )  # fmt: skip
    names = ["conversation", "account_name", "account", "bot", "state", "operator", "last_activity", "messages",
             "sentiment", "quality", "resolved"]  # fmt: skip
    with store.connect() as conn:
        return _frame(conn.execute(stmt), names)


# ---- conversation quality ---------------------------------------------------------------------


def conversation_scores(store: Store, window: str = "24h", bots: Sequence[str] | None = None, limit: int = 200,
                        now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Recently active conversations with the latest quality scores the worker computed."""
    c = schema.conversations
    end = resolve_now(now)
    cols = [c.c.id, c.c.bot, c.c.account_id, c.c.state, c.c.started_at, c.c.last_activity_at, c.c.message_count,
            c.c.sentiment, c.c.sentiment_trend, c.c.topic_drift, c.c.engagement, c.c.resolved, c.c.quality_score]  # fmt: skip
    stmt = (
        sa.select(*cols)
        .where(
            c.c.last_activity_at >= end - timedelta(seconds=window_to_seconds(window)),
            c.c.last_activity_at <= end,
            _bot_clause(c.c.bot, bots),
        )  # fmt: skip
        .order_by(c.c.last_activity_at.desc())
        .limit(limit)
    )
    names = ["conversation", "bot", "account", "state", "started", "last_activity", "messages", "sentiment",
             "trend", "drift", "engagement", "resolved", "quality"]  # fmt: skip
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), names)
    for col in ("sentiment", "drift", "engagement", "quality"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def quality_summary(store: Store, window: str = "24h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per bot: conversations, scored, mean quality/sentiment/engagement/drift, resolution rate."""
    c = schema.conversations
    end = resolve_now(now)
    stmt = (
        sa.select(
            c.c.bot,
            sa.func.count(),
            sa.func.count(c.c.quality_score),
            sa.func.avg(c.c.quality_score),
            sa.func.avg(c.c.sentiment),
            sa.func.avg(c.c.engagement),
            sa.func.avg(c.c.topic_drift),
            count_true(c.c.resolved),
        )  # fmt: skip
        .where(
            c.c.last_activity_at >= end - timedelta(seconds=window_to_seconds(window)),
            c.c.last_activity_at <= end,
            _bot_clause(c.c.bot, bots),
        )  # fmt: skip
        .group_by(c.c.bot)
    )
    names = ["bot", "conversations", "scored", "quality", "sentiment", "engagement", "drift", "resolved"]
    with store.connect() as conn:
        df = _frame(conn.execute(stmt), names)
    if not df.empty:
        df["bot"] = df["bot"].fillna("(none)")
        for col in ("quality", "sentiment", "engagement", "drift"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        df["resolution_rate"] = df["resolved"].astype(float) / df["scored"].where(df["scored"] > 0)
    return df


def conversation_messages(store: Store, conversation_id: str, limit: int = 500) -> list[dict]:
    """One conversation's messages in order ({"role", "text", "ts", "bot"}), at most `limit`."""
    m = schema.messages
    stmt = (
        sa.select(m.c.ts, m.c.role, m.c.text, m.c.bot)
        .where(m.c.conversation_id == conversation_id)
        .order_by(m.c.ts, m.c.id)
        .limit(limit)
    )
    with store.connect() as conn:
        return [{"ts": r.ts, "role": r.role, "text": r.text, "bot": r.bot} for r in conn.execute(stmt)]


def handed_off_conversations(store: Store, window: str = "24h", limit: int = 200,
                             now: datetime | None = None) -> tuple[list[list[dict]], list[int]]:  # fmt: skip
    """Recent conversations served by more than one bot, their messages and the index of the first
    message after the bot changed (the handoff), for ConversationAnalytics.handoff_effectiveness.
    Reads at most `limit` conversations."""
    m = schema.messages
    end = resolve_now(now)
    since = end - timedelta(seconds=window_to_seconds(window))
    multi = (
        sa.select(m.c.conversation_id)
        .where(m.c.ts >= since, m.c.ts <= end, m.c.bot.is_not(None))
        .group_by(m.c.conversation_id)
        .having(sa.func.count(sa.distinct(m.c.bot)) > 1)
        .limit(limit)
    )
    with store.connect() as conn:
        ids = [r[0] for r in conn.execute(multi)]
        if not ids:
            return [], []
        rows = conn.execute(
            sa.select(m.c.conversation_id, m.c.role, m.c.text, m.c.bot)
            .where(m.c.conversation_id.in_(ids))
            .order_by(m.c.conversation_id, m.c.ts, m.c.id)
        ).all()
    convs: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        convs[r.conversation_id].append({"role": r.role, "text": r.text, "bot": r.bot})
    conversations, indices = [], []
    for msgs in convs.values():
        first_bot, idx = None, None
        for i, msg in enumerate(msgs):
            if msg["bot"]:
                if first_bot is None:
                    first_bot = msg["bot"]
                elif msg["bot"] != first_bot:
                    idx = i
                    break
        if idx is not None:
            conversations.append(msgs)
            indices.append(idx)
    return conversations, indices


def _bot_clause(col: sa.ColumnElement, bots: Sequence[str] | None) -> sa.ColumnElement:
    return col.in_(list(bots)) if bots else sa.true()


def analyze_conversation(store: Store, conversation_id: str, limit: int = 500) -> dict | None:
    """`ConversationAnalytics.analyze` over one conversation (the scores the worker stores):
    per-message sentiment and its trend, topic drift, engagement, resolution and quality score,
    with the messages. None when the conversation has no messages."""
    msgs = conversation_messages(store, conversation_id, limit)
    if not msgs:
        return None
    scores = ConversationAnalytics().analyze([{"role": m["role"], "text": m["text"]} for m in msgs])
    return {
        "messages": msgs,
        "sentiment_scores": [float(x) for x in scores.sentiment_scores],
        "sentiment_avg": float(scores.sentiment),
        "sentiment_trend": scores.sentiment_trend,
        "drift": float(scores.topic_drift),
        "engagement": float(scores.engagement),
        "resolved": bool(scores.resolved),
        "quality": float(scores.quality_score),
    }


def handoff_effectiveness(
    store: Store, window: str = "24h", limit: int = 50, now: datetime | None = None
) -> dict | None:
    """`ConversationAnalytics.handoff_effectiveness` over recent handed-off conversations (at most
    `limit`); None without such conversations."""
    convs, idx = handed_off_conversations(store, window, limit, now)
    if not convs:
        return None
    plain = [[{"role": m["role"], "text": m["text"]} for m in c] for c in convs]
    return _plain(ConversationAnalytics().handoff_effectiveness(plain, idx))
