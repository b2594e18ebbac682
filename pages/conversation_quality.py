"""Conversation quality: sentiment trajectory, topic drift, engagement, resolution and quality score
per conversation (ConversationAnalytics), and how well handoffs between bots work."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from observability.ui import charts, data, fmt, nav
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header(
    "Conversation quality", "Are users happier at the end than at the start, and do handoffs help?"
)

f1, f2 = st.columns([1, 2])
with f1:
    window = ui.time_range_filter(nav.page_ranges("conversation_quality"), default="24h")
with f2:
    bots = tuple(ui.bot_filter(data.known_bots()))
st.caption(
    f"Window: conversations with activity in the last {window}; scores are the worker's latest for each."
)


@ui.live(run_every=ui.LIVE_REFRESH_S)
def overview() -> None:
    summary = data.quality_summary(window, bots)
    scores = data.conversation_scores(window, bots)
    if scores.empty:
        ui.empty_state(f"No conversations active in the last {window}.",
                       "Conversations appear when bots record messages with `client.record_message(...)`.")  # fmt: skip
        return
    n, scored = int(summary["conversations"].sum()), int(summary["scored"].sum())
    mean = lambda col: (summary[col] * summary["scored"]).sum() / scored if scored else None  # noqa: E731
    resolved = int(summary["resolved"].sum())
    c = st.columns(5)
    c[0].metric(
        f"Conversations, last {window}",
        fmt.number("count", n),
        help=f"Conversations active in the last {window}",
    )
    c[1].metric(f"Scored, last {window}", fmt.number("count", scored),
                help="Of those, scored by the worker's conversation analytics step")  # fmt: skip
    fmt.metric(c[2], "quality_score", mean("quality"), label="Mean quality", window=f"the last {window}")
    fmt.metric(c[3], "sentiment", mean("sentiment"), label="Mean sentiment", window=f"the last {window}")
    fmt.metric(c[4], "resolution_rate", resolved / scored if scored else None, window=f"the last {window}",
               label=fmt.label("resolution_rate"))  # fmt: skip

    long = summary.melt(id_vars="bot", value_vars=["quality", "engagement", "drift", "resolution_rate"],
                        var_name="measure", value_name="value")  # fmt: skip
    measures = {"quality": "quality_score", "engagement": "engagement", "drift": "topic_drift",
                "resolution_rate": "resolution_rate"}  # fmt: skip
    long["measure"] = long["measure"].map(lambda k: fmt.label(measures[k]))
    fig = charts.bar(long, x="bot", y="value", color="measure", barmode="group",
                     title="Quality measures by bot (0–100 %)")  # fmt: skip
    for trace in fig.data:  # every bar says its value, so a 0 % reads 0 % and not "no bar"
        trace.text = [fmt.number("ratio", v) for v in trace.y]
        trace.textposition = "outside"
        trace.textfont = {"size": 10}
    fig.update_yaxes(tickformat=".0%", range=[0, 1.1])
    st.plotly_chart(fig, key="cq_by_bot")
    # only the bots with no value for a measure are named as having no bar (a dash): a 0 % is a value
    missing = long[long["value"].isna()].groupby("bot", sort=True)["measure"].agg(list)
    if not missing.empty:
        named = [f"{ui.md_escape(bot)} (no conversation scored yet)" if len(names) == len(measures)
                 else f"{ui.md_escape(bot)}'s {', '.join(names)}" for bot, names in missing.items()]  # fmt: skip
        st.caption(f"No bar (a dash) for {'; '.join(named)}: no conversation there has that measure yet.")


def coverage(shown: int) -> str:
    """Which conversations a view of the `conversation_scores` rows covers (the most recently
    active `frames.SCORE_ROWS`), for its caption: the tiles above count every conversation."""
    total = max(int(data.quality_summary(window, bots)["conversations"].sum()), shown)
    if shown < total:
        return f"the {shown:,} most recently active of {total:,} conversations in the last {window}"
    return f"all {total:,} conversations active in the last {window}"


@ui.live(run_every=ui.LIVE_REFRESH_S)
def conversations() -> None:
    scores = data.conversation_scores(window, bots)
    if scores.empty:
        ui.empty_state(f"No conversations active in the last {window}.")
        return
    st.caption(f"Showing {coverage(len(scores))}, most recently active first; the CSV holds the same rows.")
    shown, bars = fmt.progress(scores, {"engagement": "engagement", "quality": "quality_score"})
    ui.table(shown, f"conversation_quality_{window}.csv", key="cq_table", column_config={**SCORE_COLUMNS, **bars},
             download=scores)  # fmt: skip


@ui.live(run_every=ui.LIVE_REFRESH_S)
def sentiment_and_engagement() -> None:
    scores = data.conversation_scores(window, bots)
    if scores.empty:
        ui.empty_state(f"No conversations active in the last {window}.")
        return
    left, right = st.columns(2)
    pts = scores.dropna(subset=["sentiment", "engagement"])
    if pts.empty:
        fig = charts.histogram(scores, x="messages", color="bot", title="Messages per conversation")
    else:
        fig = charts.scatter(pts, x="sentiment", y="engagement", color="resolved", size=pts["messages"].clip(lower=1),
                         hover_data=["conversation", "bot", "quality"], title="Engagement against sentiment")  # fmt: skip
    left.plotly_chart(fig, key="cq_scatter")
    left.caption(f"Each point a conversation: {coverage(len(scores))}.")
    # counted in SQL over every scored conversation of the window, not the listed ones
    hist = data.quality_histogram(window, bots)
    if not hist.empty:
        width = float(hist["high"].iloc[0] - hist["low"].iloc[0])
        fig = charts.bar(hist.assign(mid=hist["low"] + width / 2), x="mid", y="conversations", color="bot",
                         barmode="stack", title="Quality score distribution", xlabel="quality",
                         ylabel="conversations")  # fmt: skip
        ranges = dict(zip(hist["low"] + width / 2, hist["range"], strict=True))
        for trace in fig.data:  # the hover names the bin's range of quality
            trace.text = [ranges[x] for x in trace.x]
        fig.update_traces(width=width, textposition="none", hovertemplate="%{text}: %{y:,}")
        fig.update_xaxes(tickformat=".0%", range=[0, 1])
        right.plotly_chart(fig, key="cq_hist")
        right.caption(f"All {int(hist['conversations'].sum()):,} scored conversations active in the last {window}, "
                      "in bins of 5 points of quality.")  # fmt: skip


SCORE_COLUMNS = {
    "conversation": fmt.text_column("Conversation"), "bot": fmt.text_column("Bot"),
    "account": fmt.text_column("Account"), "state": fmt.text_column("State"),
    "started": fmt.time_column("Started (UTC)"), "last_activity": fmt.time_column("Last activity (UTC)"),
    "messages": fmt.column("messages", "Messages"),
    "sentiment": fmt.column("sentiment"), "trend": fmt.text_column("Sentiment trend"),
    "drift": fmt.column("topic_drift"), "resolved": st.column_config.CheckboxColumn("Resolved"),
}  # fmt: skip


def one_conversation() -> None:
    st.subheader("One conversation")
    ids = data.conversation_scores(window, bots)["conversation"].tolist()
    if not ids:
        st.caption("Pick a conversation once there are some.")
        return
    st.caption(f"Pick one of {coverage(len(ids))}, most recently active first.")
    cid = st.selectbox("Conversation", ids, **ui.in_url("conversation"))
    cid = cid if cid in ids else ids[0]
    detail = data.analyze_conversation(cid)
    if detail is None:
        row = data.conversation_scores(window, bots).set_index("conversation").loc[cid]
        st.caption("Detailed analytics are not available; showing the stored scores.")
        st.json({k: (None if pd.isna(v) else v) for k, v in row[["sentiment", "trend", "drift", "engagement",
                                                                  "resolved", "quality"]].items()})  # fmt: skip
    else:
        c = st.columns(5)
        fmt.metric(c[0], "sentiment", detail["sentiment_avg"], window="this conversation",
                   label=fmt.label("sentiment"), delta=str(detail["sentiment_trend"] or ""), delta_color="off",
                   delta_arrow="off")  # fmt: skip
        fmt.metric(
            c[1],
            "topic_drift",
            detail["drift"],
            window="this conversation",
            label=fmt.label("topic_drift"),
        )
        fmt.metric(
            c[2],
            "engagement",
            detail["engagement"],
            window="this conversation",
            label=fmt.label("engagement"),
        )
        c[3].metric("Resolved", "yes" if detail["resolved"] else "no")
        fmt.metric(c[4], "quality_score", detail["quality"], label="Quality")
        if detail["sentiment_scores"]:
            traj = pd.DataFrame({"message": range(1, len(detail["sentiment_scores"]) + 1),
                                 "sentiment": detail["sentiment_scores"]})  # fmt: skip
            fig = charts.line(
                traj,
                x="message",
                y="sentiment",
                markers=True,
                title="Sentiment trajectory, message by message",
            )
            fig.add_hline(y=0, line_dash="dot", line_color="#9e9e9e")
            st.plotly_chart(fig, key="cq_traj")
        with st.expander("Transcript"):
            for m in detail["messages"]:
                st.markdown(
                    f"`{m['ts']:%H:%M:%S}` **{m['role']}**{' (' + ui.md_escape(m['bot']) + ')' if m['bot'] else ''}: {ui.md_escape(m['text'])}"
                )


@ui.live(run_every=ui.LIVE_REFRESH_S)
def handoffs() -> None:
    st.subheader("Handoff effectiveness")
    hm = data.handoff_matrix(window, bots)
    eff = data.handoff_effectiveness(window)
    if hm.empty and not eff:
        ui.empty_state(f"No handoffs in the last {window}.")
        return
    if eff:
        st.caption(f"Over the {eff.get('total_handoffs', 0)} most recent conversations handed from one bot to another "
                   f"in the last {window}.")  # fmt: skip
        c = st.columns(4)
        fmt.metric(c[0], "handoff_effectiveness_rate", eff.get("effectiveness_rate", 0))
        c[1].metric(
            "Resolved after handoff",
            f"{eff.get('successful_resolutions', 0):,} / {eff.get('total_handoffs', 0):,}",
        )
        c[2].metric("Messages after handoff", f"{eff.get('avg_messages_after_handoff', 0):,.1f}")
        before, after = eff.get("avg_sentiment_before"), eff.get("avg_sentiment_after")
        if isinstance(before, (int, float)) and isinstance(after, (int, float)):
            c[3].metric("Sentiment after handoff", f"{after:.2f}", f"{after - before:+.2f} vs before")
    left, right = st.columns(2)
    if not hm.empty:
        hm = hm.assign(pair=hm["source"] + " → " + hm["target"])
        fig = charts.bar(hm, x="pair", y="success_rate", title="Handoff success rate by route", yformat=".0%")
        left.plotly_chart(fig, key="cq_handoffs")
        fig = charts.bar(
            hm,
            x="pair",
            y=["successes", "blocked"],
            barmode="group",
            title="Handoffs by route: succeeded and blocked",
        )
        right.plotly_chart(fig, key="cq_handoff_counts")
        ui.table(hm.drop(columns=["pair"]), f"handoffs_{window}.csv", key="cq_handoff_table",
                 column_config={"source": fmt.text_column("From"), "target": fmt.text_column("To"),
                                **fmt.columns({"handoffs": "handoffs", "successes": "handoff_successes",
                                               "success_rate": "handoff_success_rate", "blocked": "handoffs_blocked",
                                               "mean_ms": "handoff_mean_ms"},
                                              {"mean_ms": "Mean ms"}, window=f"the last {window}")})  # fmt: skip


overview()
# the rest in tabs: a load queries and draws only the open tab's (its name is in the URL, ?tab=Handoffs)
ui.lazy_tabs({"Conversations": conversations, "Sentiment and engagement": sentiment_and_engagement,
              "One conversation": one_conversation, "Handoffs": handoffs})  # fmt: skip
