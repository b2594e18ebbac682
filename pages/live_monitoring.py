"""Live monitoring (source document 004): the live conversation metrics and a drill-down per metric
and timeframe with history, P50/P95/P99, thresholds, trend direction, percentage change and a
"concerning" flag. Computation: observability.analytics.monitoring."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from observability.analytics.monitoring import METRICS, TIMEFRAMES
from observability.ui import common as ui
from observability.ui import data

ui.require("dashboards.view")
ui.page_header("Live monitoring", "Conversations, safety and spend right now; drill into any metric.")

UNIT_FMT = {"": "{:,.0f}", "ms": "{:,.0f} ms", "%": "{:.1f} %", "usd": "${:,.2f}", "score": "{:.2f}"}


def fmt(value: float | None, unit: str) -> str:
    return "–" if value is None else UNIT_FMT.get(unit, "{:,.2f}").format(value)


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def live_tiles() -> None:
    m = data.live_metrics()
    row1 = st.columns(6)
    row1[0].metric("Active conversations", fmt(m["conversations_active"], ""))
    row1[1].metric("Conversations today", fmt(m["conversations_total_today"], ""))
    row1[2].metric("Messages today", fmt(m["messages_processed"], ""))
    row1[3].metric("AI confidence (1h)", fmt(m["ai_confidence_avg"], "score"))
    row1[4].metric("Safety score (1h)", fmt(m["safety_score_avg"], "score"))
    row1[5].metric("Human interventions today", fmt(m["human_interventions"], ""))
    row2 = st.columns(6)
    row2[0].metric("Open alerts", fmt(m["alert_count"], ""))
    row2[1].metric("System load", fmt(m["system_load"], "%"))
    row2[2].metric("Response time (1h avg)", fmt(m["response_time_avg"], "ms"))
    row2[3].metric("Claude requests today", fmt(m["claude_requests_today"], ""))
    row2[4].metric("Claude cost today", fmt(m["claude_cost_today"], "usd"))
    row2[5].caption(f"Updated {m['timestamp'][11:19]} UTC")


live_tiles()

st.subheader("Drill-down")
c1, c2 = st.columns([1, 2])
with c1:
    metric = st.selectbox(
        "Metric",
        list(METRICS),
        index=list(METRICS).index("response_time"),
        key="metric",
        bind="query-params",
        help="; ".join(f"{k}: {m.label}" for k, m in METRICS.items()),
    )
with c2:
    timeframe = st.segmented_control("Timeframe", list(TIMEFRAMES), default="1h", key="timeframe",
                                     bind="query-params", required=True)  # fmt: skip
metric = metric if metric in METRICS else "response_time"
timeframe = timeframe if timeframe in TIMEFRAMES else "1h"


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def drill() -> None:
    d = data.drill_down(metric, timeframe)
    hist = d.historical_data
    if hist.empty or not hist["value"].notna().any():
        ui.empty_state(f"No {d.label.lower()} data in the last {timeframe}.",
                       "Metrics arrive from the SDK (`record_metric`, `record_llm_call`, messages) and the worker.")  # fmt: skip
        return
    arrow = {"up": "↑", "down": "↓", "stable": "→"}[d.trend_analysis["direction"]]
    c = st.columns(6)
    c[0].metric(f"{d.label} now", fmt(d.current_value, d.unit))
    for col, p in zip(c[1:4], ("p50", "p95", "p99"), strict=False):
        col.metric(p.upper(), fmt(d.percentile_data.get(p), d.unit))
    c[4].metric("Trend", f"{arrow} {d.trend_analysis['direction']}", f"{d.trend_analysis['percentage_change']:+.1f} %",
                delta_color="off")  # fmt: skip
    c[5].metric("Status", d.status)
    if d.trend_analysis["is_concerning"]:
        st.warning(f"**Concerning:** {d.label} is {d.status if d.status != 'ok' else 'moving the wrong way'} "
                   f"({d.trend_analysis['percentage_change']:+.1f} % over the {timeframe}).", icon=":material/warning:")  # fmt: skip
    fig = go.Figure()
    fig.add_scatter(
        x=hist["ts"], y=hist["value"], mode="lines+markers" if len(hist) < 80 else "lines", name=d.label
    )
    for level, color in (("warning", "#f9a825"), ("critical", "#c62828")):
        if level in d.thresholds:
            fig.add_hline(y=d.thresholds[level], line_dash="dash", line_color=color, annotation_text=level)
    fig.update_layout(title=f"{d.label}, last {timeframe}", xaxis_title="", yaxis_title=d.unit or "count")
    st.plotly_chart(fig, key="lm_drill")
    st.caption(f"Percentiles {d.source}.")
    ui.table(hist, f"{metric}_{timeframe}.csv", key="lm_hist", height=240)


drill()
