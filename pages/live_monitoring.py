"""Live monitoring (source document 004): the live conversation metrics and a drill-down per metric
and timeframe with history, P50/P95/P99, thresholds, trend direction, percentage change and a
"concerning" flag. Computation: observability.analytics.monitoring."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from observability.analytics import catalog
from observability.analytics.monitoring import METRICS, TIMEFRAMES
from observability.timeutil import utcnow, window_seconds
from observability.ui import common as ui
from observability.ui import data, fmt

ui.require("dashboards.view")
ui.page_header("Live monitoring", "Conversations, safety and spend right now; drill into any metric.")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def live_tiles() -> None:
    m = data.live_metrics()
    row1 = st.columns(6)
    fmt.metric(row1[0], "active_conversations", m["conversations_active"])
    fmt.metric(row1[1], "conversations_today", m["conversations_total_today"])
    fmt.metric(row1[2], "messages_today", m["messages_processed"])
    fmt.metric(row1[3], "ai_confidence_avg", m["ai_confidence_avg"])
    fmt.metric(row1[4], "safety_score_avg", m["safety_score_avg"])
    fmt.metric(row1[5], "human_interventions_today", m["human_interventions"])
    row2 = st.columns(6)
    fmt.metric(row2[0], "firing_alerts", m["alert_count"])
    fmt.metric(row2[1], "system_load", m["system_load"])
    fmt.metric(row2[2], "response_time_alert_ms", m["response_time_now"])
    fmt.metric(row2[3], "claude_requests_today", m["claude_requests_today"])
    fmt.metric(row2[4], "claude_cost_today_usd", m["claude_cost_today"])
    row2[5].caption(f"Updated {m['timestamp'][11:19]} UTC. Claude figures leave other providers out; "
                    "Overview's spend today counts every provider.")  # fmt: skip


live_tiles()

st.subheader("Drill-down")
c1, c2 = st.columns([1, 2])
with c1:  # the URL keeps the metric's name (?metric=response_time); the picker shows its label
    wanted = ui.query_param("metric", "response_time")
    metric = st.selectbox(
        "Metric",
        list(METRICS),
        index=list(METRICS).index(wanted if wanted in METRICS else "response_time"),
        key="metric_pick",
        format_func=lambda k: fmt.label(METRICS[k].series_metric),
    )
    ui.set_query_params(metric=metric)
with c2:
    timeframe = st.segmented_control(
        "Timeframe", list(TIMEFRAMES), default="1h", **ui.in_url("timeframe"), required=True
    )
metric = metric if metric in METRICS else "response_time"
timeframe = timeframe if timeframe in TIMEFRAMES else "1h"
STATUS = {"ok": "ok", "warning": "warning", "critical": "critical"}


@ui.live(run_every=ui.LIVE_REFRESH_S)
def drill() -> None:
    d = data.drill_down(metric, timeframe)
    spec = METRICS[metric]
    label = fmt.label(spec.series_metric)
    hist = d.historical_data
    if hist.empty or not hist["value"].notna().any():
        ui.empty_state(f"No {label.lower()} data in the last {timeframe}.",
                       "Metrics arrive from the SDK (`record_metric`, `record_llm_call`, messages) and the worker.")  # fmt: skip
        return
    unit = catalog.get(spec.series_metric).unit
    interval = (
        f"{d.extra['interval_s'] // 60:g}-min"
        if d.extra["interval_s"] < 3600
        else f"{d.extra['interval_s'] // 3600:g}-hour"
    )
    arrow = {"up": "↑", "down": "↓", "stable": "→"}[d.trend_analysis["direction"]]
    # two rows of three: a sixth of the page cut figures such as "11,411 ms" at 1440 px
    now, trend, status = st.columns(3)
    fmt.metric(now, spec.now_metric, d.current_value)
    change = d.trend_analysis["percentage_change"]
    delta = "from zero" if change is None else f"{change:+.1f} %"
    trend.metric(f"Trend, last {timeframe}", f"{arrow} {d.trend_analysis['direction']}", delta, delta_color="off",
                 help="Mean of the later half of the chart against the earlier half (\"from zero\": "
                      "the earlier half had none, so there is no percentage)")  # fmt: skip
    shown = ", ".join(f"{k} {fmt.number(unit, v)}" for k, v in d.thresholds.items())
    status.metric("Status now", STATUS.get(d.status, d.status),
                  help=f"{fmt.label(spec.now_metric)} against the thresholds drawn on the chart ({shown}): "
                  "the figure and thresholds its alert rule judges, so this status and the rule agree"
                  if d.thresholds else "This metric has no thresholds.")  # fmt: skip
    c = st.columns(3)
    if spec.has_percentiles:
        for col, p in zip(c, ("p50", "p95", "p99"), strict=True):
            col.metric(f"{p.upper()}, last {timeframe}", fmt.number(unit, d.percentile_data.get(p)),
                       help=f"{p.upper()} of {label.lower()} over the last {timeframe}; {d.source}.")  # fmt: skip
    else:
        total_help = (
            f"Distinct conversations with at least one message in the last {timeframe}: one active in "
            "many intervals counts once, so this is less than the sum of the chart"
            if metric == "conversations"
            else fmt.help_text(spec.series_metric, f"the last {timeframe}")
        )
        c[0].metric(f"Total, last {timeframe}", fmt.number(unit, d.extra["total"]), help=total_help)
        c[1].metric(f"Busiest {interval} interval", fmt.number(unit, d.extra["peak"]),
                    help=f"The highest {interval} value of the chart")  # fmt: skip
    if d.trend_analysis["is_concerning"]:
        st.warning(f"**Concerning:** {label} is {d.status if d.status != 'ok' else 'moving the wrong way'} "
                   f"({'up ' if change is None else ''}{delta} over the {timeframe}).", icon=":material/warning:")  # fmt: skip
    fig = go.Figure()
    fig.add_scatter(x=hist["ts"], y=hist["value"], mode="lines+markers" if len(hist) < 80 else "lines", name=label,
                    hovertemplate=f"%{{x|%Y-%m-%d %H:%M}} UTC<br>{label}: %{{y:,.2f}}<extra></extra>")  # fmt: skip
    for level, color in (("warning", "#f9a825"), ("critical", "#c62828")):
        if level in d.thresholds:
            fig.add_hline(y=d.thresholds[level], line_dash="dash", line_color=color,
                          annotation_text=f"{level} {fmt.number(unit, d.thresholds[level])}")  # fmt: skip
    fig.update_layout(title=f"{label}, per {interval} interval, last {timeframe}", xaxis_title="",
                      yaxis_title={"ms": "ms", "usd": "USD", "percent": "%"}.get(unit, label))  # fmt: skip
    # the whole timeframe on the axis: one interval of data (a store that holds a day, on the 30d
    # chart) is one point at its day, not an axis stretched over a millisecond around it
    end = pd.Timestamp(utcnow())
    start = end - pd.Timedelta(seconds=window_seconds(timeframe))
    fig.update_xaxes(range=[start - pd.Timedelta(seconds=d.extra["interval_s"]), end])
    st.plotly_chart(fig, key="lm_drill")
    first = d.extra["data_since"]
    since = (
        f" Data since {first:%Y-%m-%d %H:%M} UTC only: the figures cover that, not the whole {timeframe}."
        if first
        else ""
    )
    st.caption(f"{fmt.help_text(spec.series_metric, f'the last {timeframe}')} Figures {d.source}.{since}")
    out = hist.rename(columns={"ts": "interval start (UTC)", "value": label})
    ui.download_csv(out, f"{metric}_{timeframe}.csv", key="lm_hist_csv")


drill()
