"""Token analytics: input, output and cache tokens by model and bot over time, the cache hit rate,
and the conversations using the most tokens (LLMObservabilityService figures, aggregated in SQL)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from observability.analytics.window import source_note
from observability.ui import charts, data, fmt, frames
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header(
    "Token analytics", "Where the tokens go: by model, by bot, over time; and how much the cache saves."
)

f1, f2, f3 = st.columns([2, 3, 1])
with f1:
    window = ui.time_range_filter(("1h", "6h", "24h", "7d", "30d"), default="24h")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
with f3:
    by = st.segmented_control("Split by", ["model", "bot"], default="model", **ui.in_url("by"), required=True)
    by = by if by in ("model", "bot") else "model"
st.caption(f"Window {window}; figures {source_note(window)}.")

TOKEN_COLS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]


@ui.live(run_every=ui.LIVE_REFRESH_S)
def headline() -> None:
    tot = data.llm_totals(window, bots)
    if not tot or not tot.get("requests"):
        ui.empty_state(
            f"No LLM calls in the last {window}.",
            "Bots report calls with `client.record_llm_call(model, provider, input_tokens, output_tokens, latency_ms)`.",
        )
        return
    # two rows of three: token counts run to nine digits, which a sixth of the page cuts off
    c = [*st.columns(3), *st.columns(3)]
    over = f"the last {window}"  # the caption above names the window; the help of each figure too
    shown = {"llm_requests": tot["requests"], "input_tokens": tot["input_tokens"],
             "output_tokens": tot["output_tokens"], "cache_read_tokens": tot["cache_read_tokens"],
             "prompt_cache_token_share": tot["cache_read_tokens"] / tot["input_tokens"] if tot["input_tokens"] else None,
             "llm_cache_hit_rate": tot["cache_hit_rate"]}  # fmt: skip
    for col, (name, value) in zip(c, shown.items(), strict=True):
        fmt.metric(col, name, value, window=over, label=fmt.label(name))


def token_series() -> pd.DataFrame:
    series = data.token_series(window, bots, by)
    return series.assign(total_tokens=series["input_tokens"] + series["output_tokens"])


@ui.live(run_every=ui.LIVE_REFRESH_S)
def over_time() -> None:
    series = token_series()
    fig = charts.area(series, x="ts", y="total_tokens", color=by, title=f"Tokens (input + output) by {by} over time",
                  labels={"ts": "", "total_tokens": "tokens"})  # fmt: skip
    st.plotly_chart(fig, key="ta_series")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def by_model_and_bot() -> None:
    left, right = st.columns(2)
    totals = data.llm_breakdown(window, bots, ("model", "bot"))
    mix = frames.regroup(totals, ["model"])
    long = mix.melt(id_vars="model", value_vars=TOKEN_COLS, var_name="kind", value_name="tokens")
    long["kind"] = long["kind"].map(fmt.TOKEN_KIND_LABEL)
    fig = charts.bar(
        long, x="model", y="tokens", color="kind", barmode="group", title="Tokens by model and kind"
    )
    left.plotly_chart(fig, key="ta_by_model")
    by_bot = frames.regroup(totals, ["bot"])
    long = by_bot.melt(id_vars="bot", value_vars=TOKEN_COLS, var_name="kind", value_name="tokens")
    long["kind"] = long["kind"].map(fmt.TOKEN_KIND_LABEL)
    fig = charts.bar(long, x="bot", y="tokens", color="kind", barmode="group", title="Tokens by bot and kind")
    right.plotly_chart(fig, key="ta_by_bot")

    st.subheader("Totals by model and bot")
    ui.table(totals[["model", "bot", "requests", *TOKEN_COLS, "total_tokens", "cache_hit_rate", "cost_usd"]],
             f"tokens_by_model_bot_{window}.csv", key="ta_totals",
             column_config={"model": fmt.text_column("Model"), "bot": fmt.text_column("Bot"),
                            **fmt.columns({"requests": "llm_requests", **{c: c for c in TOKEN_COLS},
                                           "total_tokens": "total_tokens", "cache_hit_rate": "llm_cache_hit_rate",
                                           "cost_usd": "llm_cost_usd"}, {"cost_usd": "Spend"}, window=f"the last {window}")})  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S)
def cache() -> None:
    left, right = st.columns(2)
    hits = data.cache_hit_series(window, bots)
    fig = charts.line(hits, x="ts", y="cache_hit_rate", title=f"{fmt.label('llm_cache_hit_rate')} over time",
                      markers=True, labels={"ts": "", "cache_hit_rate": "share of LLM calls"})  # fmt: skip
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    left.plotly_chart(fig, key="ta_cache")
    series = token_series()
    per_model = series.groupby(by, as_index=False)[["requests", "cache_hits"]].sum()
    per_model["cache_hit_rate"] = per_model["cache_hits"] / per_model["requests"].where(
        per_model["requests"] > 0
    )
    fig = charts.bar(per_model, x=by, y="cache_hit_rate", title=f"{fmt.label('llm_cache_hit_rate')} by {by}",
                     labels={"cache_hit_rate": "share of LLM calls"})  # fmt: skip
    fig.update_yaxes(tickformat=".0%")
    right.plotly_chart(fig, key="ta_cache_by")


@ui.live(run_every=ui.LIVE_REFRESH_S, parallel=True)
def top_conversations() -> None:
    """A parallel fragment: its query over raw calls overlaps the figures above."""
    top = data.top_conversations(window, bots, 20)
    if top.empty:
        ui.empty_state(f"No conversation made LLM calls in the last {window}.")
        return
    st.subheader("Conversations using the most tokens")
    span = frames.top_conversations_span(window)
    if frames.top_conversations_capped(window):
        st.caption(f"Per-conversation totals cover {span}.")
    fig = charts.bar(top.head(10), x="total_tokens", y="conversation_id", orientation="h", color="bot",
                     title="Top 10 conversations by tokens")  # fmt: skip
    st.plotly_chart(fig, key="ta_top")
    links = top.assign(conversation_id=[ui.query_link("pages/conversations.py", conversation=c)
                                        for c in top["conversation_id"]])  # fmt: skip
    # the CSV holds the conversation ids, not the page's links to them
    ui.table(
        links,
        f"top_conversations_tokens_{window}.csv",
        key="ta_top_table",
        download=top,
        column_config=fmt.top_conversations_columns(span),
    )


headline()
# the charts in tabs: a load queries and draws only the open tab's (its name is in the URL, ?tab=Cache)
if (data.llm_totals(window, bots) or {}).get("requests"):
    ui.lazy_tabs({"Over time": over_time, "By model and bot": by_model_and_bot, "Cache": cache,
                  "Top conversations": top_conversations})  # fmt: skip
