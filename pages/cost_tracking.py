"""Claude cost tracking (managers): spend by model, bot, agent, conversation and day; cost per
request; agent efficiency; z-score anomalies linked to the calls behind them; cache savings; month
to date and forecast against the budget a manager sets; calls to models without a price."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from observability import auth
from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.window import chart_granularity, source_note
from observability.ui import charts, data, fmt, frames
from observability.ui import common as ui

user = ui.require("dashboards.view")
ui.page_header("Cost tracking", "What the bots cost, where it goes, and where the month will end.")

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(("24h", "7d", "30d"), default="7d")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
st.caption(f"Window {window}; figures {source_note(window)}.")


CALL_COLUMNS = {
    "trace_id": fmt.text_column("Trace id"), "ts": fmt.time_column(), "bot": fmt.text_column("Bot"),
    "agent": fmt.text_column("Agent"), "decision_type": fmt.text_column("Decision"), "model": fmt.text_column("Model"),
    "provider": fmt.text_column("Provider"), "latency_ms": fmt.column("llm_call_latency_ms"),
    "cache_hit": st.column_config.CheckboxColumn("Cache hit"), "cost_usd": fmt.column("anomaly_call_cost_usd"),
    "conversation_id": fmt.text_column("Conversation"), "success": st.column_config.CheckboxColumn("Succeeded"),
    "error_type": fmt.text_column("Error"),
    **fmt.columns({c: c for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}),
}  # fmt: skip


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
            ui.table(calls, "anomaly_calls.csv", key="ct_calls", column_config=CALL_COLUMNS)
        if st.button("Close", key="ct_calls_close"):
            ui.set_query_params(calls=None)
            st.rerun()


# ---- month to date, forecast, budget -----------------------------------------------------------
BUDGET_NOTE = "ct_budget_note"  # what the last save did, shown after the rerun that follows it


def budget_form(fc: dict) -> None:
    """Managers set the monthly budget: a positive number of dollars; an error stays beside the
    field with the typed value kept, a save says what changed and warns when the budget is far
    from the spend."""
    note = st.session_state.pop(BUDGET_NOTE, None)
    with st.form("budget_form"):
        new = st.number_input("Monthly budget (USD)", value=float(fc["budget_usd"]), step=50.0, key="budget_value",
                              help="A positive number of dollars; the forecast above is compared with it.")  # fmt: skip
        problem = st.empty()
        if st.form_submit_button("Save budget"):
            try:
                LLMObservabilityService(ui.get_store()).set_monthly_budget(user.name, float(new))
            except (auth.PermissionDenied, ValueError) as exc:
                problem.error(f"Not saved: {exc}.", icon=":material/error:")
            else:
                data.spend_forecast.clear()
                st.session_state[BUDGET_NOTE] = budget_note(fc, float(new))
                st.rerun()
    if note:
        st.success(note[0], icon=":material/check:")
        if note[1]:
            st.warning(note[1], icon=":material/warning:")


def budget_note(fc: dict, new: float) -> tuple[str, str | None]:
    """(what happened, a warning when the new budget is far from the month's spend or None)."""
    done = f"Saved: the monthly budget is now ${new:,.2f} (it was ${fc['budget_usd']:,.2f})."
    mtd, forecast = fc["spend_mtd_usd"], fc["forecast_month_end_usd"]
    if new < mtd:
        return done, f"This month has already spent ${mtd:,.2f}, more than the new budget."
    if forecast > 0 and not 0.2 <= new / forecast <= 5:
        return done, (f"The month is forecast to end at ${forecast:,.2f}: the new budget is "
                      f"{new / forecast:,.1f} times that. Check the amount.")  # fmt: skip
    return done, None


# Headline figures above the tabs; sections are fragments: each refreshes every 15 s, and the
# parallel ones' queries overlap on a full run.
def run_rate_basis(fc: dict) -> str:
    """What the forecast's daily run rate is the mean of: a young store's says how little."""
    days = fc["run_rate_days"]
    if days <= 0:
        return "No LLM call in the last 7 days: the forecast is the month to date."
    span = f"{days:,.1f} days" if days >= 2 else f"{days * 24:,.1f} hours"
    return (f"{fmt.label('spend_forecast_usd')}: the month to date plus ${fc['daily_run_rate_usd']:,.2f}/day "
            f"for each day left, the mean daily spend over the {span} since "
            f"{fc['run_rate_since']:%Y-%m-%d %H:%M} UTC (the last 7 days, the month so far or the store's "
            "first call, whichever is shortest).")  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def month_figures() -> None:
    fc = data.spend_forecast()
    c = st.columns(5)
    fmt.metric(c[0], "spend_today_usd", fc["spend_today_usd"])  # Overview's figure: its link lands here
    fmt.metric(c[1], "spend_month_to_date_usd", fc["spend_mtd_usd"])
    fmt.metric(c[2], "spend_forecast_usd", fc["forecast_month_end_usd"], delta_color="inverse",
               delta=f"{'+' if fc['forecast_month_end_usd'] >= fc['budget_usd'] else '-'}"
                     f"${abs(fc['forecast_month_end_usd'] - fc['budget_usd']):,.0f} vs budget")  # fmt: skip
    fmt.metric(c[3], "monthly_budget_usd", fc["budget_usd"])
    fmt.metric(c[4], "saved_month_to_date_usd", fc["saved_mtd_usd"])
    st.caption(
        "These figures are for **all bots**, whatever the bot filter above: the budget is one for the whole "
        f"console. {fmt.label('spend_today_usd')} counts every provider since 00:00 UTC today (as on Overview); "
        f"{fmt.label('spend_month_to_date_usd')} since the 1st, 00:00 UTC; Live monitoring's "
        f"“{fmt.label('claude_cost_today_usd')}” counts Claude calls only, since 00:00 UTC today. "
        f"{run_rate_basis(fc)}"
    )
    if fc["forecast_over_budget"]:
        st.warning(f"At ${fc['daily_run_rate_usd']:,.2f}/day the month ends "
                   f"${fc['forecast_month_end_usd'] - fc['budget_usd']:,.2f} over budget.")  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def spend_figures() -> None:
    tot = data.llm_totals(window, bots)
    if not tot or not tot.get("requests"):
        ui.empty_state(f"No LLM calls in the last {window}.",
                       "Costs come from `record_llm_call` (priced from the model price table unless `cost_usd=` is given).")  # fmt: skip
        return
    unknown = data.unknown_models(window, bots)
    c = st.columns(4)
    fmt.metric(c[0], "llm_cost_usd", tot["cost_usd"], label=f"Spend ({window})", window=f"the last {window}")
    fmt.metric(c[1], "llm_cost_per_request_usd", tot["cost_per_request"], window=f"the last {window}")
    fmt.metric(c[2], "llm_cost_saved_usd", tot["cost_saved_usd"], window=f"the last {window}")
    fmt.metric(c[3], "unpriced_calls", int(unknown["calls"].sum()) if not unknown.empty else 0)


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def month_and_budget() -> None:
    fc = data.spend_forecast()
    daily = fc["daily"]
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
            title=f"{fc['month']}: spend, cumulative and forecast against budget (UTC days, all bots and providers)",
            yaxis_tickprefix="$",
            xaxis_tickformat="%b %d",
        )
        st.plotly_chart(fig, key="ct_month")
    if user.can("budget.set"):
        budget_form(fc)
    else:
        st.caption("Managers and admins can change the monthly budget.")


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def by_model_and_bot() -> None:
    detail = data.llm_breakdown(window, bots, ("model", "bot", "agent"))
    if detail.empty:
        ui.empty_state(f"No LLM calls in the last {window}.")
        return
    by_model, by_bot = frames.regroup(detail, ["model"]), frames.regroup(detail, ["bot"])
    left, right = st.columns(2)
    fig = charts.pie(by_model, names="model", values="cost_usd", hole=0.45, title="Spend by model")
    left.plotly_chart(fig, key="ct_model")
    fig = charts.bar(by_bot, x="bot", y="cost_usd", title="Spend by bot", labels={"cost_usd": "USD"})
    right.plotly_chart(fig, key="ct_bot")
    fig = charts.bar(by_model, x="model", y="cost_per_request", title="Cost per request by model",
                     labels={"cost_per_request": "USD"})  # fmt: skip
    left, _ = st.columns(2)
    left.plotly_chart(fig, key="ct_cpr")

    st.subheader("Spend by model, bot and agent")
    ui.table(detail[["model", "bot", "agent", "requests", "cost_usd", "cost_per_request", "cost_saved_usd", "total_tokens"]],
             f"spend_detail_{window}.csv", key="ct_detail",
             column_config={"model": fmt.text_column("Model"), "bot": fmt.text_column("Bot"),
                            "agent": fmt.text_column("Agent"),
                            **fmt.columns({"requests": "llm_requests", "cost_usd": "llm_cost_usd",
                                           "cost_per_request": "llm_cost_per_request_usd",
                                           "cost_saved_usd": "llm_cost_saved_usd", "total_tokens": "total_tokens"},
                                          {"cost_usd": "Spend"}, window=f"the last {window}")})  # fmt: skip

    st.subheader("Calls without a price")
    unknown = data.unknown_models(window, bots)
    if unknown.empty:
        st.caption("Every model called in this window has a price.")
    else:
        if (unknown["calls"] > unknown["usage_missing_calls"]).any():
            st.warning("These calls were priced at $0: add unknown models to `data/model_prices.json`.",
                       icon=":material/help:")  # fmt: skip
        if missing := int(unknown["usage_missing_calls"].sum()):
            st.warning(f"{missing:,} {'call' if missing == 1 else 'calls'} reported no token usage: their spend is missing, not $0. An OpenAI "
                       'stream reports usage only with `stream_options={"include_usage": True}`.')  # fmt: skip
        ui.table(unknown, f"unpriced_models_{window}.csv", key="ct_unknown",
                 column_config={"model": fmt.text_column("Model"), "provider": fmt.text_column("Provider"),
                                "calls": fmt.column("unpriced_calls", "Calls"),
                                "usage_missing_calls": fmt.column("usage_missing_calls", "Without usage"),
                                **fmt.columns({"input_tokens": "input_tokens", "output_tokens": "output_tokens"}),
                                "caller_cost_usd": fmt.column("llm_cost_usd", "Cost given by the caller"),
                                "withheld_usd": fmt.column("llm_cost_usd", "Priced above the ceiling (kept out of spend)"),
                                "first_seen": fmt.time_column("First seen (UTC)"),
                                "last_seen": fmt.time_column("Last seen (UTC)")})  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def per_day() -> None:
    daily = data.cost_by_day(window, bots)
    if daily.empty:
        ui.empty_state(f"No LLM calls in the last {window}.")
        return
    fig = charts.bar(daily, x="ts", y="cost_usd", color="model", barmode="stack", title="Spend per day (UTC) by model",
                     labels={"ts": "", "cost_usd": "USD"})  # fmt: skip
    st.plotly_chart(fig, key="ct_daily")


RANKING_COLUMNS = {
    "rank": st.column_config.NumberColumn("Rank", format="%,d"), "agent": fmt.text_column("Agent"),
    **fmt.columns({"cost_per_decision": "agent_cost_per_decision_usd", "tokens_per_decision": "agent_tokens_per_decision",
                   "decisions": "agent_decisions", "total_cost": "agent_cost_usd", "success_rate": "agent_success_rate",
                   "cost_per_1k_tokens": "agent_cost_per_1k_tokens_usd"}),
}  # fmt: skip


def anomaly_page_number() -> int:
    try:
        return max(int(ui.query_param("anomaly_page", "1") or 1), 1)
    except ValueError:
        return 1


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def agents() -> None:
    ranking = data.cost_report(window, bots, anomaly_page=anomaly_page_number())["ranking"]
    if ranking.empty:
        ui.empty_state(f"No agent made LLM calls in the last {window}.")
        return
    st.subheader("Agents")
    left, right = st.columns(2)
    fig = charts.bar(ranking, x="agent", y="total_cost", title="Spend by agent", labels={"total_cost": "USD"})
    left.plotly_chart(fig, key="ct_agent")
    fig = charts.bar(ranking, x="agent", y="cost_per_decision", title="Efficiency: cost per decision (lower is better)",
                     labels={"cost_per_decision": "USD"})  # fmt: skip
    right.plotly_chart(fig, key="ct_eff")
    ui.table(ranking, f"agent_efficiency_{window}.csv", key="ct_eff_table", column_config=RANKING_COLUMNS)


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def anomalies() -> None:
    report = data.cost_report(window, bots, anomaly_page=anomaly_page_number())
    anomaly_section(report, report["anomalies"], data.token_series(window, bots, "agent"))


def anomaly_section(report: dict, anomalies: pd.DataFrame, hourly: pd.DataFrame) -> None:
    z, usd = report["z_threshold"], report["min_cost_usd"]
    rule = (f"a call costing at least **${usd:,.2f}** (COST_ANOMALY_MIN_USD) **and** more than **{z:g} standard "
            f"deviations** (COST_ANOMALY_Z) above its agent's mean over the last {window}; agents with fewer than "
            f"{report['min_decisions']} calls are not judged")  # fmt: skip
    st.subheader("Cost anomalies")
    st.caption(f"An anomaly is {rule}.")
    if not hourly.empty:
        bucket = chart_granularity(window)  # the last point is the bucket still filling
        fig = charts.line(hourly, x="ts", y="cost_usd", color="agent",
                          title=f"Spend per {bucket} by agent, last {window} (the last {bucket} is still running)",
                          labels={"ts": "", "cost_usd": "USD"})  # fmt: skip
        left, right = st.columns(2) if not anomalies.empty else (st.container(), None)
        left.plotly_chart(fig, key="ct_anomaly_chart")
        if (
            not anomalies.empty
        ):  # each anomalous call at its own cost, on its own axis (not at the spend's scale)
            fig = charts.scatter(anomalies, x="ts", y="cost_usd", color="agent",
                                 title=f"Anomalous calls, page {report['page']}: cost of each call")  # fmt: skip
            fig.update_traces(marker_symbol="x", marker_size=11)
            fig.update_layout(xaxis_title="", yaxis_title="USD per call")
            fig.add_hline(
                y=usd, line_dash="dash", line_color="#c62828", annotation_text=f"${usd:,.2f} threshold"
            )
            fig.update_yaxes(rangemode="tozero", tickprefix="$")
            right.plotly_chart(fig, key="ct_anomaly_calls")
    count = report["anomaly_count"]
    if not count:
        st.caption("No call in this window is an anomaly.")
        return
    page, pages = report["page"], report["pages"]
    st.error(f"{count:,} anomalous call(s) in the last {window}: all of them below, {frames.ANOMALY_PAGE_SIZE} per "
             f"page, highest z-score first (page {page} of {pages}).", icon=":material/trending_up:")  # fmt: skip
    if not anomalies.empty:
        anomalies = anomalies.assign(
            calls=[ui.query_link("cost_tracking", range=window, calls=t, tab="Anomalies") for t in anomalies["trace_id"]],
            similar=[ui.query_link("pages/llm_calls.py", bot=b, model=m, cost_min=f"{usd:.2f}",
                                   range=window if window in ("1h", "6h", "24h", "7d", "30d") else None,
                                   sort="costliest")
                     for b, m in zip(anomalies["bot"], anomalies["model"], strict=True)],
        )  # fmt: skip
        cols = ["ts", "agent", "bot", "model", "cost_usd", "z_score", "agent_mean_usd", "conversation_id", "calls",
                "similar"]  # fmt: skip
        # the CSV holds each call's trace id where the table links to the call (and no link to similar calls)
        download = anomalies[
            [c for c in cols if c in anomalies and c not in ("calls", "similar")] + ["trace_id"]
        ]
        ui.table(anomalies[[c for c in cols if c in anomalies]], f"cost_anomalies_{window}_page{page}.csv",
                 key="ct_anomalies", download=download,
                 column_config={"ts": fmt.time_column(), "agent": fmt.text_column("Agent"), "bot": fmt.text_column("Bot"),
                                "model": fmt.text_column("Model"), "conversation_id": fmt.text_column("Conversation"),
                                "calls": st.column_config.LinkColumn("Call", display_text="view call"),
                                "similar": st.column_config.LinkColumn(
                                    "LLM calls", display_text="calls of this bot and model over the threshold"),
                                **fmt.columns({"cost_usd": "anomaly_call_cost_usd", "z_score": "cost_anomaly_z",
                                               "agent_mean_usd": "agent_mean_cost_usd"})})  # fmt: skip
    if pages > 1:
        prev, label, nxt = st.columns([1, 2, 1])
        if prev.button("← Previous", key="ct_anomaly_prev", disabled=page <= 1):
            ui.set_query_params(anomaly_page=str(page - 1))
            st.rerun()
        label.caption(f"Page {page} of {pages}")
        if nxt.button("Next →", key="ct_anomaly_next", disabled=page >= pages):
            ui.set_query_params(anomaly_page=str(page + 1))
            st.rerun()


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def conversations() -> None:
    top = data.top_conversations(window, bots, 20, "cost")
    if top.empty:
        ui.empty_state(f"No conversation made LLM calls in the last {window}.")
        return
    st.subheader("Conversations costing the most")
    span = frames.top_conversations_span(window)
    if frames.top_conversations_capped(window):
        st.caption(f"Per-conversation totals cover {span}.")
    links = top.assign(conversation_id=[ui.query_link("pages/conversations.py", conversation=c)
                                        for c in top["conversation_id"]])  # fmt: skip
    # the CSV holds the conversation ids, not the page's links to them
    ui.table(links, f"top_conversations_cost_{window}.csv", key="ct_top", download=top,
             column_config=fmt.top_conversations_columns(span))  # fmt: skip


month_figures()
spend_figures()
# the charts in tabs: a load queries and draws only the open tab's (its name is in the URL, ?tab=Agents)
ui.lazy_tabs({"Month and budget": month_and_budget, "By model and bot": by_model_and_bot, "Per day": per_day,
              "Agents": agents, "Anomalies": anomalies, "Top conversations": conversations})  # fmt: skip
