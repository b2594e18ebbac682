"""Cached reads for the console pages: each is `common.cached_query` over a frame of
`observability.ui.frames` or a function of an analytics service, so a page never queries the store
more than once per TTL (15 s) for the same arguments, and pages read through this one layer.

Arguments are plain values (window names such as "24h", bot tuples, page numbers) so Streamlit
can hash them; `bots=()` means every bot.
"""

from __future__ import annotations

from observability.analytics import activity, conversations, monitoring, sla
from observability.ui import frames
from observability.ui.common import cached_query

# overview and shared
overview_kpis = cached_query(monitoring.overview_kpis)
known_bots = cached_query(monitoring.known_bots)
open_alerts = cached_query(frames.open_alerts)
bots_now = cached_query(frames.bots_now)

# LLM calls (LLMObservabilityService)
requests_series = cached_query(frames.requests_series)
latency_by_bot = cached_query(frames.latency_by_bot)
token_series = cached_query(frames.token_series)
cache_hit_series = cached_query(frames.cache_hit_series)
llm_breakdown = cached_query(frames.llm_breakdown)
llm_totals = cached_query(frames.llm_totals)
top_conversations = cached_query(frames.top_conversations)
cost_by_day = cached_query(frames.cost_by_day)
unknown_models = cached_query(frames.unknown_models)
spend_forecast = cached_query(frames.spend_forecast)  # call spend_forecast.clear() after a budget change

# agent costs (DecisionCostTracker)
cost_report = cached_query(frames.cost_report)
calls_by_ids = cached_query(frames.calls_by_ids)

# bot operations and SLA (PerformanceTracker)
sla_compliance = cached_query(frames.sla_compliance)
sla_evaluation = cached_query(frames.sla_evaluation)
sla_alert_breaches = cached_query(frames.sla_alert_breaches)
alert_window_s = sla.alert_window_s
bot_throughput = cached_query(frames.bot_throughput)
ops_latency_series = cached_query(frames.ops_latency_series)
slow_bots = cached_query(frames.slow_bots)

# interactions and handoffs (BotMetricsCollector)
bot_summaries = cached_query(frames.bot_summaries)
interaction_series = cached_query(frames.interaction_series)
handoff_summary = cached_query(frames.handoff_summary)
handoff_matrix = cached_query(frames.handoff_matrix)

# live monitoring
live_metrics = cached_query(monitoring.live_metrics)
drill_down = cached_query(monitoring.drill_down)

# activity feed
activity_filters = cached_query(activity.feed_filters)
activity_page = cached_query(frames.activity_page)  # call activity_page.clear() after marking as read
activity_counts = cached_query(frames.activity_counts)
unread_count = cached_query(activity.unread_count)
vip_conversations = cached_query(frames.vip_conversations)

# conversation quality
conversation_scores = cached_query(frames.conversation_scores)
quality_summary = cached_query(frames.quality_summary)
quality_histogram = cached_query(frames.quality_histogram)
analyze_conversation = cached_query(conversations.analyze_conversation)
handoff_effectiveness = cached_query(conversations.handoff_effectiveness)
