"""Activity feed (source document 004): filters by severity, type and account, paging, mark as read
per user; and the VIP view: VIP accounts' conversations and high-priority events first."""

from __future__ import annotations

import streamlit as st

from observability import auth
from observability.analytics import activity
from observability.timeutil import window_seconds
from observability.ui import charts, data, fmt, frames
from observability.ui import common as ui

user = ui.require("dashboards.view")
ui.page_header("Activity feed", "Everything that happened, newest first; VIP accounts in their own view.")

SEVERITIES = ["low", "medium", "high", "critical"]
SEV_COLORS = {"low": "#90a4ae", "medium": "#fbc02d", "high": "#ef6c00", "critical": "#c62828"}
window = ui.time_range_filter(("24h", "7d", "30d"), default="7d")
opts = data.activity_filters(days={"24h": 1, "7d": 7, "30d": 30}[window])

f = st.columns([2, 2, 2, 1, 1.5], vertical_alignment="bottom")  # room for the toggle's whole label
with f[0]:
    severities = st.multiselect("Severity", SEVERITIES, **ui.in_url("severity"), placeholder="All")
with f[1]:
    event_type = st.selectbox("Type", opts["types"], index=None, **ui.in_url("type"), placeholder="All types")
with f[2]:
    account = st.selectbox("Account", opts["accounts"], index=None, **ui.in_url("account"),
                           placeholder="All accounts")  # fmt: skip
PAGE_SIZES = [25, 50, 100, 200]
with f[3]:  # per page, unread-only and the page number live in the URL too (?per_page=&unread=1&page=)
    wanted = ui.query_param("per_page", "50")
    page_size = st.selectbox("Per page", PAGE_SIZES, key="per_page_pick",
                             index=PAGE_SIZES.index(int(wanted)) if wanted in {str(n) for n in PAGE_SIZES} else 1)  # fmt: skip
with f[4]:
    unread_only = st.toggle("Unread only", key="unread_pick", value=ui.query_param("unread") == "1")
ui.set_query_params(per_page=str(page_size), unread="1" if unread_only else None)


def mark_read(ids: list[str]) -> None:
    try:
        n = activity.mark_read(ui.get_store(), user.name, ids)
    except auth.PermissionDenied as exc:
        st.error(ui.md_escape(exc))
        return
    data.activity_page.clear()
    data.unread_count.clear()
    st.toast(f"Marked {n} event(s) as read.")


def feed_table(df, key: str) -> list[str]:  # noqa: ANN001
    """Show events with row selection; returns the ids of the selected rows."""
    show = df.assign(read=df["read"].map({True: "read", False: "NEW"}),
                     conversation=[ui.query_link("pages/conversations.py", conversation=c) if isinstance(c, str) and c else None
                                   for c in df["conversation"]])  # fmt: skip
    ev = st.dataframe(
        show[["read", "ts", "severity", "type", "title", "account", "vip", "conversation", "description"]],
        hide_index=True, on_select="rerun", selection_mode="multi-row", key=key, placeholder="",
        column_config={"read": st.column_config.TextColumn("Status", width="small", help="NEW: unread by you"),
                       "ts": fmt.time_column(), "severity": fmt.text_column("Severity"),
                       "type": fmt.text_column("Type"), "title": fmt.text_column("Title"),
                       "account": fmt.text_column("Account"), "vip": st.column_config.CheckboxColumn("VIP"),
                       "conversation": st.column_config.LinkColumn(
                           "Conversation", display_text=r"conversation=([^&]+)", help="Opens the conversation"),
                       "description": fmt.text_column("Description")},
    )  # fmt: skip
    rows = ev.selection.rows if ev is not None and hasattr(ev, "selection") else []
    return [df.iloc[i]["id"] for i in rows if i < len(df)]


@ui.live(run_every=ui.LIVE_REFRESH_S)
def feed() -> None:
    filters = (tuple(severities), event_type, account)
    counts = data.activity_counts(window, None, *filters)
    if not counts.empty:
        step = frames.chart_step_s(window)
        fig = charts.bar(counts, x="ts", y="events", color="severity", color_discrete_map=SEV_COLORS,
                         title=f"Events per {'hour' if step == 3600 else 'day' if step == 86_400 else f'{step // 60} min'} "
                               f"by severity, last {window}, with the filters above", labels={"ts": ""},
                         category_orders={"severity": SEVERITIES}, period_s=step,
                         x_range=charts.last_hours(int(window_seconds(window) // 3600)))  # fmt: skip
        st.plotly_chart(fig, key="af_counts")
    _, total = data.activity_page(
        user.name, tuple(severities), event_type, account, unread_only, 1, 1, window=window
    )
    high = (
        int(counts.loc[counts["severity"].isin(["high", "critical"]), "events"].sum())
        if not counts.empty
        else 0
    )
    m = st.columns(3)
    m[0].metric(
        "Matching events", f"{total:,}", help=f"Events of the last {window} matching the filters above"
    )
    fmt.metric(m[1], "unread_events", data.unread_count(user.name, window, None, *filters),
               label=f"Unread in range for {user.name}", window=f"the last {window}")  # fmt: skip
    m[2].metric(f"High + critical ({window})", f"{high:,}",
                help=f"High and critical events of the last {window} matching the filters above")  # fmt: skip
    pages = max(1, -(-total // page_size))
    p1, p2 = st.columns([1, 4])
    with p1:
        try:
            start_page = min(max(int(ui.query_param("page", "1") or 1), 1), pages)
        except ValueError:
            start_page = 1
        if ui.filters_changed(
            (window, tuple(severities), event_type, account, unread_only, page_size), "af_filters"
        ):
            start_page = 1  # new filters: their newest events, not page 3 of them
            st.session_state.pop("page_pick", None)
        page = st.number_input(
            "Page", min_value=1, max_value=pages, value=start_page, step=1, key="page_pick"
        )
        ui.set_query_params(page=str(int(page)) if page > 1 else None)
    with p2:
        st.caption(f"Page {page} of {pages}, {page_size} per page, newest first.")
    df, _ = data.activity_page(
        user.name, tuple(severities), event_type, account, unread_only, int(page), page_size, window=window
    )
    if df.empty:
        ui.empty_state("No activity matches these filters." if total == 0 and (severities or event_type or account or unread_only)
                       else "No activity yet.", "Bots and the console log events with `client.log_activity(...)`; alerts, "
                       "take-overs and emergency stops appear here too.")  # fmt: skip
    else:
        selected = feed_table(df, "af_table")
        b1, b2, b3 = st.columns([1, 1, 2])
        if b1.button(f"Mark selected as read ({len(selected)})", disabled=not selected, key="af_mark_sel"):
            mark_read(selected)
            st.rerun()
        if b2.button("Mark page as read", key="af_mark_page"):
            mark_read(df["id"].tolist())
            st.rerun()
        with b3:
            ui.download_csv(df, f"activity_page{page}.csv", key="af_csv")


@ui.live(run_every=ui.LIVE_REFRESH_S)
def vip_view() -> None:
    vip = data.vip_conversations()
    st.markdown("**VIP conversations**, most recently active first")
    if vip.empty:
        ui.empty_state(
            "No VIP conversations in the last 7 days.",
            "Mark accounts as VIP with `client.set_account(id, vip=True)`.",
        )
    else:
        vip = vip.assign(state=fmt.state_words(vip["state"]))  # "AI", as Conversations says
        shown, bars = fmt.progress(vip, {"quality": "quality_score"})
        ui.table(shown, "vip_conversations.csv", key="af_vip_convs", download=vip,
                 column_config={"conversation": fmt.text_column("Conversation"), "account_name": fmt.text_column("Account"),
                                "account": fmt.text_column("Account id"), "bot": fmt.text_column("Bot"),
                                "state": fmt.text_column("State"), "operator": fmt.text_column("Operator"),
                                "last_activity": fmt.time_column("Last activity (UTC)"),
                                "messages": fmt.column("messages", "Messages"), "sentiment": fmt.column("sentiment"),
                                "resolved": st.column_config.CheckboxColumn("Resolved"), **bars})  # fmt: skip
    st.markdown("**Priority events**: VIP accounts first, then high and critical severity")
    pri, _ = data.activity_page(user.name, (), None, None, False, 1, 50, True, window=window)
    if pri.empty:
        ui.empty_state("No activity yet.")
    else:
        selected = feed_table(pri, "af_vip_table")
        c1, c2 = st.columns([1, 3])
        if c1.button(f"Mark selected as read ({len(selected)})", disabled=not selected, key="af_vip_mark"):
            mark_read(selected)
            st.rerun()
        with c2:
            ui.download_csv(pri, "vip_priority_events.csv", key="af_vip_csv")


# the open tab is in the URL (?tab=VIP+view) and only its content runs (and refreshes)
tab_feed, tab_vip = st.tabs(["Feed", "VIP view"], **ui.in_url("tab"))
with tab_feed:
    if tab_feed.open is not False:
        feed()
with tab_vip:
    if tab_vip.open:
        vip_view()
