"""Conversations and intervention: the live list (state, bot, last activity, quality), a transcript
that updates live, and for operators the take-over: take over, reply, suggest a reply, hand back.

Everything is done by `observability.control`, which checks the user's role itself; this page only
hides what a role cannot do.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from observability import auth, control
from observability.analytics.conversation_timeline import conversation_overview, conversation_timeline
from observability.ui import attention, data, fmt
from observability.ui import common as ui

TRANSCRIPT_REFRESH_S = 3  # an operator in a live chat needs faster than the dashboards' 15 s
VIEW_ANCHOR = "one-conversation"  # the open conversation's heading; a `#` link scrolls to it in place
ROLE_AVATAR = {"user": "user", "bot": ":material/smart_toy:", "operator": ":material/support_agent:"}

user = ui.require("dashboards.view")
can_act = user.can("conversations.control")
ui.page_header(
    "Conversations",
    "Live conversations; operators take one over from the AI, reply, and hand it back."
    if can_act
    else "Live conversations and their transcripts (operators can take them over).",
)
store = ui.get_store()
# filled once the open conversation is known: its name and state, and a jump to its view and actions
# (which come after Needs attention and the list; an alert's link opens the page with it chosen)
jump = st.container()
browse = ui.cached_query(control.browse_conversations)
matches = ui.cached_query(control.conversation_matches)
footprint = ui.cached_query(control.conversation_footprint)
timeline_q = ui.cached_query(conversation_timeline)
overview_q = ui.cached_query(conversation_overview)
PAGE_SIZE = 50
# URL-bound filters show their plain values (a widget bound to the URL writes what it shows, so a
# format_func would put emoji labels in the link): ?state=human&vip=VIP
STATE_FILTER = {"AI": "ai", "human": "human", "stopped": "stopped"}
VIP_CHOICES = {"VIP": True, "not VIP": False}
FILTER_DEFAULTS = {"state": [], "q": "", "vip": None, "bot": []}  # the bound filters, cleared
# links written before the filters held plain values (emoji labels, or the stored state): still open
OLD_STATE_VALUES = {"🤖 AI": "AI", "ai": "AI", "🧑 human": "human", "⛔ stopped": "stopped"}
OLD_VIP_VALUES = {"⭐ VIP only": "VIP", "vip": "VIP", "Not VIP": "not VIP", "other": "not VIP"}


def plain_old_links() -> None:
    """An old link's filter values as today's: the widgets bound to the URL drop values they do not
    offer, so the translated values go in as the widgets' state (which they then write to the URL)."""
    try:
        states, vip = st.query_params.get_all("state"), st.query_params.get("vip")
    except Exception:  # noqa: BLE001 - already bound this run: the widgets hold the values
        return
    if any(s in OLD_STATE_VALUES for s in states):
        st.session_state["state"] = list(dict.fromkeys(OLD_STATE_VALUES.get(s, s) for s in states))
    if vip in OLD_VIP_VALUES:
        st.session_state["vip"] = OLD_VIP_VALUES[vip]


def bot_options() -> list[str]:
    """Bots the console knows, plus a bot a link asked for (an alert's "Conversations of <bot>")."""
    try:
        linked = st.query_params.get_all("bot")
    except Exception:  # noqa: BLE001 - bound to the widget: its value is in the session
        linked = list(st.session_state.get("bot") or [])
    return sorted(set(data.known_bots()) | set(linked))


FLASH = "cv_flash"  # what the last action did, shown once after the rerun it triggers


def _act(label: str, fn, *args, where=None, **kwargs) -> bool:  # noqa: ANN001
    """Run a control action. On success keep its outcome in plain words for the next run; on a
    refusal show why right where the action was asked (`where`, default here) and return False,
    leaving every typed value in its field."""
    try:
        result = fn(store, *args, **kwargs)
    except (auth.PermissionDenied, control.ControlError, ValueError) as exc:
        (where or st).error(
            f"{ui.md_escape(label)} was refused: {ui.md_escape(exc)}", icon=":material/error:"
        )
        return False
    browse.clear()
    matches.clear()
    st.session_state[FLASH] = ui.md_escape(result.summary())
    return True


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return pd.DataFrame(
        {
            "conversation": df["id"],
            "state": fmt.state_words(df["effective_state"]),
            "operator": df["operator"],
            "bot": df["bot"],
            "account": df["account_name"].fillna(df["account_id"]),
            "VIP": df["vip"].map({True: "VIP", False: ""}),
            "last activity": pd.to_datetime(df["last_activity_at"], utc=True),
            "messages": df["messages"],
            "quality": df["quality_score"],
            "sentiment": df["sentiment"],
            "engagement": df["engagement"],
            "resolved": df["resolved"],
        }
    )


def _open(cid: str) -> None:
    """Open a conversation from Needs attention: clear the filters so it belongs to the list.
    Only before the filters are drawn in this run (their URL parameters are bound to them)."""
    filtered = any(st.session_state.get(k) not in (None, default) for k, default in FILTER_DEFAULTS.items())
    if filtered or st.query_params.get("active"):  # say so: the list changes under the user's eyes
        st.session_state[FLASH] = (f"Opened {ui.md_escape(control.shown_id(cid))}: the list's filters were "
                                   "cleared so that it is in the list.")  # fmt: skip
    # the filters' URL parameters are bound to their widgets: reset the widgets, which clears them
    for k, default in FILTER_DEFAULTS.items():
        st.session_state[k] = default
    st.query_params.pop("active", None)  # the toggle behind ?active= is not bound (read by hand)
    st.session_state.pop("cv_active", None)  # the toggle behind ?active=
    ui.set_query_params(**{ui.CURSOR_PARAM: None, ui.PAGE_PARAM: None})  # its list starts at page 1
    ui.set_query_params(conversation=cid)
    st.session_state["cv_pick"] = cid
    st.rerun()


AUTO_OPENED = "cv_auto_opened"  # the conversation the page opened by itself (the first listed)
OPEN_REQUEST = "cv_open_request"  # a conversation to open once the filters are cleared (see below)


def _request_open(cid: str) -> None:
    st.session_state[OPEN_REQUEST] = cid


if (requested := st.session_state.pop(OPEN_REQUEST, None)) is not None:
    _open(requested)  # "Clear the filters and open it", asked below the filters
attention.attention_panel(_open, key="cv_attention")

plain_old_links()
# widths that show "Active now" and "not VIP" whole at 1280 px
f1, f2, f3, f4, f5 = st.columns([1.8, 1.7, 1.8, 1.8, 1.7], vertical_alignment="bottom")
with f1:
    states = st.multiselect(
        "State", list(STATE_FILTER), **ui.in_url("state"), placeholder="All states",
        help="AI: the bot answers; human: an operator holds it; stopped: nobody answers.",
    )  # fmt: skip
with f2:
    vip_choice = st.segmented_control(
        "Accounts", list(VIP_CHOICES), **ui.in_url("vip"), help="VIP accounts only, or all others"
    )
with f3:
    search = st.text_input("Search", **ui.in_url("q"), placeholder="conversation, bot or account")
with f4:
    bots = ui.bot_filter(bot_options(), key="bot")
with f5:  # ?active=1: the conversations Overview's "Active conversations" counts (its link sets it)
    active = st.toggle("Active now", key="cv_active", value=ui.query_param("active") == "1",
                       help="Activity in the last 15 minutes and not stopped: Overview's active conversations")  # fmt: skip
ui.set_query_params(active="1" if active else None)
filters = {
    "states": tuple(STATE_FILTER[s] for s in states if s in STATE_FILTER),
    "bots": tuple(bots),
    "search": search.strip() or None,
    "vip": VIP_CHOICES.get(vip_choice or ""),
    "active": active,
}
# ?after=<cursor>&page=<n>: a shared link shows the same rows
cursor, number = ui.keyset_position(filters, "cv_filters")
try:
    page = browse(**filters, cursor=cursor, limit=PAGE_SIZE)
except ValueError as exc:  # a page cursor edited by hand
    ui.first_page_after_bad_link(str(exc))
    cursor, number = None, 1
    page = browse(**filters, cursor=None, limit=PAGE_SIZE)


@ui.live(run_every=ui.LIVE_REFRESH_S)
def live_list() -> None:
    current = browse(**filters, cursor=cursor, limit=PAGE_SIZE)
    m = st.columns(3)
    m[0].metric("Conversations", f"{current.total:,}", help="Every conversation matching the filters")
    m[1].metric("Held by a human", f"{current.by_state.get('human', 0):,}")
    m[2].metric("Stopped", f"{current.by_state.get('stopped', 0):,}")
    if not current.rows:
        ui.empty_state(
            (
                "No conversations match."
                + (
                    " Active now: none with activity in the last 15 minutes that is not stopped."
                    if active
                    else ""
                )
            )
            if any(filters.values())
            else "No conversations yet.",
            "Conversations appear when bots record messages with `client.record_message(...)`.",
        )
        return
    df = _frame(current.rows)
    shown, bars = fmt.progress(df, {"quality": "quality_score", "engagement": "engagement"})
    picked = st.dataframe(
        shown, key="cv_table", hide_index=True, on_select="rerun", selection_mode="single-row", placeholder="",
        column_config={
            "last activity": st.column_config.DatetimeColumn("last activity (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            **bars,
        },
    )  # fmt: skip
    ui.download_csv(df, "conversations.csv", key="cv_list_csv")
    chosen = picked.selection.rows if picked is not None else []
    if chosen and chosen[0] < len(current.rows):
        cid = current.rows[chosen[0]]["id"]
        if cid != st.session_state.get("cv_pick"):  # a click on a row opens it
            st.session_state["cv_pick"] = cid
            ui.set_query_params(conversation=cid)
            st.rerun(scope="app")
    first = (number - 1) * PAGE_SIZE + 1
    st.caption(
        f"Rows {first:,}–{first + len(current.rows) - 1:,} of {current.total:,}, newest activity first."
    )


live_list()
ui.keyset_pager(cursor, number, page.next_cursor, "cv_filters", buttons="cv")

st.subheader("One conversation", anchor=VIEW_ANCHOR)
ids = [r["id"] for r in page.rows]
labels = {
    r[
        "id"
    ]: f"{r['id']} · {fmt.STATE_LABEL.get(r['effective_state'], r['effective_state'])} · {r['bot'] or '–'}"
    for r in page.rows
}
wanted = ui.query_param("conversation")
if wanted and wanted not in ids:
    if matches(wanted, **{k: v for k, v in filters.items()}):
        ids.insert(0, wanted)  # in the list, on another page (a shared link, Needs attention)
    elif st.session_state.get("cv_pick") == wanted:  # it was open here; new filters left it out
        if st.session_state.get(AUTO_OPENED) != wanted:  # one the user opened: say why it went
            st.info(f"Conversation {ui.md_escape(control.shown_id(wanted))} is not in the list these filters "
                    "give, so it was closed.")  # fmt: skip
        ui.set_query_params(conversation=None)
        wanted = None
    else:  # asked for by a link: never another conversation in its place (one would act on it)
        st.session_state.pop("cv_pick", None)
        shown = ui.md_escape(control.shown_id(wanted))
        held = footprint(wanted)
        if held["known"]:
            st.info(f"Conversation {shown} is not in the list these filters give, so it is not open.")
            st.button(
                "Clear the filters and open it", key="cv_unfilter", on_click=_request_open, args=(wanted,)
            )
        elif held["llm_calls"]:
            st.info(
                f"Conversation {shown} has no messages recorded, so there is no transcript to read or take over: "
                f"the store holds only its {held['llm_calls']:,} LLM {'call' if held['llm_calls'] == 1 else 'calls'}, "
                "recorded with this conversation id."
            )
            ui.page_link("llm_calls", "Its LLM calls", icon=":material/list:", conversation=wanted)
        else:
            st.warning(f"No conversation {shown} in the store: check the id.")
        st.stop()
if not ids:
    st.session_state.pop("cv_pick", None)
    st.caption("Pick a conversation once there are some.")
    st.stop()
if st.session_state.get("cv_pick") not in ids:  # the picker's value through its state only, never
    st.session_state["cv_pick"] = wanted if wanted in ids else ids[0]  # also a default (a warning)
    # the first listed, opened for the user: a search that leaves it out closes it without a word
    st.session_state[AUTO_OPENED] = None if wanted in ids else ids[0]
cid = st.selectbox("Conversation", ids, key="cv_pick", format_func=lambda c: labels.get(c, c))
ui.set_query_params(conversation=cid)

if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH), icon=":material/check_circle:")

try:
    status = control.intervention_status(store, cid)
except control.ConversationNotFound:
    st.warning(f"No conversation {ui.md_escape(cid)} in the store.")
    st.stop()
jump.markdown(
    f"**Open:** {ui.md_escape(cid)} · {fmt.STATE_LABEL.get(status.effective_state, status.effective_state)} · "
    f"[{'its transcript and actions' if can_act else 'its transcript'} ↓](#{VIEW_ANCHOR})"
)


def status_line(s: control.InterventionStatus) -> None:
    if s.state == "human":
        held = f" for {s.held_for_s / 60:.0f} min" if s.held_for_s else ""
        st.warning(
            f"**Held by {ui.md_escape(s.operator)}**{held} (priority {s.priority}): {ui.md_escape(s.reason)}. The AI does not respond.",
            icon=":material/support_agent:",
        )
    elif s.state == "stopped":
        st.error(
            f"**Stopped** by {ui.md_escape(s.operator)}: {ui.md_escape(s.reason)}. Reset it below to hand it back to the AI.",
            icon=":material/block:",
        )
    elif not s.system_stopped:
        resolved = " It is marked **resolved**." if s.resolved else ""  # handed back so, or judged so
        st.success(f"The AI is responding.{resolved}", icon=":material/smart_toy:")
    if s.system_stopped and s.state != "stopped":  # held or not, no bot answers while it holds
        people = ("Its operator can still reply to the user." if s.state == "human"
                  else "An operator can still take it over and reply to the user.")  # fmt: skip
        st.error(
            f"**Stopped** by the system-wide stop: the AI may not respond until an admin resumes. {people}",
            icon=":material/emergency_home:",
        )
    if s.handoff_instructions and s.state == "ai":
        st.caption(f"Hand-back instructions for the AI: {ui.md_escape(s.handoff_instructions)}")


@ui.live(run_every=TRANSCRIPT_REFRESH_S)
def live_transcript() -> None:
    try:
        status_line(control.intervention_status(store, cid))
    except control.ConversationNotFound:
        return
    messages = control.transcript(store, cid, limit=200)
    if not messages:
        ui.empty_state("No messages yet.")
        return
    with st.container(height=420):
        for m in messages:
            with st.chat_message(
                m["role"] if m["role"] != "bot" else "assistant", avatar=ROLE_AVATAR.get(m["role"])
            ):
                who = m["author"] if m["role"] == "operator" else (m["bot"] if m["role"] == "bot" else "user")
                st.caption(f"{ui.md_escape(who or m['role'])} · {m['ts']:%H:%M:%S}")
                st.text(ui.visible_text(m["text"]))


def at_a_glance() -> None:
    """State, holder, account and LLM spend in one line, with the links a user follows from here."""
    o = overview_q(cid)
    if o is None:
        return
    m = st.columns(5)
    state = status.effective_state  # read live, as the banner below: the overview is cached for the TTL
    label = fmt.STATE_LABEL.get(state, state) + (", resolved" if status.resolved and state == "ai" else "")
    m[0].metric("State", label, help="AI answering, held by a person, or stopped; resolved when it was handed "
                "back resolved or its last messages read so")  # fmt: skip
    m[1].metric("Messages", f"{o.messages:,}")
    m[2].metric("LLM calls", f"{o.llm_calls:,}", delta=f"{o.failed_calls} failed" if o.failed_calls else None,
                delta_color="inverse", help="Every LLM call recorded with this conversation id")  # fmt: skip
    m[3].metric("LLM cost", f"${o.cost_usd:,.4f}", help=f"All its calls, {o.tokens:,} tokens in and out")
    m[4].metric("Slowest call", f"{o.p95_hint_ms:,.0f} ms" if o.p95_hint_ms is not None else "–")
    row = st.container(horizontal=True)
    account = o.account_name or o.account_id
    with row:
        if o.account_id:
            ui.page_link("conversations", f"Account {account}{' (VIP)' if o.vip else ''}: all its conversations",
                         icon=":material/account_circle:", q=o.account_id)  # fmt: skip
        if o.llm_calls:
            ui.page_link("llm_calls", "Its LLM calls", icon=":material/list_alt:", conversation=cid)
        if o.bot:
            ui.page_link("bot_health", f"Bot health of {o.bot}", icon=":material/monitor_heart:", bot=o.bot)


KIND_LABEL = {"message": "message", "llm_call": "LLM call", "handoff": "handoff", "intervention": "intervention",
              "emergency": "emergency", "alert": "alert", "activity": "activity"}  # fmt: skip


def timeline_view() -> None:
    items = timeline_q(cid, limit=300)
    if not items:
        ui.empty_state("Nothing recorded for this conversation yet.")
        return
    df = pd.DataFrame(items)
    acted = df["kind"].isin(["intervention", "emergency"])  # what was done, then the reason or summary
    did = df.loc[acted, "ref"].map(fmt.ACTION_LABEL).fillna(df.loc[acted, "ref"])
    df.loc[acted, "text"] = did + df.loc[acted, "text"].map(
        lambda t: f": {t}" if isinstance(t, str) and t else ""
    )
    df["kind"] = df["kind"].map(KIND_LABEL).fillna(df["kind"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    view = df[
        [
            "ts",
            "kind",
            "who",
            "text",
            "model",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "latency_ms",
            "ok",
        ]
    ]
    st.dataframe(
        view, hide_index=True, key="cv_timeline", placeholder="",
        column_config={
            "ts": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "text": st.column_config.TextColumn("what", width="large"),
            "cost_usd": st.column_config.NumberColumn("cost (USD)", format="$%.4f"),
            "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.0f"),
            "input_tokens": st.column_config.NumberColumn("tokens in"),
            "output_tokens": st.column_config.NumberColumn("tokens out"),
            "ok": st.column_config.CheckboxColumn("ok"),
        },
    )  # fmt: skip
    st.caption(f"The newest {len(items)} entries (at most 300): messages, LLM calls, handoffs, interventions, "
               "stops, alerts about its bot while it was live, and activity, by time.")  # fmt: skip


at_a_glance()
# lazy: only the open view is queried and drawn (its name is in the URL, ?view=...)
ui.lazy_tabs({"Transcript": live_transcript, "Everything, on one timeline": timeline_view}, key="view")

if not can_act:
    st.caption("Your role can watch conversations; operators and admins can take them over.")
elif status.state == "ai":
    with st.form("take_over"):
        st.markdown("**Take over from the AI**: every bot stops answering this conversation within a second.")
        c1, c2 = st.columns([3, 1])
        reason = c1.text_input("Reason", value="Operator review", key="to_reason")
        priority = c2.selectbox("Priority", control.PRIORITIES, index=1, key="to_priority")
        c3, c4 = st.columns(2)
        notify = c3.checkbox("Tell the user a person has joined", key="to_notify")
        preserve = c4.checkbox("Keep AI suggestions available", value=True, key="to_preserve")
        if st.form_submit_button("Take over", type="primary", icon=":material/pan_tool:"):
            if _act("Take over", control.take_control, cid, user.name, reason, priority, notify, preserve):
                st.rerun()
elif status.state == "human" and status.operator == user.name:
    st.markdown("**Reply** (the bot delivers it to the user)")
    if st.session_state.pop("cv_reply_sent", False):  # sent: start the next reply empty
        st.session_state["cv_reply"] = ""
    if "cv_draft" in st.session_state:  # a suggestion the operator chose to use
        st.session_state["cv_reply"] = st.session_state.pop("cv_draft")
    with st.form("reply", enter_to_submit=False):
        text = st.text_area("Your reply", key="cv_reply", height=100)
        where = st.container()
        if st.form_submit_button("Send", type="primary", icon=":material/send:"):
            if not text.strip():
                where.error(
                    "The reply is empty: nothing was sent. Type a message first.", icon=":material/error:"
                )
            elif _act("Reply", control.send_operator_message, cid, user.name, text, where=where):
                st.session_state["cv_reply_sent"] = True
                st.rerun()
    if status.preserve_ai_suggestions is not False:
        if st.button("Suggest a reply", icon=":material/lightbulb:", key="cv_suggest"):
            try:
                st.session_state["cv_suggestion"] = control.suggest_response(store, cid, user.name)
            except (auth.PermissionDenied, control.ControlError, ValueError) as exc:
                st.error(f"Suggest: {ui.md_escape(exc)}")
        suggestion = st.session_state.get("cv_suggestion")
        if suggestion is not None:
            st.info(
                ui.md_escape(suggestion.label + "".join(f" {n}" for n in suggestion.notes)),
                icon=":material/lightbulb:",
            )
            if suggestion.text:
                st.text(ui.visible_text(suggestion.text))
                if st.button("Use this draft", key="cv_use"):
                    st.session_state["cv_draft"] = suggestion.text
                    st.session_state.pop("cv_suggestion", None)
                    st.rerun()
    with st.form("release"):
        st.markdown("**Hand back to the AI**")
        summary = st.text_input("Summary of what you did", key="rl_summary")
        instructions = st.text_area(
            "Instructions for the AI (the bot reads them through the SDK)", key="rl_instructions"
        )
        resolved = st.checkbox("Mark the conversation resolved", key="rl_resolved")
        if st.form_submit_button("Return to AI", icon=":material/smart_toy:"):
            if _act(
                "Return to AI",
                control.release_control,
                cid,
                user.name,
                summary,
                instructions or None,
                resolved,
            ):
                st.session_state.pop("cv_suggestion", None)
                st.rerun()
elif status.state == "human":
    st.info(f"{ui.md_escape(status.operator)} holds this conversation; only they can reply.", icon=":material/lock:")  # fmt: skip
    if user.role == auth.ADMIN:
        with st.form("admin_release"):
            summary = st.text_input("Summary", value=f"Released by admin {user.name}", key="ar_summary")
            if st.form_submit_button("Return to AI (admin override)"):
                if _act("Return to AI", control.release_control, cid, user.name, summary):
                    st.rerun()
elif status.state == "stopped":
    st.caption("A stopped conversation is reset (below) before it can be taken over.")

if user.can("conversations.stop"):
    with st.expander("Stop or reset this conversation", expanded=status.state == "stopped"):
        why = st.text_input("Reason (goes into the audit trail)", key="cv_em_reason")
        b1, b2 = st.columns(2)
        with b1:
            stop = ui.danger_button(
                "Stop this conversation",
                "cv_stop",
                icon=":material/block:",
                disabled=status.state == "stopped",
            )
        reset = b2.button(
            "Reset (back to the AI)",
            key="cv_reset",
            icon=":material/restart_alt:",
            disabled=status.state == "ai",
        )
        if stop and _act("Stop", control.stop_conversation, cid, user.name, why):
            st.rerun()
        if reset and _act("Reset", control.reset_conversation, cid, user.name, why):
            st.rerun()

with st.expander("Intervention history (audit trail, read-only)"):
    history = pd.DataFrame(control.intervention_history(store, cid, limit=200))
    if history.empty:
        st.caption("No interventions yet.")
    else:
        cols = ["created_at", "action", "user_name", "outcome", "reason", "priority", "summary",
                "ai_handoff_instructions", "duration_s"]  # fmt: skip
        ui.table(history[cols], f"interventions_{cid}.csv", key="cv_history")
