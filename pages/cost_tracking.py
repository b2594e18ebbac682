"""Claude cost tracking (managers): spend by model, bot, agent, conversation and day; cost per
request; agent efficiency; z-score anomalies linked to the calls behind them; cache savings; month
to date and forecast against the budget a manager sets; calls to models without a price."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from observability import auth
from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.window import source_note
from observability.ui import charts, data, frames
from observability.ui import common as ui

user = ui.require("dashboards.view")
ui.page_header("Cost tracking", "What the bots cost, where it goes, and where the month will end.")

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(("24h", "7d", "30d"), default="7d")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
st.caption(f"Window {window}; figures {source_note(window)}.")


# ---- the calls behind an anomaly (linked from the anomaly table; shareable) --------------------
trace_ids = [t for t in (ui.query_param("calls") or "").split(",") if t]
if trace_ids:
    with st.container(border=True):
        st.subheader(f"The call{'s' if len(trace_ids) > 1 else ''} behind the anomaly")
        calls = data.calls_by_ids(tuple(trace_ids))
        if calls.empty:
            ui.empty_state("No such calls (they may have been removed by retention).")
        else:
            st.caption(
                f"{len(calls)} call(s), most expensive first; ${calls['cost_usd'].sum():,.2f} in total."
            )
            ui.table(calls, "anomaly_calls.csv", key="ct_calls",
                     column_config={"cost_usd": st.column_config.NumberColumn("cost", format="dollar")})  # fmt: skip
        if st.button("Close", key="ct_calls_close"):
            ui.set_query_params(calls=None)
            st.rerun()


# ---- month to date, forecast, budget -----------------------------------------------------------
def budget_section() -> None:
    fc = data.spend_forecast()
    daily = fc["daily"]
    c = st.columns(4)
    c[0].metric("Month to date", f"${fc['spend_mtd_usd']:,.2f}")
    c[1].metric("Forecast to month end", f"${fc['forecast_month_end_usd']:,.2f}",
                delta=f"{fc['forecast_month_end_usd'] - fc['budget_usd']:+,.2f} vs budget", delta_color="inverse")  # fmt: skip
    c[2].metric("Monthly budget", f"${fc['budget_usd']:,.2f}")
    c[3].metric("Saved by cache this month", f"${fc['saved_mtd_usd']:,.2f}")
    if fc["forecast_over_budget"]:
        st.warning(f"At ${fc['daily_run_rate_usd']:,.2f}/day the month ends "
                   f"${fc['forecast_month_end_usd'] - fc['budget_usd']:,.2f} over budget.")  # fmt: skip
    if not daily.empty:
        fig = go.Figure()
        fig.add_bar(x=daily["day"], y=daily["cost_usd"], name="spend per day")
        fig.add_scatter(x=daily["day"], y=daily["cumulative_usd"], name="cumulative", mode="lines+markers")
        start = daily["day"].iloc[-1]
        end = pd.Timestamp(start).replace(day=fc["days_in_month"])
        fig.add_scatter(x=[start, end], y=[daily["cumulative_usd"].iloc[-1], fc["forecast_month_end_usd"]],
                        name="forecast", mode="lines", line_dash="dash")  # fmt: skip
        fig.add_hline(y=fc["budget_usd"], line_color="#c62828", annotation_text="budget")
        fig.update_layout(
            title=f"{fc['month']}: spend, cumulative and forecast against budget", yaxis_tickprefix="$"
        )
        st.plotly_chart(fig, key="ct_month")
    if user.can("budget.set"):
        with st.form("budget_form"):
            new = st.number_input("Monthly budget (USD)", min_value=0.0, value=float(fc["budget_usd"]), step=50.0,
                                  key="budget_value")  # fmt: skip
            if st.form_submit_button("Save budget"):
                try:
                    LLMObservabilityService(ui.get_store()).set_monthly_budget(user.name, float(new))
                except (auth.PermissionDenied, ValueError) as exc:
                    st.error(str(exc))
                else:
                    data.spend_forecast.clear()
                    st.success(f"Monthly budget set to ${new:,.2f}.")
                    st.rerun()
    else:
        st.caption("Managers and admins can change the monthly budget.")


# Sections are parallel fragments: their queries overlap on a full run, each refreshes every 15 s.
@st.fragment(run_every=ui.LIVE_REFRESH_S, parallel=True)
def budget() -> None:
    budget_section()


@st.fragment(run_every=ui.LIVE_REFRESH_S, parallel=True)
def spend() -> None:
    tot = data.llm_totals(window, bots)
    if not tot or not tot.get("requests"):
        ui.empty_state(f"No LLM calls in the last {window}.",
                       "Costs come from `record_llm_call` (priced from the model price table unless `cost_usd=` is given).")  # fmt: skip
        return
    unknown = data.unknown_models(window)
    c = st.columns(4)
    c[0].metric(f"Spend ({window})", f"${tot['cost_usd']:,.2f}")
    c[1].metric("Cost per request", f"${tot['cost_per_request']:,.4f}")
    c[2].metric("Saved by cache hits", f"${tot['cost_saved_usd']:,.2f}")
    c[3].metric("Calls to unpriced models", f"{int(unknown['calls'].sum()) if not unknown.empty else 0:,}")

    detail = data.llm_breakdown(window, bots, ("model", "bot", "agent"))
    by_model, by_bot = frames.regroup(detail, ["model"]), frames.regroup(detail, ["bot"])
    left, right = st.columns(2)
    fig = charts.pie(by_model, names="model", values="cost_usd", hole=0.45, title="Spend by model")
    left.plotly_chart(fig, key="ct_model")
    fig = charts.bar(by_bot, x="bot", y="cost_usd", title="Spend by bot", labels={"cost_usd": "USD"})
    right.plotly_chart(fig, key="ct_bot")

    daily = data.cost_by_day(window, bots)
    left, right = st.columns(2)
    if not daily.empty:
        fig = charts.bar(daily, x="ts", y="cost_usd", color="model", barmode="stack", title="Spend per day (UTC) by model",
                         labels={"ts": "", "cost_usd": "USD"})  # fmt: skip
        left.plotly_chart(fig, key="ct_daily")
    fig = charts.bar(by_model, x="model", y="cost_per_request", title="Cost per request by model",
                     labels={"cost_per_request": "USD"})  # fmt: skip
    right.plotly_chart(fig, key="ct_cpr")

    st.subheader("Spend by model, bot and agent")
    ui.table(detail[["model", "bot", "agent", "requests", "cost_usd", "cost_per_request", "cost_saved_usd", "total_tokens"]],
             f"spend_detail_{window}.csv", key="ct_detail",
             column_config={"cost_usd": st.column_config.NumberColumn("cost", format="dollar")})  # fmt: skip

    st.subheader("Calls to models without a price")
    if unknown.empty:
        st.caption("Every model called in this window has a price.")
    else:
        st.warning(
            "These calls were priced at $0: add the models to `data/model_prices.json`.",
            icon=":material/help:",
        )
        ui.table(unknown, f"unpriced_models_{window}.csv", key="ct_unknown")


@st.fragment(run_every=ui.LIVE_REFRESH_S, parallel=True)
def agents() -> None:
    report = data.cost_report(window, bots)
    ranking, anomalies = report["ranking"], report["anomalies"]
    hourly = data.token_series(window, bots, "agent")
    if ranking.empty and hourly.empty:
        return
    st.subheader("Agents")
    left, right = st.columns(2)
    if not ranking.empty:
        fig = charts.bar(
            ranking, x="agent", y="total_cost", title="Spend by agent", labels={"total_cost": "USD"}
        )
        left.plotly_chart(fig, key="ct_agent")
        fig = charts.bar(ranking, x="agent", y="cost_per_decision", title="Efficiency: cost per decision (lower is better)",
                         labels={"cost_per_decision": "USD"})  # fmt: skip
        right.plotly_chart(fig, key="ct_eff")
        ui.table(ranking, f"agent_efficiency_{window}.csv", key="ct_eff_table",
                 column_config={"success_rate": st.column_config.NumberColumn("success rate", format="percent"),
                                "total_cost": st.column_config.NumberColumn("total cost", format="dollar")})  # fmt: skip

    st.subheader("Anomalies")
    if not hourly.empty:
        fig = charts.line(hourly, x="ts", y="cost_usd", color="agent", title="Spend over time by agent; anomalous calls marked",
                          labels={"ts": "", "cost_usd": "USD"})  # fmt: skip
        if not anomalies.empty:
            fig.add_scatter(x=anomalies["ts"], y=anomalies["cost_usd"], mode="markers",
                            name=f"anomalous call (z ≥ {report['z_threshold']:g})",
                            marker=dict(size=12, symbol="x", color="#c62828"))  # fmt: skip
        st.plotly_chart(fig, key="ct_anomaly_chart")
    st.caption(f"An anomaly is one call costing more than {report['z_threshold']:g} standard deviations above its "
               f"agent's mean over the window; agents with fewer than {report['min_decisions']} calls are not judged.")  # fmt: skip
    if anomalies.empty:
        st.caption(f"No call costs {report['z_threshold']:g} standard deviations above its agent's mean.")
        return
    anomalies = anomalies.assign(
        calls=[ui.query_link("cost_tracking", range=window, calls=t) for t in anomalies["trace_id"]]
    )
    all_link = ui.query_link("cost_tracking", range=window, calls=",".join(anomalies["trace_id"].head(200)))
    st.error(f"{report['anomaly_count']} anomalous call(s) (cost z-score ≥ {report['z_threshold']:g}); "
             f"open **view call** for the call behind each, or [all of them]({all_link}).",
             icon=":material/trending_up:")  # fmt: skip
    cols = [
        "ts",
        "agent",
        "bot",
        "model",
        "cost_usd",
        "z_score",
        "agent_mean_usd",
        "conversation_id",
        "calls",
    ]
    ui.table(anomalies[[c for c in cols if c in anomalies]], f"cost_anomalies_{window}.csv", key="ct_anomalies",
             column_config={"calls": st.column_config.LinkColumn("calls", display_text="view call"),
                            "cost_usd": st.column_config.NumberColumn("cost", format="dollar"),
                            "z_score": st.column_config.NumberColumn("z-score", format="%.1f")})  # fmt: skip


@st.fragment(run_every=ui.LIVE_REFRESH_S, parallel=True)
def conversations() -> None:
    top = data.top_conversations(window, bots, 20, "cost")
    if top.empty:
        return
    st.subheader("Conversations costing the most")
    if window != "24h":
        st.caption("Per-conversation totals cover the last 24 hours.")
    ui.table(top, f"top_conversations_cost_{window}.csv", key="ct_top",
             column_config={"cost_usd": st.column_config.NumberColumn("cost", format="dollar")})  # fmt: skip


budget()
spend()
agents()
conversations()
