"""Bot health: P50/P95/P99 per bot and operation against SLA targets, throughput, errors, cache,
latency over time, and the handoff matrix. Data: PerformanceTracker / BotMetricsCollector figures
computed in SQL by the analytics services (observability.ui.frames)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from observability.analytics import sla
from observability.analytics.window import source_note
from observability.ui import charts, data, fmt, nav
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header("Bot health", "Which bot and operation is slow against its SLA, and what that bot spends.")

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(nav.page_ranges("bot_health"), default="1h")
with f2:  # the handoff step too: its SLA rows are here, and an alert on it links here
    bots = tuple(ui.bot_filter(data.known_bots(), label="Bots (or the handoff step)", handoff_step=True))
alert_s = data.alert_window_s()
st.caption(
    f"Window: last {window}; figures {source_note(window)}. The `sla_violation` alert watches the last "
    f"{alert_s // 60:g} minutes; its figure is the last column of the SLA table."
)


ALERT_RULE = "sla_violation"
STEP_LABEL = sla.STEP_LABEL  # the handoff service's rows: a step between bots, not a bot
COLOURS = {sla.WITHIN: "#2e7d32", sla.BREACH: "#c62828", sla.NO_DATA: "#9e9e9e"}


def headline(ev: dict, spend: dict[str, float]) -> None:
    """What the table below says, in one sentence: never green while a row breaches."""
    rows = ev["rows"]
    measured = rows[rows["status"] != sla.NO_DATA]
    breaching = rows[rows["status"] == sla.BREACH]
    if measured.empty:
        st.info(f"No operation of the SLA table ran in the last {window}.", icon=":material/info:")
    elif breaching.empty:
        st.success(
            f"All {len(measured)} bot × operation pairs with operations in the last {window} are within "
            "their P50, P95 and P99 targets.",
            icon=":material/check:",
        )
    else:
        for r in breaching.itertuples(index=False):
            st.error(
                f"**{ui.md_escape(sla.pair_label(r.bot, r.operation))}** breaches its SLA over the last {window}: "
                + "; ".join(f"{p} {getattr(r, p.lower()):,.0f} ms > {getattr(r, 'target_' + p.lower()):,.0f} ms"
                            for p in r.breaches.split(", "))
                + (f". {ui.md_escape(r.bot)} spent {fmt.text('llm_cost_usd', spend.get(r.bot, 0.0))} on LLM calls in that window."
                   if r.bot != sla.HANDOFF_STEP else "."),
                icon=":material/speed:",
            )  # fmt: skip
    firing = data.sla_alert_breaches(bots)  # the same function as Overview's "P95 over SLA" column
    if not firing.empty:
        pairs = ", ".join(f"{ui.md_escape(sla.pair_label(r.bot, r.operation))} ({fmt.text('sla_p95_ratio', r.p95_ratio)})"
                          for r in firing.itertuples(index=False))  # fmt: skip
        st.warning(
            f"The `{ALERT_RULE}` alert's window (last {alert_s // 60:g} min): P95 above target for {pairs}.",
            icon=":material/notifications:",
        )


@ui.live(run_every=ui.LIVE_REFRESH_S)
def live() -> None:
    ev = data.sla_evaluation(window, bots)
    alert = data.sla_evaluation(alert_s, bots)
    thr = data.bot_throughput(window, bots)
    if thr.empty:
        ui.empty_state(
            f"No bot operations in the last {window}.",
            "Bots report operations with `client.track_operation(...)` or `@client.track_performance(...)`.",
        )
        return
    spend_rows = data.llm_breakdown(window, bots, ("bot",))
    spend = dict(zip(spend_rows["bot"], spend_rows["cost_usd"], strict=True)) if not spend_rows.empty else {}
    headline(ev, spend)

    rows = ev["rows"]
    measured = rows[rows["status"] != sla.NO_DATA]
    cols = st.columns(5)
    total = int(thr["requests"].sum())
    fmt.metric(cols[0], "operations", total)
    fmt.metric(cols[1], "operations_per_min", thr["per_min"].sum())
    fmt.metric(cols[2], "operation_error_rate", thr["errors"].sum() / total if total else None)
    fmt.metric(cols[3], "operation_cache_hit_rate", thr["cache_hits"].sum() / total if total else None)
    cols[4].metric(
        fmt.label("sla_compliance"),
        f"{int((measured['status'] == sla.WITHIN).sum())}/{len(measured)}",
        help=fmt.help_text("sla_compliance"),
    )

    alert_ratio = alert["rows"].set_index(["bot", "operation"])["p95_ratio"]
    table = rows.assign(
        alert_p95_ratio=[
            alert_ratio.get((b, o)) for b, o in zip(rows["bot"], rows["operation"], strict=True)
        ],
        bot=rows["bot"].replace({sla.HANDOFF_STEP: STEP_LABEL}),
    )
    ui.table(
        table[["bot", "operation", "status", "breaches", "requests", "p50", "target_p50", "p95", "target_p95",
               "p99", "target_p99", "error_rate", "cache_hit_rate", "alert_p95_ratio"]],
        f"sla_{window}.csv", key="bh_sla_table",
        column_config={
            "bot": fmt.text_column("Bot (or step)", sla.STEP_HELP), "operation": fmt.text_column("Operation"),
            "status": fmt.text_column("Status"), "breaches": fmt.text_column("Above target"),
            **fmt.columns(
                {"requests": "operations", "p50": "operation_p50_ms", "p95": "operation_p95_ms",
                 "p99": "operation_p99_ms", "target_p50": "operation_p50_target_ms",
                 "target_p95": "operation_p95_target_ms", "target_p99": "operation_p99_target_ms",
                 "error_rate": "operation_error_rate", "cache_hit_rate": "operation_cache_hit_rate",
                 "alert_p95_ratio": "sla_p95_ratio_alert"},
                {"alert_p95_ratio": f"P95 / target, last {alert_s // 60:g} min ({ALERT_RULE} alert)",
                 "error_rate": "Error rate", "cache_hit_rate": "Cache hit rate"},
                window=f"the last {window}",
            ),
        },
    )  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S)
def against_targets() -> None:
    """P50/P95/P99 against their targets, per bot and operation (colour: that percentile's status)."""
    rows = data.sla_evaluation(window, bots)["rows"]
    pair = charts.plain([sla.pair_label(b, o) for b, o in zip(rows["bot"], rows["operation"], strict=True)])
    fig = go.Figure()
    for p in ("p50", "p95", "p99"):
        over = rows[p] > rows[f"target_{p}"]
        colour = [COLOURS[sla.NO_DATA] if pd.isna(v) else COLOURS[sla.BREACH] if o else COLOURS[sla.WITHIN]
                  for v, o in zip(rows[p], over, strict=True)]  # fmt: skip
        fig.add_bar(x=pair, y=rows[p], marker_color=colour, name=f"{p.upper()} (ms)", offsetgroup=p,
                    marker_pattern_shape={"p50": "", "p95": "/", "p99": "."}[p])  # fmt: skip
        fig.add_scatter(x=pair, y=rows[f"target_{p}"], mode="markers", marker_symbol="line-ew-open",
                        marker_size=14, marker_line_width=3, marker_color="#212121", name=f"{p.upper()} target",
                        offsetgroup=p, showlegend=p == "p95")  # fmt: skip
    fig.update_layout(title=f"P50 / P95 / P99 against SLA targets, last {window} (red: above that target)",
                      yaxis_title="ms", xaxis_tickangle=-30, barmode="group", scattermode="group")  # fmt: skip
    st.plotly_chart(fig, key="bh_sla")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def over_time() -> None:
    """Latency and throughput over time."""
    series = fmt.steps_as_steps(data.ops_latency_series(window, bots))
    if series.empty:
        ui.empty_state(f"No bot operations in the last {window}.")
        return
    left, right = st.columns(2)
    fig = charts.line(series, x="ts", y="p95", color="bot", markers=window != "1h",
                      title=f"P95 operation latency over time ({window})", labels={"p95": "P95 ms", "ts": ""})  # fmt: skip
    left.plotly_chart(fig, key="bh_latency_ts")
    fig = charts.bar(series, x="ts", y="requests", color="bot", title="Throughput (operations per interval)",
                     labels={"ts": "", "requests": "operations"})  # fmt: skip
    right.plotly_chart(fig, key="bh_throughput_ts")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def by_bot() -> None:
    """Per bot: error and cache rates, latency percentiles (the handoff service shown as the step it is)."""
    thr = data.bot_throughput(window, bots)
    thr = thr.assign(bot=thr["bot"].replace({sla.HANDOFF_STEP: STEP_LABEL}))
    left, right = st.columns(2)
    rates = {
        "error_rate": fmt.label("operation_error_rate"),
        "cache_hit_rate": fmt.label("operation_cache_hit_rate"),
    }
    fig = charts.bar(thr.rename(columns=rates), x="bot", y=list(rates.values()), barmode="group",
                 title="Error rate and cache hit rate by bot", labels={"value": "rate", "variable": ""})  # fmt: skip
    fig.update_yaxes(tickformat=".0%")
    left.plotly_chart(fig, key="bh_rates")
    lat = thr.melt(id_vars="bot", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms")
    fig = charts.bar(
        lat, x="bot", y="ms", color="percentile", barmode="group", title="Latency percentiles by bot (ms)"
    )
    right.plotly_chart(fig, key="bh_pct")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def handoffs() -> None:
    """The handoff matrix."""
    st.subheader("Handoffs")
    hm = data.handoff_matrix(window, bots)
    if hm.empty:
        ui.empty_state(f"No handoffs in the last {window}.")
        return
    pivot = hm.pivot_table(index="source", columns="target", values="handoffs", fill_value=0)
    rate = hm.pivot_table(index="source", columns="target", values="success_rate").reindex(
        index=pivot.index, columns=pivot.columns
    )
    blocked = hm.pivot_table(index="source", columns="target", values="blocked", fill_value=0)
    text = [[(f"{int(pivot.loc[s, t])} · {fmt.number('ratio', rate.loc[s, t])} ok · {int(blocked.loc[s, t])} blocked"
              if pivot.loc[s, t] else "") for t in pivot.columns] for s in pivot.index]  # fmt: skip
    fig = go.Figure(go.Heatmap(z=pivot.values, x=charts.plain(list(pivot.columns)), y=charts.plain(list(pivot.index)), text=text,
                               texttemplate="%{text}", colorscale="Blues", colorbar_title="handoffs"))  # fmt: skip
    fig.update_layout(title="Handoff matrix (source → target): count, success rate of those not blocked, blocked",
                      xaxis_title="target", yaxis_title="source")  # fmt: skip
    st.plotly_chart(fig, key="bh_handoffs")
    ui.table(hm, f"handoffs_{window}.csv", key="bh_handoff_table",
             column_config={"source": fmt.text_column("From"), "target": fmt.text_column("To"),
                            **fmt.columns({"handoffs": "handoffs", "successes": "handoff_successes",
                                           "success_rate": "handoff_success_rate", "blocked": "handoffs_blocked",
                                           "mean_ms": "handoff_mean_ms"},
                                          {"mean_ms": "Mean ms"}, window=f"the last {window}")})  # fmt: skip


live()
# the charts in tabs: a load queries and draws only the open tab's (its name is in the URL, ?tab=Handoffs)
if not data.bot_throughput(window, bots).empty:
    ui.lazy_tabs({"Against SLA targets": against_targets, "Over time": over_time, "By bot": by_bot,
                  "Handoffs": handoffs})  # fmt: skip
