"""Cached reads for the console pages: each is `common.cached_query` over a query function of
`observability.ui.dashboards` (frames over the analytics services) or `observability.analytics.monitoring`, so a
page never queries the store more than once per TTL (15 s) for the same arguments.

Arguments are plain values (window names such as "24h", bot tuples, page numbers) so Streamlit
can hash them; `bots=()` means every bot.
"""

from __future__ import annotations

from observability.analytics import monitoring
from observability.ui import dashboards as db
from observability.ui.common import cached_query

# overview and shared
overview_kpis = cached_query(db.overview_kpis)
known_bots = cached_query(db.known_bots)
open_alerts = cached_query(db.open_alerts)
bots_now = cached_query(db.bots_now)

# LLM calls (LLMObservabilityService)
requests_series = cached_query(db.requests_series)
latency_by_bot = cached_query(db.latency_by_bot)
token_series = cached_query(db.token_series)
cache_hit_series = cached_query(db.cache_hit_series)
llm_breakdown = cached_query(db.llm_breakdown)
llm_totals = cached_query(db.llm_totals)
top_conversations = cached_query(db.top_conversations)
cost_by_day = cached_query(db.cost_by_day)
unknown_models = cached_query(db.unknown_models)
spend_forecast = cached_query(db.spend_forecast)  # call spend_forecast.clear() after a budget change

# agent costs (DecisionCostTracker)
cost_report = cached_query(db.cost_report)
calls_by_ids = cached_query(db.calls_by_ids)

# bot operations and SLA (PerformanceTracker)
sla_compliance = cached_query(db.sla_compliance)
bot_throughput = cached_query(db.bot_throughput)
ops_latency_series = cached_query(db.ops_latency_series)
slow_bots = cached_query(db.slow_bots)

# interactions and handoffs (BotMetricsCollector)
bot_summaries = cached_query(db.bot_summaries)
interaction_series = cached_query(db.interaction_series)
handoff_summary = cached_query(db.handoff_summary)
handoff_matrix = cached_query(db.handoff_matrix)

# live monitoring
live_metrics = cached_query(monitoring.live_metrics)
drill_down = cached_query(monitoring.drill_down)

# activity feed
activity_filters = cached_query(db.activity_filters)
activity_page = cached_query(db.activity_page)  # call activity_page.clear() after marking as read
activity_counts = cached_query(db.activity_counts)
unread_count = cached_query(db.unread_count)
vip_conversations = cached_query(db.vip_conversations)

# conversation quality
conversation_scores = cached_query(db.conversation_scores)
quality_summary = cached_query(db.quality_summary)
conversation_messages = cached_query(db.conversation_messages)
handed_off_conversations = cached_query(db.handed_off_conversations)
analyze_conversation = cached_query(db.analyze_conversation)
handoff_effectiveness = cached_query(db.handoff_effectiveness)
