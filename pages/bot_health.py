"""Bot health: P50/P95/P99 per bot and operation against SLA targets, throughput, errors, cache,
latency over time, and the handoff matrix. Data: PerformanceTracker / BotMetricsCollector figures
computed in SQL by the analytics services (observability.ui.frames)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from observability.analytics.window import source_note
from observability.ui import charts, data
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header("Bot health", "Which bot is slow, since when, and what it costs.")

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(("1h", "24h", "7d"), default="1h")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
st.caption(f"Window {window}; figures {source_note(window)}.")


def _status(row) -> str:  # noqa: ANN001
    if row["compliant"] is None or row["compliant"] != row["compliant"]:
        return "no target"
    return "within SLA" if row["compliant"] else "BREACH"


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def live() -> None:
    sla = data.sla_compliance(window, bots)
    thr = data.bot_throughput(window, bots)
    if thr.empty:
        ui.empty_state(
            f"No bot operations in the last {window}.",
            "Bots report operations with `client.track_operation(...)` or `@client.track_performance(...)`.",
        )
        return
    slow = data.slow_bots(window, bots)

    # -- headline: who is slow, since when, what it costs
    if slow.empty:
        st.success(
            "Every bot and operation is within its P95 target in the latest interval.",
            icon=":material/check:",
        )
    else:
        for r in slow.itertuples(index=False):
            st.error(
                f"**{r.bot} · {r.operation}** is slow: P95 {r.p95_now:,.0f} ms against {r.target_p95:,.0f} ms, "
                f"since {r.breaching_since:%Y-%m-%d %H:%M} UTC; {r.bot} spent ${r.spend_usd:,.2f} on LLM calls "
                f"in the last {window}.",
                icon=":material/speed:",
            )

    compliant = sla["compliant"].dropna()
    cols = st.columns(5)
    total = int(thr["requests"].sum())
    cols[0].metric("Operations", f"{total:,}")
    cols[1].metric("Operations / min", f"{thr['per_min'].sum():,.1f}")
    cols[2].metric("Error rate", f"{(thr['errors'].sum() / total if total else 0):.1%}")
    cols[3].metric("Cache hit rate", f"{(thr['cache_hits'].sum() / total if total else 0):.1%}")
    cols[4].metric(
        "SLA compliance",
        f"{int(compliant.sum())}/{len(compliant)}",
        help="bot × operation pairs within every target",
    )

    # -- P95 against target, per bot and operation
    sla = sla.assign(status=sla.apply(_status, axis=1), pair=sla["bot"] + " · " + sla["operation"])
    fig = go.Figure()
    colors = [
        "#2e7d32" if s == "within SLA" else "#c62828" if s == "BREACH" else "#9e9e9e" for s in sla["status"]
    ]
    fig.add_bar(x=sla["pair"], y=sla["p95"], marker_color=colors, name="P95 (ms)")
    fig.add_scatter(x=sla["pair"], y=sla["target_p95"], mode="markers", marker_symbol="line-ew-open",
                    marker_size=28, marker_line_width=3, marker_color="#212121", name="P95 target")  # fmt: skip
    fig.update_layout(title="P95 latency against SLA target", yaxis_title="ms", xaxis_tickangle=-30)
    st.plotly_chart(fig, key="bh_sla")

    show = sla[["bot", "operation", "status", "requests", "p50", "target_p50", "p95", "target_p95", "p99",
                "target_p99", "error_rate", "cache_hit_rate", "violations"]]  # fmt: skip
    ui.table(
        show, f"sla_{window}.csv", key="bh_sla_table",
        column_config={
            "p50": st.column_config.NumberColumn("P50 ms", format="%.0f"),
            "p95": st.column_config.NumberColumn("P95 ms", format="%.0f"),
            "p99": st.column_config.NumberColumn("P99 ms", format="%.0f"),
            "target_p50": st.column_config.NumberColumn("P50 target", format="%.0f"),
            "target_p95": st.column_config.NumberColumn("P95 target", format="%.0f"),
            "target_p99": st.column_config.NumberColumn("P99 target", format="%.0f"),
            "error_rate": st.column_config.NumberColumn("Errors", format="percent"),
            "cache_hit_rate": st.column_config.NumberColumn("Cache hits", format="percent"),
        },
    )  # fmt: skip

    # -- latency over time
    series = data.ops_latency_series(window, bots)
    left, right = st.columns(2)
    if not series.empty:
        fig = charts.line(series, x="ts", y="p95", color="bot", markers=window != "1h",
                      title=f"P95 operation latency over time ({window})", labels={"p95": "P95 ms", "ts": ""})  # fmt: skip
        left.plotly_chart(fig, key="bh_latency_ts")
        fig = charts.bar(series, x="ts", y="requests", color="bot", title="Throughput (operations per interval)",
                     labels={"ts": "", "requests": "operations"})  # fmt: skip
        right.plotly_chart(fig, key="bh_throughput_ts")

    # -- per bot: error and cache rates
    left, right = st.columns(2)
    fig = charts.bar(thr, x="bot", y=["error_rate", "cache_hit_rate"], barmode="group",
                 title="Error rate and cache hit rate by bot", labels={"value": "rate", "variable": ""})  # fmt: skip
    fig.update_yaxes(tickformat=".0%")
    left.plotly_chart(fig, key="bh_rates")
    lat = thr.melt(id_vars="bot", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms")
    fig = charts.bar(
        lat, x="bot", y="ms", color="percentile", barmode="group", title="Latency percentiles by bot (ms)"
    )
    right.plotly_chart(fig, key="bh_pct")

    # -- handoff matrix
    st.subheader("Handoffs")
    hm = data.handoff_matrix(window, bots)
    if hm.empty:
        ui.empty_state(f"No handoffs in the last {window}.")
        return
    pivot = hm.pivot_table(index="source", columns="target", values="handoffs", fill_value=0)
    rate = hm.pivot_table(index="source", columns="target", values="success_rate")
    blocked = hm.pivot_table(index="source", columns="target", values="blocked", fill_value=0)
    text = [[(f"{int(pivot.loc[s, t])} · {rate.loc[s, t]:.0%} ok · {int(blocked.loc[s, t])} blocked"
              if pivot.loc[s, t] else "") for t in pivot.columns] for s in pivot.index]  # fmt: skip
    fig = go.Figure(go.Heatmap(z=pivot.values, x=list(pivot.columns), y=list(pivot.index), text=text,
                               texttemplate="%{text}", colorscale="Blues", colorbar_title="handoffs"))  # fmt: skip
    fig.update_layout(title="Handoff matrix (source → target): count, success rate, blocked",
                      xaxis_title="target", yaxis_title="source")  # fmt: skip
    st.plotly_chart(fig, key="bh_handoffs")
    ui.table(hm, f"handoffs_{window}.csv", key="bh_handoff_table",
             column_config={"success_rate": st.column_config.NumberColumn("success rate", format="percent")})  # fmt: skip


live()
