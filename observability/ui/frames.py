"""The analytics services' results as the small pandas frames the console pages chart and list.

Functions here only call a service and shape its result (a frame, renamed columns, a bot filter,
rates derived for a regrouped frame): every figure is computed by the service that owns it, so the
pages, the worker and the tests share one definition. LLM spend, tokens, latency and the forecast
come from `LLMObservabilityService`; operations and SLAs from `PerformanceTracker`; interactions and
handoffs from `BotMetricsCollector`; agent costs from `DecisionCostTracker`; the overview and live
figures from `analytics.monitoring`; the feed from `analytics.activity`; conversation quality from
`analytics.conversations`.

Every function takes a `Store` first (and `now=` where a window is involved), so
`observability.ui.data` can cache it. Windows are `observability.timeutil.Window` values ("1h",
"24h", "7d", ...); `bots` is a sequence of bot names, empty for every bot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from observability.analytics import activity, conversations, monitoring, sla
from observability.analytics.agent_costs import CALL_COLUMNS, DecisionCostTracker
from observability.analytics.bot_metrics import BotMetricsCollector
from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.performance import PerformanceTracker
from observability.analytics.window import chart_granularity
from observability.settings import get_settings
from observability.store import Store
from observability.timeutil import Window, resolve_now, window_seconds

ANOMALY_PAGE_SIZE = 50  # cost anomalies per page of the listing

# a frame's additive columns (summed by `regroup`) and the rates derived from them
ADDITIVE = ("requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "total_tokens", "cost_usd", "cost_saved_usd")  # fmt: skip
TOKEN_SERIES_COLUMNS = ("requests", "cache_hits", "input_tokens", "output_tokens", "cache_read_tokens",
                        "cache_write_tokens", "total_tokens", "cost_usd")  # fmt: skip
TOP_CONVERSATION_COLUMNS = ("conversation_id", "bot", "requests", "input_tokens", "output_tokens",
                            "cache_read_tokens", "total_tokens", "cost_usd", "cost_saved_usd", "errors",
                            "first_ts", "last_ts")  # fmt: skip


# ---- small helpers ----------------------------------------------------------------------------


def _bots(bots: Sequence[str] | None) -> list[str] | None:
    """A bot filter for the services: None for every bot."""
    return list(bots) if bots else None


def _only_bots(df: pd.DataFrame, bots: Sequence[str] | None) -> pd.DataFrame:
    """Rows of the selected bots (all rows when none is selected)."""
    if df.empty or not bots:
        return df
    return df[df["bot"].isin(list(bots))].reset_index(drop=True)


def _series(rows: list[dict], columns: Sequence[str] = ()) -> pd.DataFrame:
    """Service time-series rows (with `bucket`) as a frame with a `ts` column, oldest first."""
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["ts", *columns])
    if "bucket" in df:
        df = df.rename(columns={"bucket": "ts"})
    if not df.empty:
        df["ts"] = pd.to_datetime(df["ts"])
    return df


def _numeric(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for col in columns:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
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


def regroup(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Re-aggregate a breakdown (e.g. by model, bot and agent) to fewer keys: additive columns are
    summed, rates recomputed; so one query serves several charts."""
    if df.empty:
        return df
    cols = [c for c in ADDITIVE if c in df.columns]
    out = _with_rates(df.groupby(list(keys), as_index=False, dropna=False)[cols].sum())
    return out.sort_values("cost_usd", ascending=False).reset_index(drop=True) if "cost_usd" in out else out


# ---- overview ---------------------------------------------------------------------------------


def open_alerts(store: Store, limit: int = 20) -> pd.DataFrame:
    """`monitoring.open_alerts`: alerts firing or acknowledged, critical first, newest first."""
    return pd.DataFrame(monitoring.open_alerts(store, limit), columns=list(monitoring.OPEN_ALERT_COLUMNS))


def bots_now(store: Store, now: datetime | None = None) -> pd.DataFrame:
    """`monitoring.bots_now`: per bot, the last hour's LLM figures, spend today, SLA breaches now."""
    cols = ["bot", "requests_1h", "error_rate_1h", "p50_ms", "p95_ms", "spend_today_usd", "slow_operations"]
    return pd.DataFrame(monitoring.bots_now(store, now), columns=cols)


def slow_bots(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
              now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`monitoring.slow_bots`: which bot is slow, since when, and what it costs."""
    cols = ["bot", "operation", "p95_now", "target_p95", "breaching_since", "buckets", "spend_usd"]
    df = pd.DataFrame(monitoring.slow_bots(store, window, bots, now), columns=cols)
    df["breaching_since"] = pd.to_datetime(df["breaching_since"])
    return df


# ---- LLM calls: requests, latency, tokens, spend (LLMObservabilityService) ----------------------


def _llm_series(store: Store, window: Window, bots: Sequence[str] | None, now: datetime | None,
                group_by: Sequence[str] = ()) -> list[dict[str, Any]]:  # fmt: skip
    return LLMObservabilityService(store).llm_timeseries(
        window, chart_granularity(window), group_by=tuple(group_by), bot=_bots(bots), now=now
    )


# columns that add up: a bucket without calls holds 0 of each (rates and latencies stay missing)
ADDITIVE = ("requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "total_tokens", "cost_usd", "cost_saved_usd")  # fmt: skip
STEP_S = {"minute": 60, "hour": 3600, "day": 86_400}


def _quiet_buckets_as_zero(
    store: Store, df: pd.DataFrame, by: str, window: Window, now: datetime | None
) -> pd.DataFrame:
    """The chart's buckets without calls, from the window's start (or the store's first call, when
    later) to now, as rows of zero calls per group: the rollups hold no row for a quiet minute, and
    a line drawn straight from 18 calls to 37 across a system-wide stop hid the stop. Before the
    store's first call it held nothing: left out, not drawn as quiet."""
    if df.empty or by not in df:
        return df
    now = resolve_now(now)
    step = STEP_S[chart_granularity(window)]
    end = pd.Timestamp(now).floor(f"{step}s")
    begin = LLMObservabilityService(store).calls_begin(now - timedelta(seconds=window_seconds(window)), now)
    first = min(df["ts"].min(), pd.Timestamp(begin).ceil(f"{step}s")) if begin is not None else df["ts"].min()
    idx = pd.date_range(first, max(end, df["ts"].max()), freq=f"{step}s")
    keys = df[by].fillna(NO_GROUP)
    full = pd.MultiIndex.from_product([idx, sorted(keys.unique(), key=str)], names=["ts", by])
    out = df.assign(**{by: keys}).set_index(["ts", by]).reindex(full).reset_index()
    for col in ADDITIVE:
        if col in out:
            out[col] = out[col].fillna(0)
    return out


NO_GROUP = "(none)"  # calls recorded without a bot (or model, agent)


def requests_series(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """LLM requests, errors, tokens and cost per chart bucket and bot (columns ts, bot, ...); a
    quiet bucket is 0 requests, not a gap the chart's line jumps over."""
    df = _series(_llm_series(store, window, bots, now, ("bot",)), ("bot", "requests"))
    return _quiet_buckets_as_zero(store, df, "bot", window, now)


def token_series(store: Store, window: Window = "24h", bots: Sequence[str] | None = None, by: str = "model",
                 now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per chart bucket and model (or bot, agent): requests, cache hits, the four token counts,
    cost (`llm_timeseries`)."""
    if by not in ("model", "bot", "agent"):
        raise ValueError("by must be model, bot or agent")
    df = _series(_llm_series(store, window, bots, now, (by,)), (by, *TOKEN_SERIES_COLUMNS))
    return _quiet_buckets_as_zero(store, df, by, window, now)


def cache_hit_series(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                     now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """Per chart bucket: requests, cache hits and the cache hit rate over the selected bots."""
    return _series(_llm_series(store, window, bots, now), ("requests", "cache_hits", "cache_hit_rate"))


def latency_by_bot(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """LLM latency P50/P95/P99, mean, min, max and count per bot (`latency_by_bot`)."""
    reports = LLMObservabilityService(store).latency_by_bot(window, bots=_bots(bots), now=now)
    return pd.DataFrame([{**r.as_dict(), "bot": b} for b, r in reports.items() if r.count],
                        columns=["bot", "p50", "p95", "p99", "mean", "min", "max", "count", "approximate"])  # fmt: skip


def llm_breakdown(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                  by: Sequence[str] = ("model",), now: datetime | None = None,
                  percentiles: bool = False) -> pd.DataFrame:  # fmt: skip
    """`cost_breakdown`: LLM totals grouped by any of model, provider, bot, agent, most expensive
    first (with latency percentiles when asked)."""
    rows = LLMObservabilityService(store).cost_breakdown(
        tuple(by), window, bot=_bots(bots), now=now, percentiles=percentiles
    )
    df = pd.DataFrame(rows)
    for k in by:
        if k in df:
            df[k] = df[k].fillna("(none)")
    return df


def llm_totals(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
               now: datetime | None = None) -> dict:  # fmt: skip
    """The window's totals (`LLMObservabilityService.totals`): requests, tokens, cost, saved, rates."""
    return LLMObservabilityService(store).totals(window, bot=_bots(bots), now=now)


TOP_CONVERSATIONS_MAX_S = 86_400  # per-conversation totals come from raw rows: at most a day of them


def top_conversations_capped(window: Window) -> bool:
    """Whether `top_conversations` over `window` covers less than it (only its last 24 hours)."""
    return window_seconds(window) > TOP_CONVERSATIONS_MAX_S


def top_conversations_span(window: str) -> str:
    """The window `top_conversations` over `window` (a range name such as "6h") covers, in words,
    for its tables' help and captions: the chosen range up to 24 hours, else the last 24 hours."""
    return "the last 24 hours" if top_conversations_capped(window) else f"the last {window}"


def top_conversations(store: Store, window: Window = "24h", bots: Sequence[str] | None = None, limit: int = 20,
                      order: str = "tokens", now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`top_conversations`: conversations using the most tokens (or cost). Raw rows grouped in SQL,
    so windows longer than 24 hours are capped at 24 hours (there is no per-conversation rollup;
    `top_conversations_span` says it in words)."""
    rows = LLMObservabilityService(store).top_conversations(
        min(window_seconds(window), TOP_CONVERSATIONS_MAX_S), limit=limit, by="cost" if order == "cost" else "tokens",
        bot=_bots(bots), now=now,
    )  # fmt: skip
    cols = list(TOP_CONVERSATION_COLUMNS)
    return pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)


def cost_by_day(store: Store, window: Window = "30d", bots: Sequence[str] | None = None,
                now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`daily_spend` by model over the UTC days the window touches: ts (the day), model, cost_usd,
    requests, cost_saved_usd."""
    now = resolve_now(now)
    days = (now.date() - (now - timedelta(seconds=window_seconds(window))).date()).days + 1
    rows = LLMObservabilityService(store).daily_spend(days, by="model", bot=_bots(bots), now=now)
    cols = ["ts", "model", "cost_usd", "requests", "cost_saved_usd"]
    return pd.DataFrame([(r["day"], r["model"], r["cost_usd"], r["requests"], r["cost_saved_usd"]) for r in rows],
                        columns=cols)  # fmt: skip


def unknown_models(store: Store, window: Window = "30d", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`unknown_model_calls` as a frame: calls to models the price table did not know (priced 0),
    calls priced above the ceiling (`withheld_usd`: their price, kept out of spend) and calls that
    reported no usage (`usage_missing_calls`); of the selected bots ([] or None: all)."""
    rows = LLMObservabilityService(store).unknown_model_calls(window, bot=_bots(bots), now=now)
    return pd.DataFrame(rows, columns=["model", "provider", "calls", "usage_missing_calls", "input_tokens",
                                       "output_tokens", "caller_cost_usd", "withheld_usd", "first_seen",
                                       "last_seen"])  # fmt: skip


def spend_forecast(store: Store, now: datetime | None = None) -> dict:
    """`spend_forecast` (month to date, forecast, budget) plus `spend_today_usd` (Overview's figure,
    the same service call) and `daily`: spend per UTC day of the month so far (`daily_spend`) with
    its running total (a frame)."""
    now = resolve_now(now)
    svc = LLMObservabilityService(store)
    fc = svc.spend_forecast(now=now)
    rows = svc.daily_spend(now.day, now=now)
    daily = pd.DataFrame([(r["day"], r["cost_usd"], r["cost_saved_usd"]) for r in rows],
                         columns=["day", "cost_usd", "saved_usd"])  # fmt: skip
    daily["cumulative_usd"] = daily["cost_usd"].cumsum()
    return {**fc, "spend_today_usd": svc.spend_today_usd(now=now), "daily": daily}


# ---- agent costs (DecisionCostTracker) ----------------------------------------------------------


def cost_report(store: Store, window: Window = "7d", bots: Sequence[str] | None = None,
                now: datetime | None = None, anomaly_page: int = 1) -> dict:  # fmt: skip
    """`DecisionCostTracker.report` with the console's thresholds (COST_ANOMALY_Z and
    COST_ANOMALY_MIN_USD): {"ranking": frame, "anomalies": frame (page `anomaly_page` of
    ANOMALY_PAGE_SIZE, highest z first), "anomaly_count" (all of them), "pages", "z_threshold",
    "min_cost_usd", "min_decisions", "total_cost"}. An anomaly is one call costing at least the dollar
    threshold AND more than z_threshold sample standard deviations above its agent's mean (agents
    with fewer than min_decisions calls are not judged); each row's `trace_id` opens the call. `bots`
    filters the anomaly rows of the page."""
    page = max(int(anomaly_page), 1)
    tracker = DecisionCostTracker.from_settings(store, get_settings())
    rep = tracker.report(window, now=resolve_now(now), max_anomalies=ANOMALY_PAGE_SIZE,
                         anomaly_offset=(page - 1) * ANOMALY_PAGE_SIZE)  # fmt: skip
    anomalies = pd.DataFrame([asdict(a) for a in rep.anomalies])
    if not anomalies.empty:
        anomalies = _only_bots(anomalies.drop(columns=["trace_ids"], errors="ignore"), bots)
    return {"ranking": pd.DataFrame(rep.efficiency_ranking), "anomalies": anomalies,
            "anomaly_count": rep.anomaly_count, "pages": max(-(-rep.anomaly_count // ANOMALY_PAGE_SIZE), 1),
            "page": page, "z_threshold": rep.z_threshold, "min_cost_usd": rep.min_cost_usd,
            "min_decisions": rep.min_decisions, "total_cost": rep.total_cost}  # fmt: skip


def calls_by_ids(store: Store, trace_ids: Sequence[str]) -> pd.DataFrame:
    """`DecisionCostTracker.calls`: the LLM calls behind an anomaly, most expensive first."""
    return pd.DataFrame(DecisionCostTracker(store).calls(list(trace_ids)), columns=list(CALL_COLUMNS))


# ---- bot operations and SLA (PerformanceTracker) ------------------------------------------------


def sla_compliance(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`check_sla_compliance` as a frame, one row per SLA target: requests, errors, error and cache
    hit rate, P50/P95/P99 against their targets, violations; `compliant` is None for a target
    without operations in the window. `bots` filters rows."""
    df = pd.DataFrame(PerformanceTracker(store).check_sla_compliance(window, now=resolve_now(now)))
    if df.empty:
        return df
    df = _only_bots(df, bots).rename(
        columns={"actual_p50": "p50", "actual_p95": "p95", "actual_p99": "p99", "count": "requests"}
    )
    df["compliant"] = df["compliant"].astype(object).where(df["requests"] > 0, None)
    df["violations"] = df["violations"].map("; ".join)
    return df.sort_values(["bot", "operation"]).reset_index(drop=True)


def sla_evaluation(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The one SLA evaluation (`sla.evaluate`) of the window as {"rows": frame (one row per SLA
    target: status, requests, P50/P95/P99 and their targets, p95_ratio, breaches), "window",
    "source", "approximate"}; `bots` filters rows."""
    ev = sla.evaluate(store, window, now=resolve_now(now)).for_bots(_bots(bots))
    cols = ["bot", "operation", "status", "requests", "errors", "error_rate", "cache_hit_rate", "p50", "p95",
            "p99", "target_p50", "target_p95", "target_p99", "p95_ratio", "breaches"]  # fmt: skip
    df = pd.DataFrame([r.as_dict() for r in ev.rows], columns=cols)
    df = df.sort_values(["bot", "operation"]).reset_index(drop=True)
    return {"rows": df, "window": ev.window, "source": ev.source, "approximate": ev.approximate}


def sla_alert_breaches(
    store: Store, bots: Sequence[str] | None = None, now: datetime | None = None
) -> pd.DataFrame:
    """`sla.alert_breaches`: the pairs the `sla_violation` rule acts on now (bot, operation,
    operations, p95, target_p95, p95_ratio), the same function as Overview's column."""
    rows = sla.alert_breaches(store, now=resolve_now(now), bots=_bots(bots))
    cols = ["bot", "operation", "requests", "p95", "target_p95", "p95_ratio"]
    return pd.DataFrame([{k: r.as_dict()[k] for k in cols} for r in rows], columns=cols)


def bot_throughput(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`get_all_bot_stats` per bot: operations (`requests`) and per minute, errors, error and cache
    hit rate, P50/P95/P99."""
    stats = PerformanceTracker(store).get_all_bot_stats(window, bots=_bots(bots), now=resolve_now(now))
    df = pd.DataFrame(list(stats.values()))
    if df.empty:
        return df
    df = df.rename(columns={"count": "requests", "error_count": "errors"})
    df["per_min"] = df["requests"] / (window_seconds(window) / 60.0)
    return df


def ops_latency_series(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                       now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`bot_timeseries` per chart bucket and bot: P50/P95/P99 of operation durations, requests,
    error rate."""
    rows = PerformanceTracker(store).bot_timeseries(window, chart_granularity(window), bot=_bots(bots),
                                                    now=resolve_now(now))  # fmt: skip
    return _series(rows, ("bot", "requests", "p95"))


# ---- interactions and handoffs (BotMetricsCollector) --------------------------------------------


def bot_summaries(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                  now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`get_system_summary`'s per-bot summaries (bots with interactions only)."""
    summary = BotMetricsCollector(store).get_system_summary(timedelta(seconds=window_seconds(window)),
                                                            now=resolve_now(now))  # fmt: skip
    rows = [{"bot": b, **s} for b, s in summary["bots"].items() if s["total_interactions"]]
    return _only_bots(pd.DataFrame(rows), bots)


def interaction_series(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                       now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`interaction_timeseries` per chart bucket and bot: interactions, errors, mean duration."""
    rows = BotMetricsCollector(store).interaction_timeseries(
        timedelta(seconds=window_seconds(window)),
        chart_granularity(window),
        bots=_bots(bots),
        now=resolve_now(now),
    )
    return _series(rows, ("bot", "interactions", "mean_ms"))


def handoff_summary(store: Store, window: Window = "1h", now: datetime | None = None) -> dict:
    """`handoff_summary`: totals, success rate, durations, blocked."""
    return BotMetricsCollector(store).handoff_summary(
        timedelta(seconds=window_seconds(window)), now=resolve_now(now)
    )


def handoff_matrix(store: Store, window: Window = "1h", bots: Sequence[str] | None = None,
                   now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`handoff_matrix`: source -> target, handoffs, successes, success rate, blocked, mean duration.
    With the handoff step among `bots` (Bot health's filter, an alert on the step) every handoff is
    shown: each one goes through the step, though none names it as its source or target."""
    if bots and sla.HANDOFF_STEP in bots:
        bots = None
    rows = BotMetricsCollector(store).handoff_matrix(timedelta(seconds=window_seconds(window)), bots=_bots(bots),
                                                     now=resolve_now(now))  # fmt: skip
    df = pd.DataFrame(rows, columns=["source", "target", "count", "successes", "success_rate", "blocked",
                                     "avg_duration_ms"])  # fmt: skip
    df = _numeric(df.rename(columns={"count": "handoffs", "avg_duration_ms": "mean_ms"}), ("success_rate",))
    return df.sort_values(["source", "target"]).reset_index(drop=True)


# ---- activity feed ----------------------------------------------------------------------------


def activity_page(store: Store, user_name: str | None, severities: Sequence[str] | None = None,
                  event_type: str | None = None, account_id: str | None = None, unread_only: bool = False,
                  page: int = 1, page_size: int = 50, vip_first: bool = False, window: Window = "7d",
                  now: datetime | None = None) -> tuple[pd.DataFrame, int]:  # fmt: skip
    """`activity.feed_page` as (frame, total matching): one page of the feed, newest first, with a
    `read` column for `user_name` (VIP accounts and high severities first with `vip_first`)."""
    rows, total = activity.feed_page(store, user_name, severities, event_type, account_id, unread_only, page,
                                     page_size, vip_first, window, now)  # fmt: skip
    return pd.DataFrame(rows, columns=list(activity.FEED_COLUMNS)), total


def chart_step_s(window: Window) -> int:
    """Seconds per bucket of the window's charts (`analytics.window.chart_granularity`)."""
    return {"minute": 60, "hour": 3600, "day": 86_400}[chart_granularity(window)]


def activity_counts(store: Store, window: Window = "24h", now: datetime | None = None,
                    severities: Sequence[str] | None = None, event_type: str | None = None,
                    account_id: str | None = None) -> pd.DataFrame:  # fmt: skip
    """`activity.severity_counts`: events per time bucket (`ts`) and severity, with the feed's filters."""
    rows = activity.severity_counts(store, window, now, severities, event_type, account_id)
    df = pd.DataFrame(rows, columns=["ts", "severity", "events"])
    df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="s")
    return df


def vip_conversations(
    store: Store, limit: int = 50, now: datetime | None = None, days: int = 7
) -> pd.DataFrame:
    """`conversations.vip_conversations`: VIP accounts' conversations, most recently active first."""
    rows = conversations.vip_conversations(store, limit, now, days)
    return pd.DataFrame(rows, columns=list(conversations.VIP_COLUMNS))


# ---- conversation quality ---------------------------------------------------------------------


SCORE_ROWS = 200  # the conversations Conversation quality lists: the most recently active ones


def conversation_scores(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                        limit: int = SCORE_ROWS, now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`conversations.conversation_scores`: the `limit` most recently active conversations with
    their latest scores (a page showing them says how many of all it shows)."""
    rows = conversations.conversation_scores(store, window, bots, limit, now)
    df = pd.DataFrame(rows, columns=list(conversations.SCORE_COLUMNS))
    return _numeric(df, ("sentiment", "drift", "engagement", "quality"))


def quality_summary(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`conversations.quality_summary` per bot, with the resolution rate of the scored ones."""
    rows = conversations.quality_summary(store, window, bots, now)
    df = pd.DataFrame(rows, columns=list(conversations.SUMMARY_COLUMNS))
    if not df.empty:
        df["bot"] = df["bot"].fillna("(none)")
        df = _numeric(df, ("quality", "sentiment", "engagement", "drift"))
        df["resolution_rate"] = df["resolved"].astype(float) / df["scored"].where(df["scored"] > 0)
    return df


def quality_histogram(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                      now: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """`conversations.quality_histogram` (every scored conversation of the window, counted in SQL),
    with each bin's range: `low` and `high` as 0-1 ratios and `range` in words ("45–50 %")."""
    rows = conversations.quality_histogram(store, window, bots, now=now)
    df = pd.DataFrame(rows, columns=list(conversations.HISTOGRAM_COLUMNS))
    width = 1.0 / conversations.QUALITY_BINS
    df["bot"] = df["bot"].fillna("(none)")
    df["low"] = df["bin"].astype(float) * width
    df["high"] = df["low"] + width
    df["range"] = [f"{lo * 100:.0f}–{hi * 100:.0f} %" for lo, hi in zip(df["low"], df["high"], strict=True)]
    return df
