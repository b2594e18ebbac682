"""The metric catalog: every figure the console, an alert rule or `/metrics` shows, defined once.

Each `Metric` names one thing: its `label` (what a page calls it), `unit` (how it is formatted:
see `UNITS`), `formula` (what it counts, in words), `window` (over which time) and `source`
(`exact` from raw rows, `rollups`, or `window`: exact under 24 hours and from rollups beyond, see
`analytics.window.source_note`). `alert_metric` names the alert rule metric family computed by the
same service function, `prometheus` the `/metrics` family.

Different things get different names. There are four cache figures, for example:
`operation_cache_hit_rate` (tracked operations served from cache), `response_cache_hit_rate` (bot
responses served from cache, what `low_cache_hit_rate` watches), `llm_cache_hit_rate` (LLM calls
answered from a response cache) and `prompt_cache_token_share` (cache-read tokens over input tokens).

Pages format through `observability.ui.fmt`, which reads this module; the alert inputs and the
Prometheus collector compute these figures through the same service functions.
"""

from __future__ import annotations

from dataclasses import dataclass

# unit -> how a value is written for people (see observability.ui.fmt)
UNITS = (
    "count",
    "per_min",
    "ratio",
    "percent",
    "ms",
    "usd",
    "usd_precise",
    "tokens",
    "score",
    "signed",
    "x",
    "sigma",
)

EXACT = "exact"
ROLLUPS = "rollups"
WINDOW = "window"  # exact under 24 hours, rollups beyond (analytics.window.source_note)
TARGET = "target"  # a configured target (data/sla_targets.json), not a measurement

SELECTED = "the selected window"
ALERT_WINDOW = "the alert window (ALERT_METRIC_WINDOW_S, 5 minutes by default)"


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    formula: str
    window: str = SELECTED
    source: str = WINDOW
    alert_metric: str | None = None
    prometheus: str | None = None

    @property
    def help(self) -> str:
        """One sentence for a tooltip: what it counts, over which window, how exact."""
        return self.describe()

    def describe(self, window: str | None = None) -> str:
        """The help text, over `window` (in words) when the figure is shown over another window (a
        target is the same over every window: it keeps its own)."""
        if self.source == TARGET:
            window = None
        how = {EXACT: "exact, from raw events", ROLLUPS: "from rollups",
               WINDOW: "exact under 24 hours, from rollups (percentiles within 1%) beyond",
               TARGET: "a set target, not measured"}[self.source]  # fmt: skip
        return f"{self.formula}. Window: {window or self.window}; {how}."


_METRICS = (
    # -- tracked operations (bot_operations; PerformanceTracker)
    Metric("operations", "Operations", "count", "Tracked bot operations", prometheus="obs_bot_operations_total"),
    Metric("operations_per_min", "Operations / min", "per_min", "Tracked operations divided by the window's minutes"),
    Metric("operation_error_rate", "Operation error rate", "ratio", "Failed operations / operations"),
    Metric("operation_cache_hit_rate", "Operation cache hit rate", "ratio",
           "Operations marked cache_hit / operations", prometheus="obs_bot_operation_cache_hits_total"),
    Metric("operation_p50_ms", "P50 ms", "ms", "Median operation duration"),
    Metric("operation_p95_ms", "P95 ms", "ms", "95th percentile of operation durations"),
    Metric("operation_p99_ms", "P99 ms", "ms", "99th percentile of operation durations"),
    # -- SLA targets (data/sla_targets.json): what the percentiles above are held to, not measured
    Metric("operation_p50_target_ms", "P50 target", "ms",
           "The SLA target for the operation's P50 (median duration) in data/sla_targets.json; a P50 above it breaches",
           window="every window alike", source=TARGET),
    Metric("operation_p95_target_ms", "P95 target", "ms",
           "The SLA target for the operation's P95 (95th percentile of durations) in data/sla_targets.json; a P95 "
           "above it breaches", window="every window alike", source=TARGET),
    Metric("operation_p99_target_ms", "P99 target", "ms",
           "The SLA target for the operation's P99 (99th percentile of durations) in data/sla_targets.json; a P99 "
           "above it breaches", window="every window alike", source=TARGET),
    # -- SLA (analytics.sla.evaluate)
    Metric("sla_compliance", "SLA compliance", "count",
           "Bot × operation pairs with operations whose P50, P95 and P99 are all within target, of those with operations"),
    Metric("sla_breaches", "SLA breaches", "count",
           "Bot × operation pairs with a P50, P95 or P99 above its target"),
    Metric("sla_p95_ratio", "P95 / target", "x", "An operation's P95 divided by its P95 target (above 1 breaches)",
           alert_metric="sla_p95_ratio", prometheus="obs_sla_p95_ratio"),
    Metric("sla_p95_ratio_alert", "P95 / target (alert window)", "x",
           "The worst P95 / target ratio of the bot's operations, as the sla_violation rule sees it",
           window=ALERT_WINDOW, source=EXACT, alert_metric="sla_p95_ratio", prometheus="obs_sla_p95_ratio"),
    # -- LLM calls (llm_calls; LLMObservabilityService)
    Metric("llm_requests", "LLM requests", "count", "LLM calls", prometheus="obs_llm_requests_total"),
    Metric("llm_requests_per_min", "LLM requests / min", "per_min", "LLM calls per minute"),
    Metric("llm_error_rate", "LLM error rate", "ratio", "Failed LLM calls / LLM calls"),
    Metric("llm_p50_ms", "LLM P50 latency", "ms", "Median LLM call latency"),
    Metric("llm_p95_ms", "LLM P95 latency", "ms", "95th percentile of LLM call latency"),
    Metric("llm_p99_ms", "LLM P99 latency", "ms", "99th percentile of LLM call latency"),
    Metric("llm_mean_ms", "LLM mean latency", "ms", "Mean LLM call latency (the average)"),
    Metric("llm_failed_calls", "Failed LLM calls", "count", "LLM calls that failed (recorded with success false)"),
    Metric("llm_call_latency_ms", "Latency", "ms", "Latency of the one LLM call, as recorded",
           window="the call itself", source=EXACT),
    Metric("llm_cache_hit_rate", "LLM response-cache hit rate", "ratio",
           "LLM calls answered from a response cache (cache_hit) / LLM calls"),
    Metric("prompt_cache_token_share", "Prompt-cache token share", "ratio",
           "Cache-read input tokens / all input tokens (prompt caching)"),
    Metric("llm_cost_usd", "LLM spend", "usd", "Cost of LLM calls, every provider", prometheus="obs_llm_cost_usd_total"),
    Metric("llm_cost_saved_usd", "Saved by caching", "usd", "What cached tokens and cached responses saved",
           prometheus="obs_llm_cache_savings_usd_total"),
    # three spend figures that differ on purpose: which providers, and since when (all UTC)
    Metric("spend_today_usd", "Spend today, all providers", "usd",
           "Cost of LLM calls of every provider and model (Claude included)", window="since 00:00 UTC today",
           source=EXACT),
    Metric("claude_cost_today_usd", "Claude spend today", "usd",
           "Cost of Claude calls only (provider Anthropic or a claude-* model); other providers are left out",
           window="since 00:00 UTC today", source=EXACT),
    Metric("spend_month_to_date_usd", "Spend month to date, all providers", "usd",
           "Cost of LLM calls of every provider and model, today included",
           window="since the 1st of the month, 00:00 UTC", source=ROLLUPS),
    Metric("claude_requests_today", "Claude calls today", "count",
           "Claude calls only (provider Anthropic or a claude-* model); other providers are left out",
           window="since 00:00 UTC today", source=EXACT),
    Metric("response_time_alert_ms", "Mean LLM latency", "ms",
           "Mean LLM call latency, as the high_response_time rule judges it against the response_time thresholds",
           window=ALERT_WINDOW, source=EXACT, alert_metric="response_time"),
    Metric("spend_forecast_usd", "Forecast to month end", "usd",
           "Month-to-date spend plus the mean daily spend times the days left, every provider; the mean is over "
           "the last 7 days, the month so far or the time since the store's first call, whichever is shortest",
           window="the calendar month, UTC", source=ROLLUPS),
    Metric("monthly_budget_usd", "Monthly budget", "usd", "MONTHLY_BUDGET_USD, the budget the forecast is held to",
           window="the calendar month, UTC", source=EXACT),
    Metric("saved_month_to_date_usd", "Saved by caching, month to date", "usd",
           "What cached tokens and cached responses saved, every provider",
           window="since the 1st of the month, 00:00 UTC", source=ROLLUPS),
    Metric("llm_cost_per_request_usd", "Cost per request", "usd_precise", "LLM spend / LLM calls"),
    Metric("input_tokens", "Input tokens", "tokens", "Input (prompt) tokens of LLM calls, cached ones included"),
    Metric("output_tokens", "Output tokens", "tokens", "Output (completion) tokens of LLM calls"),
    Metric("cache_read_tokens", "Cache-read tokens", "tokens", "Input tokens read from the prompt cache"),
    Metric("cache_write_tokens", "Cache-write tokens", "tokens", "Input tokens written to the prompt cache"),
    Metric("total_tokens", "Total tokens", "tokens", "Input + output tokens of LLM calls"),
    Metric("unpriced_calls", "Unpriced calls", "count",
           "LLM calls stored at $0 because their cost is unknown: a model missing from data/model_prices.json, "
           "a price above OTLP_COST_CEILING_USD, or no token usage reported"),
    Metric("usage_missing_calls", "Calls without usage", "count",
           "Successful LLM calls that reported no tokens, so their spend is missing, not $0 (an OpenAI stream "
           'reports usage only when created with stream_options={"include_usage": True})'),
    # -- agents (DecisionCostTracker)
    Metric("agent_decisions", "Decisions", "count", "LLM calls made by the agent"),
    Metric("agent_cost_usd", "Agent spend", "usd", "Cost of the agent's LLM calls"),
    Metric("agent_cost_per_decision_usd", "Cost per decision", "usd_precise", "Agent spend / decisions"),
    Metric("agent_tokens_per_decision", "Tokens per decision", "tokens", "Input + output tokens / decisions"),
    Metric("agent_success_rate", "Decision success rate", "ratio", "Decisions that succeeded (no error) / decisions"),
    Metric("agent_cost_per_1k_tokens_usd", "Cost per 1,000 tokens", "usd_precise",
           "Agent spend / (input + output tokens) × 1,000"),
    Metric("cost_anomaly_z", "z-score", "sigma",
           "Standard deviations of the call's cost above its agent's mean cost over the window"),
    Metric("anomaly_call_cost_usd", "Call cost", "usd_precise", "Cost of the one LLM call"),
    Metric("agent_mean_cost_usd", "Agent's mean call cost", "usd_precise", "The agent's mean cost per call over the window"),
    # -- bot responses (bot_interactions; BotMetricsCollector)
    Metric("interactions", "Bot responses", "count", "Bot responses (interactions)", source=EXACT),
    Metric("response_error_rate", "Response error rate", "ratio", "Failed bot responses / bot responses",
           source=EXACT, alert_metric="error_rate"),
    Metric("response_cache_hit_rate", "Response cache hit rate", "ratio",
           "Bot responses served from cache / bot responses", source=EXACT, alert_metric="cache_hit_rate"),
    Metric("response_p95_ms", "Response P95", "ms", "95th percentile of bot response time", source=EXACT,
           alert_metric="response_time_p95", prometheus="obs_bot_response_duration_seconds"),
    Metric("response_mean_ms", "Mean response time", "ms", "Mean bot response time (the average)",
           source=EXACT),
    Metric("response_p50_ms", "Response P50", "ms", "Median (P50) of bot response time", source=EXACT),
    Metric("response_p99_ms", "Response P99", "ms", "99th percentile of bot response time", source=EXACT),
    Metric("response_max_ms", "Slowest response", "ms", "Slowest bot response time (the max)", source=EXACT),
    Metric("response_success_rate", "Response success rate", "ratio", "Bot responses that succeeded / bot responses",
           source=EXACT),
    Metric("responses_succeeded", "Succeeded", "count", "Bot responses that succeeded", source=EXACT),
    Metric("responses_failed", "Failed", "count", "Bot responses that failed", source=EXACT),
    Metric("responses_from_cache", "Served from cache", "count", "Bot responses served from cache", source=EXACT),
    Metric("response_time_avg_ms", "Mean LLM response time", "ms", "Mean LLM call latency", window="the last hour",
           source=EXACT),
    # -- handoffs (handoffs; BotMetricsCollector)
    Metric("handoffs", "Handoffs", "count", "Handoffs attempted, blocked ones included", source=EXACT),
    Metric("handoff_success_rate", "Handoff success rate", "ratio",
           "Successful handoffs / handoffs that were not blocked", source=EXACT),
    Metric("handoff_failure_rate", "Handoff failure rate", "ratio",
           "Failed handoffs / handoffs that were not blocked", source=EXACT, alert_metric="failure_rate"),
    Metric("handoff_failure_rate_alert", "Handoff failure rate (alert window)", "ratio",
           "Failed handoffs / handoffs that were not blocked, as the handoff_failure rule sees it",
           window=ALERT_WINDOW, source=EXACT, alert_metric="failure_rate"),
    Metric("handoff_mean_ms", "Mean handoff time", "ms", "Mean duration of the handoffs", source=EXACT),
    Metric("handoff_successes", "Successes", "count", "Handoffs that succeeded (a blocked one never does)",
           source=EXACT),
    Metric("handoffs_blocked", "Blocked (circular)", "count", "Handoffs blocked as circular", source=EXACT),
    # not Bot health's "handoff step · execute" P95: that row times only the handoff service's own
    # tracked operation (bot_operations), this one the whole handoff each bot records
    Metric("handoff_p95_ms", "Handoff P95, whole handoff", "ms",
           "95th percentile of the duration bots record with each handoff (record_handoff, the handoffs table): "
           "the whole handoff, the source bot's check included, blocked ones too. Bot health's "
           "“handoff step · execute” row is another figure: the handoff service's own execute operation alone "
           "(track_operation), so it reads lower", source=EXACT),
    Metric("blocked_handoff_rate", "Blocked handoff rate", "ratio", "Handoffs blocked as circular / handoffs",
           source=EXACT),
    Metric("blocked_handoffs_1h", "Blocked handoffs (1h)", "count", "Handoffs blocked as circular",
           window="the last hour", source=EXACT, alert_metric="blocked_handoffs_1h"),
    # -- conversations, activity, alerts
    Metric("active_conversations", "Active conversations", "count",
           "Conversations not stopped with activity", window="the last 15 minutes", source=EXACT,
           prometheus="obs_active_conversations"),
    Metric("quality_score", "Quality", "ratio",
           "Mean conversation quality score, shown as a percentage (0 to 100 %)", source=EXACT),
    Metric("engagement", "Engagement", "ratio",
           "40 % the customer's mean message length (up to 100 characters), 30 % their share of questions, "
           "30 % their share of the messages; 0 to 100 %",
           source=EXACT),
    Metric("sentiment", "Sentiment", "signed", "Mean sentiment of the customer's messages, -1 (negative) to +1",
           source=EXACT),
    Metric("topic_drift", "Topic drift", "score", "How far the conversation moved off its first topic, 0 (on topic) to 1",
           source=EXACT),
    Metric("resolution_rate", "Resolution rate", "ratio", "Resolved conversations / scored conversations",
           source=EXACT),
    Metric("handoff_effectiveness_rate", "Effectiveness rate", "ratio",
           "Conversations handed from one bot to another that ended resolved / handed-off conversations",
           source=EXACT),
    Metric("unread_events", "Unread in range", "count",
           "Activity events in the selected range and filters that you have not marked as read", source=EXACT),
    Metric("conversations_today", "Conversations today", "count",
           "Conversations with a message or other activity, started today or before (a conversation running "
           "over midnight counts on both days; stopped ones included)", window="since 00:00 UTC today", source=EXACT),
    Metric("conversations_per_bucket", "Conversations with messages", "count",
           "Distinct conversations with at least one message in the interval", source=EXACT),
    Metric("messages_today", "Messages today", "count", "Messages of every conversation",
           window="since 00:00 UTC today", source=EXACT),
    Metric("messages", "Messages", "count", "Messages of every conversation", source=EXACT),
    # -- the live figures of source document 004 (analytics.monitoring.live_metrics; also on /metrics)
    Metric("ai_confidence_avg", "AI confidence (1h)", "score",
           "Mean of the ai_confidence values bots record (0 to 1)", window="the last hour", source=EXACT,
           prometheus="obs_ai_confidence_avg"),
    Metric("safety_score_avg", "Safety score (1h)", "score",
           "Mean of the safety_score values bots record (0 to 1)", window="the last hour", source=EXACT,
           prometheus="obs_safety_score_avg"),
    Metric("system_load", "System load, latest", "percent",
           "CPU utilisation of the leading worker's host, all cores (the system_load metric; not the Unix load average)",
           window="the latest reading (one per worker tick)", source=EXACT, prometheus="obs_system_load_percent"),
    Metric("human_interventions_today", "Take-overs today", "count",
           "Take-overs of a conversation by an operator", window="since 00:00 UTC today", source=EXACT,
           prometheus="obs_human_interventions_today"),
    Metric("ai_confidence", "AI confidence", "score", "Mean of the recorded ai_confidence values (0 to 1)",
           source=EXACT),
    Metric("safety_score", "Safety score", "score", "Mean of the recorded safety_score values (0 to 1)",
           source=EXACT),
    # -- what the threshold rules judge (analytics.threshold_figures.judged_now; Live monitoring's status)
    Metric("ai_confidence_alert", "AI confidence now", "score",
           "Mean of the recorded ai_confidence values, as the low_ai_confidence rule judges it",
           window=ALERT_WINDOW, source=EXACT, alert_metric="ai_confidence"),
    Metric("safety_score_alert", "Safety score now", "score",
           "Mean of the recorded safety_score values, as the low_safety_score rule judges it",
           window=ALERT_WINDOW, source=EXACT, alert_metric="safety_score"),
    Metric("system_load_alert", "System load now", "percent",
           "Mean of the recorded system_load values (CPU of the leading worker's host), as the "
           "high_system_load rule judges it", window=ALERT_WINDOW, source=EXACT, alert_metric="system_load"),
    Metric("system_load_mean", "System load, mean per interval", "percent",
           "Mean of the recorded system_load values in each interval of the chart", source=EXACT),
    Metric("human_interventions", "Human take-overs", "count", "Take-overs by an operator", source=EXACT),
    Metric("alerts_fired", "Alerts fired", "count", "Alerts fired", source=EXACT),
    Metric("claude_requests", "Claude requests, Claude models only", "count",
           "Claude calls (provider Anthropic or a claude-* model)"),
    Metric("claude_cost_usd", "Claude spend, Claude models only", "usd",
           "Cost of Claude calls (provider Anthropic or a claude-* model)"),
    Metric("llm_mean_bucket_ms", "Mean LLM latency per interval", "ms",
           "Mean latency of the LLM calls in each interval of the chart"),
    Metric("firing_alerts", "Open alerts", "count",
           "Alerts not resolved: firing, or acknowledged by someone handling them (the Alerts page counts each "
           "state apart)", window="now", source=EXACT,
           prometheus="obs_alerts_open"),
    Metric("cost_anomalies", "Cost anomalies", "count",
           "LLM calls whose cost is above both the dollar threshold and the z-score threshold of their agent",
           source=EXACT),
)  # fmt: skip

CATALOG: dict[str, Metric] = {m.name: m for m in _METRICS}


def get(name: str) -> Metric:
    """The catalog entry `name` (KeyError names the unknown metric)."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"no metric {name!r} in the catalog") from None


def for_alert(family: str) -> Metric | None:
    """The figure an alert rule's metric family is: the catalog entry computed by the same service
    function, the one over the alert window where there are several (SLA ratio, handoff failure
    rate); None for families no page shows."""
    found = [m for m in _METRICS if m.alert_metric == family]
    return next((m for m in found if m.window == ALERT_WINDOW), found[0] if found else None)
