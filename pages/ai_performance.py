"""AI Performance Metrics (PerformanceTracker: latency percentiles, success and cache rates per bot
and model) and Bot Analytics widgets (BotMetricsCollector: interactions, success rate, mean and P95
duration, error and cache hit rate per bot, handoffs)."""

from __future__ import annotations

import streamlit as st

from observability.analytics.window import source_note
from observability.ui import charts, data, fmt, nav
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header("AI performance", "How fast and how reliably each bot and model answers.")

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(nav.page_ranges("ai_performance"), default="1h")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
st.caption(f"Window: last {window}; operation and LLM figures {source_note(window)}; interactions exact.")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def live() -> None:
    thr = fmt.steps_as_steps(data.bot_throughput(window, bots))
    models = data.llm_breakdown(window, bots, ("model",), percentiles=True)
    inter = data.bot_summaries(window, bots)
    if thr.empty and models.empty and inter.empty:
        ui.empty_state(f"No bot activity in the last {window}.",
                       "Bots report operations, LLM calls and interactions through the SDK.")  # fmt: skip
        return

    st.subheader("AI performance metrics")
    if not thr.empty:
        total = int(thr["requests"].sum())
        ok = total - int(thr["errors"].sum())
        c = st.columns(4)
        fmt.metric(c[0], "operations", total)
        c[1].metric("Operation success rate", fmt.number("ratio", ok / total if total else None),
                    help="Operations that succeeded / operations, over the selected window.")  # fmt: skip
        slowest = str(thr.loc[thr["p95"].idxmax(), "bot"])
        c[2].metric("Slowest bot P95", f"{thr['p95'].max():,.0f} ms",
                    help=f"{slowest}: the P95 of all its tracked operations over the last {window}, "
                    "not its response time (the cards below time its interactions)")  # fmt: skip
        fmt.metric(c[3], "operation_cache_hit_rate", thr["cache_hits"].sum() / total if total else None)

    st.subheader("Bot analytics")
    if inter.empty:
        ui.empty_state(
            f"No bot interactions in the last {window}.", "Bots report them with `record_bot_interaction`."
        )
    else:
        cols = st.columns(len(inter))
        for col, r in zip(cols, inter.itertuples(index=False), strict=False):
            with col.container(border=True):
                st.markdown(f"**{ui.md_escape(r.bot)}**")
                fmt.metric(st, "interactions", r.total_interactions)
                fmt.metric(st, "response_success_rate", r.success_rate, window=f"the last {window}",
                           label=fmt.label("response_success_rate"))  # fmt: skip
                st.metric(
                    "Mean / P95 response time", f"{r.avg_duration_ms:,.0f} / {r.p95_duration_ms:,.0f} ms"
                )
                fmt.metric(st, "response_cache_hit_rate", r.cache_hit_rate)
    hs = data.handoff_summary(window)
    if hs["total_handoffs"]:
        alert_s = data.alert_window_s()
        now5 = data.handoff_summary(alert_s)
        c = st.columns(5)
        fmt.metric(c[0], "handoffs", hs["total_handoffs"])
        fmt.metric(c[1], "handoff_success_rate", hs["success_rate"] if hs["attempted_handoffs"] else None)
        fmt.metric(c[2], "blocked_handoff_rate", hs["blocked_rate"])
        fmt.metric(c[3], "handoff_p95_ms", hs["p95_duration_ms"], window=f"the last {window}",
                   label=fmt.label("handoff_p95_ms"))  # fmt: skip
        fmt.metric(c[4], "handoff_failure_rate_alert",
                   now5["failure_rate"] if now5["attempted_handoffs"] else None,
                   label=f"Handoff failure rate, last {alert_s // 60:g} min (handoff_failure alert)")  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S)
def operations_by_bot() -> None:
    thr = fmt.steps_as_steps(data.bot_throughput(window, bots))
    if thr.empty:
        ui.empty_state(f"No bot operations in the last {window}.")
        return
    left, right = st.columns(2)
    lat = thr.melt(id_vars="bot", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms")
    fig = charts.bar(
        lat,
        x="bot",
        y="ms",
        color="percentile",
        barmode="group",
        title="Operation latency P50 / P95 / P99 by bot",
    )
    left.plotly_chart(fig, key="ap_bot_pct")
    rates = {
        "success_rate": "Operation success rate",
        "cache_hit_rate": fmt.label("operation_cache_hit_rate"),
    }
    thr = thr.assign(success_rate=1 - thr["error_rate"]).rename(columns=rates)
    fig = charts.bar(thr, x="bot", y=list(rates.values()), barmode="group", title="Operation success and cache hit rate by bot",
                     labels={"value": "rate", "variable": ""})  # fmt: skip
    fig.update_yaxes(tickformat=".0%")
    right.plotly_chart(fig, key="ap_bot_rates")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def llm_by_model() -> None:
    models = data.llm_breakdown(window, bots, ("model",), percentiles=True)
    if models.empty:
        ui.empty_state(f"No LLM calls in the last {window}.")
        return
    left, right = st.columns(2)
    lat = models.melt(
        id_vars="model", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms"
    )
    fig = charts.bar(
        lat, x="model", y="ms", color="percentile", barmode="group", title="LLM latency by model (ms)"
    )
    left.plotly_chart(fig, key="ap_model_pct")
    rps = data.requests_series(window, bots)
    fig = charts.line(
        rps, x="ts", y="requests", color="bot", title="LLM requests over time", labels={"ts": ""}
    )
    right.plotly_chart(fig, key="ap_requests")
    ui.table(models[["model", "requests", "error_rate", "cache_hit_rate", "avg_latency_ms", "p50", "p95", "p99"]],
             f"model_latency_{window}.csv", key="ap_models",
             column_config={"model": st.column_config.TextColumn("Model"),
                            **fmt.columns({"requests": "llm_requests", "error_rate": "llm_error_rate",
                                           "cache_hit_rate": "llm_cache_hit_rate",
                                           "avg_latency_ms": "llm_mean_ms", "p50": "llm_p50_ms",
                                           "p95": "llm_p95_ms", "p99": "llm_p99_ms"},
                                          {"avg_latency_ms": "Mean ms", "p50": "P50 ms", "p95": "P95 ms",
                                           "p99": "P99 ms"}, window=f"the last {window}")})  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S)
def interactions() -> None:
    inter = data.bot_summaries(window, bots)
    if inter.empty:
        ui.empty_state(
            f"No bot interactions in the last {window}.", "Bots report them with `record_bot_interaction`."
        )
        return
    series = data.interaction_series(window, bots)
    left, right = st.columns(2)
    fig = charts.line(
        series, x="ts", y="interactions", color="bot", title="Interactions over time", labels={"ts": ""}
    )
    left.plotly_chart(fig, key="ap_inter_ts")
    fig = charts.line(series, x="ts", y="mean_ms", color="bot", title="Mean interaction duration (ms)",
                      labels={"ts": ""})  # fmt: skip
    right.plotly_chart(fig, key="ap_inter_ms")
    shown = inter[["bot", "total_interactions", "success_count", "error_count", "success_rate", "error_rate",
                   "cache_hits", "cache_hit_rate", "avg_duration_ms", "p50_duration_ms", "p95_duration_ms",
                   "p99_duration_ms", "max_duration_ms"]]  # fmt: skip
    ui.table(shown, f"bot_analytics_{window}.csv", key="ap_inter",
             column_config={"bot": st.column_config.TextColumn("Bot"),
                            **fmt.columns({"total_interactions": "interactions", "success_count": "responses_succeeded",
                                           "error_count": "responses_failed", "cache_hits": "responses_from_cache",
                                           "success_rate": "response_success_rate", "error_rate": "response_error_rate",
                                           "cache_hit_rate": "response_cache_hit_rate",
                                           "avg_duration_ms": "response_mean_ms", "p50_duration_ms": "response_p50_ms",
                                           "p95_duration_ms": "response_p95_ms", "p99_duration_ms": "response_p99_ms",
                                           "max_duration_ms": "response_max_ms"},
                                          {"avg_duration_ms": "Mean ms", "p50_duration_ms": "P50 ms",
                                           "p95_duration_ms": "P95 ms", "p99_duration_ms": "P99 ms",
                                           "max_duration_ms": "Max ms"}, window=f"the last {window}")})  # fmt: skip


live()
# the charts in tabs: a load queries and draws only the open tab's (its name is in the URL, ?tab=Interactions)
ui.lazy_tabs({"Operations by bot": operations_by_bot, "LLM latency by model": llm_by_model,
              "Interactions": interactions})  # fmt: skip
