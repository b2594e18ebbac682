"""AI Performance Metrics (PerformanceTracker: latency percentiles, success and cache rates per bot
and model) and Bot Analytics widgets (BotMetricsCollector: interactions, success rate, mean and P95
duration, error and cache hit rate per bot, handoffs)."""

from __future__ import annotations

import streamlit as st

from observability.analytics.window import source_note
from observability.ui import charts, data
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header("AI performance", "How fast and how reliably each bot and model answers.")

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(("1h", "6h", "24h"), default="1h")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
st.caption(f"Window {window}; operation and LLM figures {source_note(window)}; interactions exact.")


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def live() -> None:
    thr = data.bot_throughput(window, bots)
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
        c[0].metric("Operations", f"{total:,}")
        c[1].metric("Success rate", f"{(ok / total if total else 0):.1%}")
        c[2].metric(
            "Slowest bot P95", f"{thr['p95'].max():,.0f} ms", help=str(thr.loc[thr["p95"].idxmax(), "bot"])
        )
        c[3].metric("Cache hit rate", f"{(thr['cache_hits'].sum() / total if total else 0):.1%}")
        left, right = st.columns(2)
        lat = thr.melt(
            id_vars="bot", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms"
        )
        fig = charts.bar(
            lat,
            x="bot",
            y="ms",
            color="percentile",
            barmode="group",
            title="Operation latency P50 / P95 / P99 by bot",
        )
        left.plotly_chart(fig, key="ap_bot_pct")
        thr = thr.assign(success_rate=1 - thr["error_rate"])
        fig = charts.bar(thr, x="bot", y=["success_rate", "cache_hit_rate"], barmode="group", title="Success and cache hit rate by bot",
                     labels={"value": "rate", "variable": ""})  # fmt: skip
        fig.update_yaxes(tickformat=".0%")
        right.plotly_chart(fig, key="ap_bot_rates")
    if not models.empty:
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
                 column_config={"error_rate": st.column_config.NumberColumn("error rate", format="percent"),
                                "cache_hit_rate": st.column_config.NumberColumn("cache hit rate", format="percent")})  # fmt: skip

    st.subheader("Bot analytics")
    if inter.empty:
        ui.empty_state(
            f"No bot interactions in the last {window}.", "Bots report them with `record_bot_interaction`."
        )
    else:
        cols = st.columns(len(inter))
        for col, r in zip(cols, inter.itertuples(index=False), strict=False):
            with col.container(border=True):
                st.markdown(f"**{r.bot}**")
                st.metric("Interactions", f"{r.total_interactions:,}")
                st.metric("Success rate", f"{r.success_rate:.1%}")
                st.metric("Avg / P95 duration", f"{r.avg_duration_ms:,.0f} / {r.p95_duration_ms:,.0f} ms")
                st.metric("Cache hit rate", f"{r.cache_hit_rate:.1%}")
        series = data.interaction_series(window, bots)
        left, right = st.columns(2)
        fig = charts.line(
            series, x="ts", y="interactions", color="bot", title="Interactions over time", labels={"ts": ""}
        )
        left.plotly_chart(fig, key="ap_inter_ts")
        fig = charts.line(
            series,
            x="ts",
            y="mean_ms",
            color="bot",
            title="Mean interaction duration (ms)",
            labels={"ts": ""},
        )
        right.plotly_chart(fig, key="ap_inter_ms")
        ui.table(inter, f"bot_analytics_{window}.csv", key="ap_inter",
                 column_config={c: st.column_config.NumberColumn(c.replace("_", " "), format="percent")
                                for c in ("error_rate", "success_rate", "cache_hit_rate")})  # fmt: skip
    hs = data.handoff_summary(window)
    if hs["total_handoffs"]:
        c = st.columns(4)
        c[0].metric("Handoffs", f"{hs['total_handoffs']:,}")
        c[1].metric("Handoff success rate", f"{hs['success_rate']:.1%}")
        c[2].metric("Handoff P95", f"{hs['p95_duration_ms']:,.0f} ms")
        c[3].metric("Blocked (circular)", f"{hs['blocked']:,}")


live()
