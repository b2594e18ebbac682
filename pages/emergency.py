"""Emergency controls: stop or reset one conversation (operators), stop or resume every
conversation at once (admins, with a typed confirmation), and the audit trail of all of it.

`observability.control` does the work and checks the user's role itself; every gate honours a
stop within a second.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from observability import auth, control
from observability.settings import get_settings
from observability.ui import common as ui
from observability.ui import fmt

user = ui.require("conversations.stop")
ui.page_header(
    "Emergency controls", "Stop the AI in one conversation or in all of them. Every action is audited."
)
store = ui.get_store()
settings = get_settings()
can_stop_all = user.can("system.stop")
need_phrase = settings.emergency_confirmation_required


def _act(label: str, fn, *args, **kwargs) -> bool:  # noqa: ANN001
    """Run an action; on success its outcome in plain words shows after the rerun; on a refusal
    the reason shows here, beside the form, with what was typed kept."""
    try:
        result = fn(store, *args, **kwargs)
    except (auth.PermissionDenied, control.ControlError, ValueError) as exc:
        st.error(f"{ui.md_escape(label)} was refused: {ui.md_escape(exc)}", icon=":material/error:")
        return False
    st.session_state["em_done"] = ui.md_escape(result.summary())
    return True


if "em_done" in st.session_state:
    st.success(st.session_state.pop("em_done"), icon=":material/check_circle:")

# ---- the system-wide state ------------------------------------------------------------------------

system = control.system_status(store)
if not system["stopped"]:  # while it holds, the page header's red banner says so (on every page)
    st.success("Bots are running: no system-wide stop is in force.", icon=":material/smart_toy:")


DIALOG = "em_dialog"  # which confirmation dialog is open ("stop" | "resume"), across reruns


def _close_dialog() -> None:
    st.session_state.pop(DIALOG, None)


def _confirm(action: str, phrase: str, fn, label: str) -> None:  # noqa: ANN001
    typed = st.text_input(f'Type "{phrase}" to confirm', key=f"em_{action}_phrase") if need_phrase else None
    c1, c2 = st.columns(2)
    key = f"em_{action}_confirm"
    with c1:
        clicked = (
            ui.danger_button(label, key) if action == "stop" else st.button(label, type="primary", key=key)
        )
    if clicked:
        reason = st.session_state.get("em_system_reason", "")
        if _act(label, fn, user.name, reason, typed):
            _close_dialog()
            st.rerun()
    if c2.button("Cancel", key=f"em_{action}_cancel"):
        _close_dialog()
        st.rerun()


@st.dialog("Stop every conversation", on_dismiss=_close_dialog)
def confirm_stop_all() -> None:
    st.warning("Every bot stops answering every conversation within a second, until an admin resumes.")
    _confirm("stop", control.STOP_PHRASE, control.system_wide_stop, "Stop all conversations")


@st.dialog("Resume every conversation", on_dismiss=_close_dialog)
def confirm_resume_all() -> None:
    st.info("Bots answer again, except in conversations that are stopped or held by a person.")
    _confirm("resume", control.RESUME_PHRASE, control.system_resume, "Resume all conversations")


st.subheader("Every conversation")
if not can_stop_all:
    st.info("Only admins can stop or resume every conversation at once.", icon=":material/lock:")
else:
    reason = st.text_input("Reason", key="em_system_reason", placeholder="e.g. the bots give wrong prices")
    c1, c2 = st.columns(2)
    with c1:
        stop_all = ui.danger_button("Stop ALL conversations", "em_stop_all", icon=":material/emergency_home:",
                                    disabled=bool(system["stopped"]))  # fmt: skip
    if stop_all:
        if not reason.strip():
            st.error("Give a reason first: it goes into the audit trail.")
        else:
            st.session_state[DIALOG] = "stop"
    if c2.button("Resume all conversations", icon=":material/play_arrow:", key="em_resume_all",
                 disabled=not system["stopped"]):  # fmt: skip
        st.session_state[DIALOG] = "resume"
    if st.session_state.get(DIALOG) == "stop":
        confirm_stop_all()
    elif st.session_state.get(DIALOG) == "resume":
        confirm_resume_all()
    st.caption(
        (f'Confirmation: type "{control.STOP_PHRASE}" / "{control.RESUME_PHRASE}". ' if need_phrase else "")
        + "A stop is never rate-limited; resuming is limited to "
        + f"{settings.emergency_rate_limit_per_min} system-wide actions per minute per admin."
    )

# ---- one conversation ---------------------------------------------------------------------------

st.subheader("One conversation")
with st.form("em_one", enter_to_submit=False):
    c1, c2 = st.columns([2, 3])
    cid = c1.text_input("Conversation id", key="em_cid", value=ui.query_param("conversation") or "")
    why = c2.text_input("Reason", key="em_reason")
    b1, b2 = st.columns(2)
    stop = b1.form_submit_button("Stop conversation", type="primary", icon=":material/block:")
    reset = b2.form_submit_button("Reset conversation (back to the AI)", icon=":material/restart_alt:")
    if stop and _act(
        f"Stop {control.shown_id(cid.strip())}", control.stop_conversation, cid.strip(), user.name, why
    ):
        st.rerun()
    if reset and _act(
        f"Reset {control.shown_id(cid.strip())}", control.reset_conversation, cid.strip(), user.name, why
    ):
        st.rerun()
st.caption(
    "Stop: no bot may answer in it (an operator's take-over ends). Reset: back to the AI with a clean "
    "control state. Only a conversation the store knows can be stopped: an unknown id is refused."
)

closed = pd.DataFrame(control.list_conversations(store, states=("stopped", "human"), limit=500))
if system["stopped"]:  # every conversation reads "stopped" meanwhile; this list is what a resume leaves
    st.caption("The system-wide stop holds: every conversation is stopped. Listed below: the conversations "
               "stopped or held one by one, which stay so after a resume.")  # fmt: skip
if closed.empty:
    st.caption("No conversation is stopped or held by a person one by one." if system["stopped"]
               else "No conversation is stopped or held by a person.")  # fmt: skip
else:
    closed = closed[
        [
            "id",
            "state",
            "operator",
            "bot",
            "account_id",
            "control_priority",
            "control_since",
            "last_activity_at",
        ]
    ]
    closed = closed.assign(state=fmt.state_words(closed["state"]))
    ui.table(closed, "closed_conversations.csv", key="em_closed",
             column_config={"id": fmt.text_column("Conversation"), "state": fmt.text_column("State"),
                            "operator": fmt.text_column("By / held by"), "bot": fmt.text_column("Bot"),
                            "account_id": fmt.text_column("Account"), "control_priority": fmt.text_column("Priority"),
                            "control_since": fmt.time_column("Since (UTC)"),
                            "last_activity_at": fmt.time_column("Last activity (UTC)")})  # fmt: skip

# ---- the audit trail ------------------------------------------------------------------------------

st.subheader("Emergency actions (audit trail, read-only)")
history = pd.DataFrame(control.emergency_history(store, limit=500))
if history.empty:
    ui.empty_state("No emergency action yet.")
else:
    ui.table(
        history[["created_at", "action", "scope", "conversation_id", "user_name", "reason", "confirmed", "outcome"]],
        "emergency_actions.csv", key="em_history",
    )  # fmt: skip
