"""The control pages under Streamlit's AppTest: navigation by role (an analyst never sees the
emergency page), the take-over flow on the Conversations page, the Emergency page's typed
confirmation, and the Admin page's user management that never shows a secret."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from streamlit.testing.v1 import AppTest
from support.markdown import shown

from observability import auth, control
from observability import events as ev
from observability.analytics import monitoring
from observability.settings import reset_settings_cache
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import utcnow
from observability.ui import common, fmt

ROOT = Path(__file__).resolve().parent.parent
PW = "a-long-password"
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-PageS3cret",
    "ALERT_EMAIL_SMTP_HOST": "smtp.example.com",
    "ALERT_EMAIL_SMTP_PASSWORD": "smtp-PageS3cret",
    "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/PageS3cretToken",
    "ALERT_WEBHOOK_URL": "https://bob:PageS3cretPw@hooks.example.net/in?token=PageS3cretQ",
}


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store with a user of every role and one conversation; the console in password mode."""
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.delenv("REDIS_URL", raising=False)
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    reset_settings_cache()
    common.clear_caches()
    store = Store.from_url(url)
    store.migrate()
    for role in auth.ROLES:
        auth.create_user(store, role, role, PW)  # a user named after each role
    now = time.time()
    write_batch(
        store,
        [
            ev.message(
                uuid.uuid4().hex,
                now - 5,
                conversation_id="c1",
                role="user",
                text="Hi, reach me on +44 20 7946 0958",
                bot="lead",
                account_id=None,
            ),
            ev.message(
                uuid.uuid4().hex,
                now - 4,
                conversation_id="c1",
                role="bot",
                text="Hello! How can I help?",
                bot="lead",
                account_id=None,
            ),
        ],
    )
    yield store
    store.dispose()
    reset_settings_cache()
    common.clear_caches()


def _app(path: str, role: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=60)
    if role:
        at.session_state["user"] = auth.User(role, role)
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at: AppTest) -> str:
    parts = [
        shown(e.value)
        for e in (
            *at.info,
            *at.error,
            *at.warning,
            *at.success,
            *at.caption,
            *at.markdown,
            *at.title,
            *at.text,
            *at.code,
        )
    ]
    return "\n".join(str(p) for p in parts)


def _button(at: AppTest, label: str):  # noqa: ANN202 - streamlit's Button
    return next(b for b in at.button if b.label == label)


# ---- navigation by role ---------------------------------------------------------------------------


def test_an_analyst_does_not_see_the_emergency_page_in_navigation(console: Store) -> None:
    """The analyst's navigation holds what the role may open; Emergency controls and Admin, asked
    for by their URLs, say the role may not open them (the browser test checks both in Chromium:
    the sidebar and the message)."""
    at = _app("Home.py", auth.ANALYST)  # the router builds st.navigation from the signed-in role
    at.switch_page("pages/conversations.py")  # in the analyst's navigation (raises otherwise)
    for page in ("pages/emergency.py", "pages/admin.py"):
        direct = _app(page, auth.ANALYST)
        assert any("permission to open this page" in e.value for e in direct.error) and not direct.button


@pytest.mark.parametrize(
    ("role", "emergency", "admin"),
    [("operator", True, False), ("manager", False, False), ("admin", True, True)],
)
def test_navigation_lists_the_control_pages_by_role(
    console: Store, role: str, emergency: bool, admin: bool
) -> None:
    at = _app("Home.py", role)
    for page, visible in (("pages/emergency.py", emergency), ("pages/admin.py", admin)):
        if visible:
            at.switch_page(page)  # in this role's navigation (raises otherwise)
        else:
            direct = _app(page, role)
            assert any("permission to open this page" in e.value for e in direct.error), (role, page)


@pytest.mark.parametrize(
    ("page", "role"),
    [("pages/emergency.py", "analyst"), ("pages/emergency.py", "manager"), ("pages/admin.py", "operator")],
)
def test_a_control_page_opened_directly_refuses_a_role_without_the_permission(
    console: Store, page: str, role: str
) -> None:
    at = _app(page, role)
    assert any("permission to open this page" in e.value and f"role ({role})" in e.value for e in at.error)
    assert not at.button


# ---- conversations ---------------------------------------------------------------------------------


def test_an_analyst_watches_the_transcript_but_cannot_act(console: Store) -> None:
    at = _app("pages/conversations.py", auth.ANALYST)
    text = _text(at)
    assert "Hello! How can I help?" in text and "Hi, reach me on [phone redacted]" in text
    assert "+44 20" not in text
    assert not [b for b in at.button if b.label in ("Take over", "Send", "Return to AI")]


def test_an_operator_takes_over_replies_gets_a_suggestion_and_hands_back(console: Store) -> None:
    at = _app("pages/conversations.py", auth.OPERATOR)
    labels = {b.label for b in at.button}
    assert "Take over" in labels and not labels & {"Send", "Return to AI", "Suggest a reply"}
    at.text_input(key="to_reason").set_value("customer asked for a person")
    _button(at, "Take over").click().run()
    assert not at.exception
    status = control.intervention_status(console, "c1")
    assert (status.state, status.operator, status.reason) == (
        "human",
        "operator",
        "customer asked for a person",
    )

    at.text_area(key="cv_reply").set_value("Hi, I'm a person. Mail me: ops@example.com")
    _button(at, "Send").click().run()
    assert not at.exception
    assert control.transcript(console, "c1")[-1]["text"] == "Hi, I'm a person. Mail me: [email redacted]"
    assert "Hi, I'm a person." in _text(at)  # the live transcript shows it

    _button(at, "Suggest a reply").click().run()
    assert not at.exception and "No resolved conversations" in _text(at)

    at.text_input(key="rl_summary").set_value("answered")
    at.text_area(key="rl_instructions").set_value("Offer a viewing")
    _button(at, "Return to AI").click().run()
    assert not at.exception
    status = control.intervention_status(console, "c1")
    assert (status.state, status.handoff_instructions) == ("ai", "Offer a viewing")
    assert [r["action"] for r in control.intervention_history(console, "c1")] == [
        "release_control",
        "reply",
        "take_control",
    ]


def test_conversation_forms_say_what_happened_and_keep_what_was_typed(console: Store) -> None:
    at = _app("pages/conversations.py", auth.OPERATOR)
    at.text_input(key="to_reason").set_value("   ")
    _button(at, "Take over").click().run()
    assert any("Take over was refused" in shown(e.value) and "reason" in shown(e.value) for e in at.error)
    assert control.intervention_status(console, "c1").state == "ai"
    at.text_input(key="to_reason").set_value("customer asked for a person")
    _button(at, "Take over").click().run()
    assert any("You hold conversation c1 now" in shown(m.value) for m in at.success)

    _button(at, "Send").click().run()  # nothing typed
    assert any("The reply is empty: nothing was sent" in shown(e.value) for e in at.error)
    huge = "a long reply " * 6000  # 78 kB, over the 64 kB limit
    at.text_area(key="cv_reply").set_value(huge)
    _button(at, "Send").click().run()
    assert not at.exception
    assert any("Reply was refused" in shown(e.value) for e in at.error)
    assert at.text_area(key="cv_reply").value == huge, "the typed text survives the error"
    assert [m["role"] for m in control.transcript(console, "c1")] == ["user", "bot"]

    at.text_area(key="cv_reply").set_value("A short answer")
    _button(at, "Send").click().run()
    assert any("Reply sent: the bot delivers it to the user." in shown(m.value) for m in at.success)
    assert at.text_area(key="cv_reply").value == "", "after sending, the box is ready for the next reply"
    assert control.transcript(console, "c1")[-1]["text"] == "A short answer"


def test_the_conversation_view_shows_state_calls_and_one_timeline(console: Store) -> None:
    write_batch(console, [ev.llm_call(
        uuid.uuid4().hex, time.time() - 3, bot="lead", agent="qualifier", decision_type="reply",
        model="claude-sonnet-4", provider="anthropic", input_tokens=900, output_tokens=100, cache_read_tokens=0,
        cache_write_tokens=0, latency_ms=1234.0, cache_hit=False, cost_usd=0.0456, conversation_id="c1",
        success=True, error_type=None)])  # fmt: skip
    control.take_control(console, "c1", "operator", "looks odd")
    at = _app("pages/conversations.py", auth.OPERATOR)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["State"] == "human" and metrics["LLM calls"] == "1" and metrics["LLM cost"] == "$0.0456"
    assert metrics["Slowest call"] == "1,234 ms"
    assert not [d for d in at.dataframe if "kind" in d.value.columns], (
        "the timeline is drawn when its tab opens"
    )
    at.query_params["view"] = "Everything, on one timeline"
    at.run()
    [timeline] = [d.value for d in at.dataframe if "kind" in d.value.columns]
    assert list(timeline["kind"]) == ["message", "message", "LLM call", "intervention"]
    call = timeline[timeline["kind"] == "LLM call"].iloc[0]
    assert (call["model"], call["input_tokens"], call["latency_ms"]) == ("claude-sonnet-4", 900, 1234.0)
    assert "(./llm_calls?conversation=c1)" in _text(at)
    took = timeline[timeline["kind"] == "intervention"].iloc[0]
    assert (took["who"], took["text"]) == ("operator", "took over: looks odd"), "what was done, then why"


def test_a_conversation_handed_back_resolved_says_so_at_a_glance_and_on_its_timeline(console: Store) -> None:
    control.take_control(console, "c1", "operator", "looks odd")
    control.release_control(console, "c1", "operator", "answered the question", mark_resolved=True)
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert {m.label: m.value for m in at.metric}["State"] == "AI, resolved"
    assert any("The AI is responding. It is marked **resolved**." in m.value for m in at.success)
    at.query_params["view"] = "Everything, on one timeline"
    at.run()
    [timeline] = [d.value for d in at.dataframe if "kind" in d.value.columns]
    assert list(timeline.loc[timeline["kind"] == "intervention", "text"]) == [
        "took over: looks odd", "handed back to the AI, resolved: answered the question"]  # fmt: skip


def test_during_a_system_stop_the_view_says_stopped_and_that_an_operator_may_still_take_over(
    console: Store,
) -> None:
    """The service lets a person take over while every bot is stopped (the people answer instead):
    the view says so beside the form, rather than "Stopped" above a form that seems not to apply."""
    control.system_wide_stop(console, "admin", "drill", control.STOP_PHRASE)
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert {m.label: m.value for m in at.metric}["State"] == "stopped"
    [banner] = [e.value for e in at.error if "An operator can still take it over" in e.value]
    assert "system-wide stop" in banner and not [s for s in at.success if "AI is responding" in s.value]
    _button(at, "Take over").click().run()
    assert control.intervention_status(console, "c1").state == "human"
    assert any("Its operator can still reply to the user." in e.value for e in at.error)


def test_a_conversation_held_by_someone_else_offers_no_reply(console: Store) -> None:
    control.take_control(console, "c1", "admin", "admin looks")
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert "admin holds this conversation" in _text(at)
    assert not [b for b in at.button if b.label in ("Take over", "Send")]


def _asks_for_a_person(store: Store, cid: str = "c2") -> None:
    text = "This is not helping, can I talk to a real person?"
    write_batch(store, [ev.message(uuid.uuid4().hex, time.time() - 60, conversation_id=cid, role="user",
                                   text=text, bot="buyer", account_id=None)])  # fmt: skip


def test_overview_ranks_the_conversation_in_trouble_and_one_click_opens_it(console: Store) -> None:
    _asks_for_a_person(console)
    at = _app("Home.py", auth.OPERATOR)
    assert any("Needs attention" in h.value for h in at.subheader)
    rows = [m.value for m in at.markdown if "the user asked for a person" in m.value]
    assert len(rows) == 1 and "c2" in rows[0] and "buyer" in rows[0]  # c1 is calm: not listed
    next(b for b in at.button if b.key == "ov_attention_c2").click().run()
    assert not at.exception
    assert at.query_params["conversation"] == "c2"
    assert at.selectbox(key="cv_pick").value == "c2"  # the Conversations page, with c2 open
    assert "This is not helping" in _text(at)
    assert _button(at, "Take over")  # its take-over control: two clicks from Overview


def test_needs_attention_tops_the_conversations_page_and_opens_the_row(console: Store) -> None:
    _asks_for_a_person(console)
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert at.selectbox(key="cv_pick").value == "c1"
    next(b for b in at.button if b.key == "cv_attention_c2").click().run()
    assert not at.exception and at.selectbox(key="cv_pick").value == "c2"
    assert at.query_params["conversation"] == "c2"


def test_needs_attention_says_its_rows_are_stopped_during_a_system_wide_stop(console: Store) -> None:
    """The ranking stays during a system-wide stop (where to look first when the bots resume), but
    says the rows are stopped, beside a list reading "stopped" and no active conversation."""
    _asks_for_a_person(console)
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert not any("system-wide stop holds" in c.value for c in at.caption)
    assert any(m.value.startswith("**trouble ") for m in at.markdown)  # the score says what it is
    control.system_wide_stop(console, "admin", "bots quote wrong prices", control.STOP_PHRASE)
    common.clear_caches()
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert any("system-wide stop holds: these conversations are stopped too" in c.value for c in at.caption)


def test_the_list_pages_through_every_conversation_with_true_counts(console: Store) -> None:
    base = time.time() - 600
    write_batch(console, [ev.message(uuid.uuid4().hex, base + i, conversation_id=f"m{i:02d}", role="user",
                                     text="hi", bot="lead", account_id=None) for i in range(60)])  # fmt: skip
    at = _app("pages/conversations.py", auth.ANALYST)
    assert [m.value for m in at.metric if m.label == "Conversations"] == ["61"]  # a count, not a cap
    assert len(at.dataframe[0].value) == 50 and at.dataframe[0].value["conversation"].iloc[0] == "c1"
    _button(at, "Next page").click().run()
    assert not at.exception
    shown = list(at.dataframe[0].value["conversation"])
    assert shown == [f"m{i:02d}" for i in range(10, -1, -1)] and "Rows 51–61 of 61" in _text(at)
    picker = [o.split(" · ")[0] for o in at.selectbox(key="cv_pick").options]
    assert picker == ["c1", *shown]  # the list's rows, and the open one (still in the list, page 1)
    at.text_input(key="q").set_value("m0").run()  # new filters: first page again
    assert [m.value for m in at.metric if m.label == "Conversations"] == ["10"]


def test_a_search_that_excludes_the_open_conversation_closes_it(console: Store) -> None:
    _asks_for_a_person(console)
    at = _app("pages/conversations.py", auth.OPERATOR)
    assert at.selectbox(key="cv_pick").value == "c1"
    at.text_input(key="q").set_value("c2").run()
    assert not at.exception
    assert [o.split(" · ")[0] for o in at.selectbox(key="cv_pick").options] == ["c2"]
    assert at.selectbox(key="cv_pick").value == "c2"
    assert "Hi, reach me on" not in _text(at)  # c1's transcript and take-over form are gone
    # c1 was opened by the page, not the user: no note about closing it
    assert "was closed" not in _text(at)


def test_conversation_filters_in_a_link_are_plain_values(console: Store) -> None:
    """A URL-bound widget writes the option it shows, so the filters show their plain values: the link
    holds ?state=stopped&vip=not+VIP, never an emoji label, and such a link filters the list."""
    _asks_for_a_person(console)
    control.stop_conversation(console, "c2", "admin", "abusive")
    at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", auth.OPERATOR)
    at.query_params["state"] = "stopped"
    at.query_params["vip"] = "not VIP"
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="state").options == ["AI", "human", "stopped"]
    assert at.multiselect(key="state").value == ["stopped"]
    assert [o.content for o in at.get("button_group")[0].proto.options] == ["VIP", "not VIP"]
    [table] = [d.value for d in at.dataframe if "conversation" in d.value.columns]
    assert list(table["conversation"]) == ["c2"]


def test_a_link_opens_the_activity_feed_on_its_vip_view(console: Store) -> None:
    at = AppTest.from_file(str(ROOT / "pages/activity_feed.py"), default_timeout=60)
    at.session_state["user"] = auth.User("analyst", auth.ANALYST)
    at.query_params["tab"] = "VIP view"
    at.run()
    assert not at.exception, at.exception
    shown_text = _text(at)
    assert "VIP conversations" in shown_text and "Matching events" not in [m.label for m in at.metric]
    at = _app("pages/activity_feed.py", auth.ANALYST)  # no tab in the link: the feed
    assert "Matching events" in [m.label for m in at.metric] and "VIP conversations" not in _text(at)


def test_the_state_label_follows_a_take_over_and_stop_and_reset_are_on_the_view(console: Store) -> None:
    """The picker's label and the State figure beside the banner change with each action at once,
    not when the page's cached overview of the conversation expires."""

    def state(at: AppTest) -> str:
        return next(m.value for m in at.metric if m.label == "State")

    at = _app("pages/conversations.py", auth.OPERATOR)
    assert "AI" in at.selectbox(key="cv_pick").format_func("c1") and state(at) == "AI"
    # at the top of the page: the open conversation, its state and a jump to its view and actions
    assert "**Open:** c1 · AI · [its transcript and actions ↓](#one-conversation)" in [
        m.value for m in at.markdown
    ]
    at.text_input(key="to_reason").set_value("looks odd")
    _button(at, "Take over").click().run()
    assert "human" in at.selectbox(key="cv_pick").format_func("c1") and state(at) == "human"
    at.text_input(key="cv_em_reason").set_value("abusive")
    _button(at, "Stop this conversation").click().run()
    assert not at.exception and control.intervention_status(console, "c1").state == "stopped"
    assert "stopped" in at.selectbox(key="cv_pick").format_func("c1") and state(at) == "stopped"
    at.text_input(key="cv_em_reason").set_value("checked")
    _button(at, "Reset (back to the AI)").click().run()
    assert control.intervention_status(console, "c1").state == "ai"
    assert state(at) == "AI"
    assert "**Open:** c1 · AI · [its transcript and actions ↓](#one-conversation)" in [
        m.value for m in at.markdown
    ]
    assert [r["action"] for r in control.emergency_history(console)] == ["reset", "stop"]


# ---- emergency ------------------------------------------------------------------------------------


def test_an_operator_stops_and_resets_one_conversation_but_cannot_stop_all(console: Store) -> None:
    at = _app("pages/emergency.py", auth.OPERATOR)
    assert "Only admins can stop or resume every conversation" in _text(at)
    assert not [b for b in at.button if b.label == "Stop ALL conversations"]
    at.text_input(key="em_cid").set_value("c1")
    at.text_input(key="em_reason").set_value("abusive")
    _button(at, "Stop conversation").click().run()
    assert not at.exception and control.intervention_status(console, "c1").state == "stopped"
    assert "Conversation c1 is stopped: no bot may answer in it until it is reset." in _text(at)
    # the stopped list speaks as the other tables do: words for headers and states, UTC times
    [closed] = [d for d in at.dataframe if "control_priority" in d.value.columns]
    labels = {k: v.get("label") for k, v in json.loads(closed.proto.columns).items()}
    assert labels["account_id"] == "Account" and labels["control_since"] == "Since (UTC)", labels
    assert list(closed.value["state"]) == ["stopped"]
    at.text_input(key="em_cid").set_value("c1")
    at.text_input(key="em_reason").set_value("checked")
    _button(at, "Reset conversation (back to the AI)").click().run()
    assert control.intervention_status(console, "c1").state == "ai"
    assert [r["action"] for r in control.emergency_history(console)] == ["reset", "stop"]

    at.text_input(key="em_cid").set_value("<b>x</b>😀")  # a typo: refused, nothing created
    at.text_input(key="em_reason").set_value("abusive")
    _button(at, "Stop conversation").click().run()
    assert not at.exception
    assert any("no conversation '<b>x</b>😀' in the store" in shown(e.value) for e in at.error)
    assert [r["id"] for r in control.list_conversations(console)] == ["c1"]
    assert len(control.emergency_history(console)) == 2
    at.text_input(key="em_cid").set_value("c" * 5000)  # a paste gone wrong: quoted by its start and length
    _button(at, "Stop conversation").click().run()
    [refusal] = [shown(e.value) for e in at.error]
    assert "(5,000 characters)" in refusal and len(refusal) < 400, refusal
    assert [r["id"] for r in control.list_conversations(console)] == ["c1"]


def test_stop_all_is_a_red_danger_button_never_refused_for_frequency(console: Store) -> None:
    at = _app("pages/emergency.py", auth.ADMIN)
    stop_all = _button(at, "Stop ALL conversations")
    assert stop_all.proto.type == "primary"
    styles = [str(e.proto) for e in at.get("html")]
    assert any("st-key-em_stop_all" in css and "background-color:#c62828" in css for css in styles)
    assert "A stop is never rate-limited" in _text(at)


@pytest.mark.parametrize(
    "page",
    ["Home.py", "pages/alerts.py", "pages/activity_feed.py", "pages/conversations.py", "pages/emergency.py"],
)
def test_a_system_wide_stop_shows_on_every_page_and_every_conversation_reads_stopped(
    console: Store, page: str
) -> None:
    control.system_wide_stop(console, "admin", "bots quote wrong prices", control.STOP_PHRASE)
    at = _app(page, auth.OPERATOR)
    banner = [e.value for e in at.error if "Every conversation is stopped" in e.value]
    assert len(banner) == 1 and "bots quote wrong prices" in banner[0] and "admin" in banner[0]
    if page == "pages/conversations.py":
        assert list(at.dataframe[0].value["state"]) == ["stopped"]
        assert [m.value for m in at.metric if m.label == "Stopped"] == ["1"]
        assert "**Stopped** by the system-wide stop" in _text(at)
    if page == "pages/emergency.py":  # its list of closed conversations does not contradict the banner
        assert "The system-wide stop holds: every conversation is stopped." in _text(at)
        assert "No conversation is stopped or held by a person." not in _text(at)
    control.system_resume(console, "admin", "fixed", control.RESUME_PHRASE)
    at.run()
    assert not [e for e in at.error if "Every conversation is stopped" in e.value]


def test_system_wide_stop_asks_for_the_typed_phrase_in_a_dialog(console: Store) -> None:
    at = _app("pages/emergency.py", auth.ADMIN)
    at.text_input(key="em_system_reason").set_value("bots quote wrong prices")
    _button(at, "Stop ALL conversations").click().run()
    assert 'Type "STOP ALL" to confirm' in [t.label for t in at.text_input]
    at.text_input(key="em_stop_phrase").set_value("stop all")  # wrong: nothing happens
    _button(at, "Stop all conversations").click().run()
    assert not at.exception and control.system_status(console)["stopped"] is False
    assert 'type "STOP ALL" to confirm' in _text(at)
    at.text_input(key="em_stop_phrase").set_value("STOP ALL")
    _button(at, "Stop all conversations").click().run()
    assert not at.exception
    system = control.system_status(console)
    assert (system["stopped"], system["by"], system["reason"]) == (True, "admin", "bots quote wrong prices")
    assert "Every conversation is stopped" in _text(at)

    _button(at, "Resume all conversations").click().run()
    at.text_input(key="em_resume_phrase").set_value("RESUME ALL")
    next(
        b for b in at.button if b.label == "Resume all conversations" and b.key == "em_resume_confirm"
    ).click().run()
    assert not at.exception and control.system_status(console)["stopped"] is False
    assert [r["action"] for r in control.emergency_history(console)] == ["system_resume", "system_stop"]


# ---- admin ----------------------------------------------------------------------------------------


def test_admin_page_shows_channel_status_without_any_secret(console: Store) -> None:
    at = _app("pages/admin.py", auth.ADMIN)
    shown = _text(at) + "".join(df.value.to_csv() for df in at.dataframe)
    assert "hooks.slack.com" in shown and "hooks.example.net" in shown and "configured" in shown
    assert "S3cret" not in shown and "bob" not in shown


def test_admin_adds_a_user_changes_the_role_and_resets_the_password_once(console: Store) -> None:
    at = _app("pages/admin.py", auth.ADMIN)
    at.text_input(key="ad_new_name").set_value("Nina")  # names are stored in lower case
    at.selectbox(key="ad_new_role").set_value("operator")
    at.text_input(key="ad_new_pw1").set_value("nina-password-1")
    at.text_input(key="ad_new_pw2").set_value("nina-password-2")
    _button(at, "Add user").click().run()
    # refused: said beside the form, and what was typed is kept to be corrected (it was all cleared)
    assert [shown(e.value) for e in at.error] == ["The passwords do not match."]
    assert auth.get_user(console, "nina") is None
    assert (at.text_input(key="ad_new_name").value, at.selectbox(key="ad_new_role").value) == (
        "Nina",
        "operator",
    )
    at.text_input(key="ad_new_pw2").set_value("nina-password-1")
    _button(at, "Add user").click().run()
    assert not at.exception and auth.get_user(console, "nina") == auth.User("nina", "operator")
    assert at.text_input(key="ad_new_name").value == "", "added: the form starts empty again"
    # the success names the user as stored (it said "Add Nina: done", a name that does not exist)
    assert [shown(m.value) for m in at.success] == ["Added user nina as operator; they can sign in now."]

    at.selectbox(key="ad_target").set_value("nina")
    at.run()
    at.selectbox(key="ad_role").set_value("analyst")
    _button(at, "Change role").click().run()
    assert auth.get_user(console, "nina").role == "analyst"

    _button(at, "Reset password").click().run()
    assert not at.exception
    new_password = at.code[0].value
    assert auth.authenticate(console, "nina", new_password).name == "nina"
    at.run()  # shown once only
    assert not at.code

    at.selectbox(key="ad_target").set_value("admin")
    at.run()
    assert _button(at, "Disable").disabled  # nobody disables themselves from the page


# ---- links ----------------------------------------------------------------------------------------


def test_each_overview_figure_links_to_its_page_with_its_filters(console: Store) -> None:
    at = _app("Home.py", auth.OPERATOR)
    links = {p.proto.label: (p.proto.page, dict(p.proto.query_string and [kv.split("=") for kv in p.proto.query_string.split("&")] or []))
             for p in at.get("page_link")}  # fmt: skip
    assert links["Failed calls"][0].endswith("llm_calls")
    # the 5-minute figures open the calls of those 5 minutes (the error rate's link opened the last hour)
    failed = links["Failed calls"][1]
    assert failed.keys() == {"from", "status"} and failed["status"] == "error"
    since = datetime.fromisoformat(unquote(failed["from"]))
    assert abs((utcnow() - since).total_seconds() - 300) < 30
    assert links["LLM calls"][1] == {"from": failed["from"]}
    assert links["Slowest calls"][1] == {"range": "1h", "sort": "slowest"}
    assert links["Conversations"] == (links["Conversations"][0], {"active": "1"})  # as its figure counts
    assert links["Conversations"][0].endswith("conversations") and links["Alerts"][0].endswith("alerts")


def test_overviews_active_conversations_are_the_lists_active_filter_also_during_a_system_stop(
    console: Store,
) -> None:
    """Overview's figure and the list its link opens count the same conversations: activity in the
    last 15 minutes and not stopped (none while the system-wide stop holds)."""
    now = time.time()
    write_batch(console, [ev.message(uuid.uuid4().hex, t, conversation_id=cid, role="user", text="hi", bot="seller",
                                     account_id=None)
                          for cid, t in (("recent", now - 60), ("old", now - 3600), ("also_recent", now - 30))])  # fmt: skip
    control.stop_conversation(console, "also_recent", "operator", "abusive")  # stopped: not active

    def listed() -> tuple[set[str], str]:
        common.clear_caches()
        at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
        at.session_state["user"] = auth.User("operator", auth.OPERATOR)
        at.query_params["active"] = "1"
        at.run()
        assert not at.exception, at.exception
        assert at.toggle(key="cv_active").value is True
        total = next(m.value for m in at.metric if m.label == "Conversations")
        rows = {r for d in at.dataframe if "conversation" in d.value.columns for r in d.value["conversation"]}
        return rows, total

    rows, total = listed()
    assert "recent" in rows and not {"old", "also_recent"} & rows
    assert total == f"{monitoring.active_conversation_count(console):,}" == f"{len(rows):,}"
    control.system_wide_stop(console, "admin", "bots quote wrong prices", control.STOP_PHRASE)
    assert monitoring.active_conversation_count(console) == 0
    assert listed() == (set(), "0")


def test_cost_tracking_shows_overviews_spend_today(console: Store) -> None:
    overview = {m.label: m.value for m in _app("Home.py", auth.OPERATOR).metric}
    cost = {m.label: m.value for m in _app("pages/cost_tracking.py", auth.OPERATOR).metric}
    label = fmt.label("spend_today_usd")
    assert cost[label] == overview[label]


def test_a_link_filters_conversations_by_bot(console: Store) -> None:
    write_batch(console, [ev.message(uuid.uuid4().hex, time.time(), conversation_id="c9", role="user", text="hi",
                                     bot="seller", account_id=None)])  # fmt: skip
    at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", auth.OPERATOR)
    at.query_params["bot"] = "seller"
    at.run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "conversation" in d.value.columns]
    assert list(table["conversation"]) == ["c9"]


def test_the_page_of_the_list_is_in_the_url_so_a_shared_link_shows_the_same_rows(console: Store) -> None:
    base = time.time() - 600
    write_batch(console, [ev.message(uuid.uuid4().hex, base + i, conversation_id=f"m{i:02d}", role="user",
                                     text="hi", bot="lead", account_id=None) for i in range(60)])  # fmt: skip
    at = _app("pages/conversations.py", auth.ANALYST)
    _button(at, "Next page").click().run()
    second = list(at.dataframe[0].value["conversation"])
    assert at.query_params["page"] in ("2", ["2"]) and at.query_params["after"]
    shared = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    shared.session_state["user"] = auth.User("analyst", auth.ANALYST)
    for k in ("after", "page"):
        shared.query_params[k] = at.query_params[k]
    shared.run()
    assert not shared.exception, shared.exception
    assert list(shared.dataframe[0].value["conversation"]) == second
    assert "Rows 51–61 of 61" in _text(shared)
    _button(shared, "First page").click().run()
    assert "after" not in shared.query_params and "Rows 1–50 of 61" in _text(shared)


def test_a_bad_page_link_shows_the_first_page_of_the_list(console: Store) -> None:
    at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    at.session_state["user"] = auth.User("analyst", auth.ANALYST)
    at.query_params["after"] = "not-a-cursor"
    at.query_params["page"] = "7"
    at.run()
    assert not at.exception, at.exception
    assert any("not valid" in w.value for w in at.warning) and "Rows 1–1 of 1" in _text(at)
    assert "after" not in at.query_params and "page" not in at.query_params


def test_an_old_link_with_emoji_filter_labels_still_filters_the_list(console: Store) -> None:
    _asks_for_a_person(console)
    control.stop_conversation(console, "c2", "admin", "abusive")
    at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", auth.OPERATOR)
    at.query_params["state"] = "⛔ stopped"
    at.query_params["vip"] = "Not VIP"
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="state").value == ["stopped"]
    assert "⛔ stopped" not in str(at.query_params) and "Not VIP" not in str(at.query_params)  # no emoji left
    [table] = [d.value for d in at.dataframe if "conversation" in d.value.columns]
    assert list(table["conversation"]) == ["c2"]


def _opened(at: AppTest) -> list[str]:
    """The conversation the view holds (its picker), if any."""
    return [s.value for s in at.selectbox if s.label == "Conversation"]


def test_a_link_to_a_conversation_that_is_not_listed_never_opens_another_one(console: Store) -> None:
    """An LLM call recorded with only a conversation id links here: the page says what the store
    holds of it and opens nothing else (it opened the newest other conversation, with its Take
    over form, and rewrote the URL to it)."""
    write_batch(console, [ev.llm_call(
        uuid.uuid4().hex, time.time() - 3, bot="lead", agent="qualifier", decision_type="reply",
        model="claude-sonnet-4", provider="anthropic", input_tokens=900, output_tokens=100, cache_read_tokens=0,
        cache_write_tokens=0, latency_ms=1234.0, cache_hit=False, cost_usd=0.0456, conversation_id="calls-only",
        success=True, error_type=None)])  # fmt: skip
    for wanted, says in (
        (
            "calls-only",
            "has no messages recorded, so there is no transcript to read or take over: the store "
            "holds only its 1 LLM call, ",
        ),
        ("no-such-id", "No conversation 'no-such-id' in the store: check the id"),
    ):
        at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
        at.session_state["user"] = auth.User("operator", auth.OPERATOR)
        at.query_params["conversation"] = wanted
        at.run()
        assert not at.exception, at.exception
        assert says in _text(at)
        assert _opened(at) == [] and not [b for b in at.button if b.label.startswith("Take over")]
        assert at.query_params["conversation"] in (wanted, [wanted])  # the link still says what was asked


def test_a_conversation_filtered_out_of_the_list_opens_once_the_filters_are_cleared(console: Store) -> None:
    at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", auth.OPERATOR)
    at.query_params["conversation"] = "c1"
    at.query_params["bot"] = "seller"  # c1 is the lead bot's
    at.run()
    assert not at.exception, at.exception
    assert "Conversation 'c1' is not in the list these filters give, so it is not open" in _text(at)
    assert _opened(at) == []
    _button(at, "Clear the filters and open it").click().run()
    assert not at.exception, at.exception
    assert _opened(at) == ["c1"] and "bot" not in at.query_params


def test_needs_attention_opens_its_row_when_the_list_is_filtered_to_other_conversations(
    console: Store,
) -> None:
    """A bot filter bound to the URL must not stop Needs attention from opening its row: the
    filters are cleared so the opened conversation belongs to the list."""
    _asks_for_a_person(console)  # c2, the buyer bot's
    at = AppTest.from_file(str(ROOT / "pages/conversations.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", auth.OPERATOR)
    at.query_params["bot"] = "lead"
    at.query_params["q"] = "c1"
    at.run()
    assert not at.exception, at.exception
    next(b for b in at.button if b.key == "cv_attention_c2").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cv_pick").value == "c2" and at.query_params["conversation"] in ("c2", ["c2"])
    assert "bot" not in at.query_params and "q" not in at.query_params
    assert "Opened 'c2': the list's filters were cleared so that it is in the list." in _text(at)


def test_every_page_says_so_while_the_worker_is_not_running(console: Store) -> None:
    """Nothing evaluates alerts or scores conversations without a worker, while the figures look
    current: every page says so until a worker ticks, and again once it has been silent too long."""
    from datetime import timedelta

    from observability.settings import get_settings
    from observability.worker import runner, steps

    for path in ("Home.py", "pages/conversations.py", "pages/alerts.py"):
        assert "No worker has run on this store" in _text(_app(path, auth.OPERATOR)), path
    heartbeat = [s for s in steps.STEPS if s.name == "heartbeat"]
    w = runner.Worker(Store.from_url(console.url), get_settings(), steps=heartbeat, worker_id="w1")
    try:
        w.tick()  # a real tick writes the heartbeat the banner reads
        common.clear_caches()
        assert "worker" not in _text(_app("Home.py", auth.OPERATOR)).lower()
        w.tick(now=utcnow() - timedelta(minutes=10))  # as if its last tick were 10 minutes ago
    finally:
        w.close()
    common.clear_caches()
    shown = _text(_app("pages/alerts.py", auth.OPERATOR))
    assert "The worker has not run for 10 min" in shown and "alerts are not evaluated or sent" in shown


def test_bidi_override_characters_in_a_message_are_shown_not_obeyed(console: Store) -> None:
    """U+202E reverses what follows it on screen ("edirrevo LTR"), so a message could show other
    words than it holds: data is shown with such characters as codes, in the transcript, in
    markdown and in tables; right-to-left text and its marks are left alone."""
    spoof = "pay \u202eRTL override\u202c now"
    write_batch(console, [ev.message(uuid.uuid4().hex, time.time() - 2, conversation_id="c1", role="user",
                                     text=spoof, bot="lead", account_id=None)])  # fmt: skip
    at = _app("pages/conversations.py", auth.OPERATOR)
    texts = [t.value for t in at.text]
    assert "pay <U+202E>RTL override<U+202C> now" in texts and spoof not in texts
    assert common.md_escape("a\u2067b") == "a\\<U\\+2067\\>b"
    hebrew = "\u05e9\u05dc\u05d5\u05dd\u200f!"  # a right-to-left word and its mark stay as written
    assert common.visible_text(hebrew) == hebrew
    import pandas as pd

    shown = common.visible_frame(pd.DataFrame({"who": ["x\u202ey", "plain"], "n": [1, 2]}))
    assert list(shown["who"]) == ["x<U+202E>y", "plain"]
