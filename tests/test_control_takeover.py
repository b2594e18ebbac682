"""Take-over services: states and conflicts, operator replies, suggestions, release, audit rows."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from observability import auth, control
from observability import events as ev
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch

T0 = datetime(2026, 3, 1, 12, 0, 0)
S = Settings().replace(auth_mode="password", redis_url=None)
PW = "a-long-password"


@pytest.fixture
def crew(store: Store) -> Store:
    for name, role in (
        ("olga", auth.OPERATOR),
        ("otto", auth.OPERATOR),
        ("root", auth.ADMIN),
        ("ann", auth.ANALYST),
    ):
        auth.create_user(store, name, role, PW)
    return store


def _conversation(store: Store, cid: str, *texts: tuple[str, str], resolved: bool = False) -> None:
    t = time.time() - 60
    write_batch(
        store,
        [
            ev.message(
                uuid.uuid4().hex,
                t + i,
                conversation_id=cid,
                role=role,
                text=text,
                bot="buyer",
                account_id="account-1",
            )
            for i, (role, text) in enumerate(texts)
        ],
        S,
    )
    if resolved:
        with store.begin() as conn:
            conn.execute(
                sa.update(schema.conversations).where(schema.conversations.c.id == cid).values(resolved=True)
            )


def _rows(store: Store, table: sa.Table) -> list:
    with store.connect() as conn:
        return conn.execute(sa.select(table).order_by(table.c.id)).all()


def _activity(store: Store, prefix: str) -> list:
    t = schema.activity_events
    with store.connect() as conn:
        return conn.execute(sa.select(t).where(t.c.event_type.like(f"{prefix}%")).order_by(t.c.ts)).all()


def test_take_over_reply_release_leaves_a_complete_audit_trail(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "Where is my offer?"))
    taken = control.take_control(
        crew, "c1", "olga", "customer upset", "high", notify_user=True, settings=S, now=T0
    )
    assert (taken.action, taken.outcome, taken.published) == ("take_control", "taken", None)
    status = control.intervention_status(crew, "c1", now=T0 + timedelta(seconds=30))
    assert (status.state, status.operator, status.reason, status.priority) == (
        "human",
        "olga",
        "customer upset",
        "high",
    )
    assert status.held_for_s == 30 and status.ai_may_respond is False
    assert status.notify_user is True and status.preserve_ai_suggestions is True

    reply = control.send_operator_message(
        crew,
        "c1",
        "olga",
        "Hi, it's Olga. Call me: +44 20 7946 0958",
        settings=S,
        now=T0 + timedelta(minutes=1),
    )
    released = control.release_control(
        crew, "c1", "olga", "offer explained", "Continue with an empathetic tone", mark_resolved=True,
        settings=S, now=T0 + timedelta(minutes=5),
    )  # fmt: skip
    assert released.outcome == "resolved"

    status = control.intervention_status(crew, "c1")
    assert (status.state, status.operator, status.ai_may_respond, status.resolved) == ("ai", None, True, True)
    assert status.handoff_instructions == "Continue with an empathetic tone"

    rows = _rows(crew, schema.interventions)
    assert [(r.action, r.user_name, r.outcome) for r in rows] == [
        ("take_control", "olga", "taken"),
        ("reply", "olga", "sent"),
        ("release_control", "olga", "resolved"),
    ]
    release = rows[-1]
    assert release.duration_s == 300 and release.started_at == T0 and release.summary == "offer explained"
    assert (
        release.ai_handoff_instructions == "Continue with an empathetic tone"
        and release.reason == "customer upset"
    )

    transcript = control.transcript(crew, "c1")
    operator_lines = [m for m in transcript if m["role"] == "operator"]
    assert [m["text"] for m in operator_lines] == [
        control.NOTIFY_USER_TEXT,
        "Hi, it's Olga. Call me: [phone redacted]",
    ]
    assert {m["author"] for m in operator_lines} == {"olga"} and operator_lines[1]["id"] == reply.message_id
    kinds = [e.event_type for e in _activity(crew, "intervention.")]
    assert kinds == ["intervention.take_control", "intervention.reply", "intervention.release_control"]
    assert all(e.user_id == "olga" and e.conversation_id == "c1" for e in _activity(crew, "intervention."))
    with crew.connect() as conn:
        resolved = conn.execute(
            sa.select(schema.conversations.c.resolved).where(schema.conversations.c.id == "c1")
        )
        assert resolved.scalar() is True


def test_a_conversation_held_by_someone_else_cannot_be_taken_or_answered(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    control.take_control(crew, "c1", "olga", "review", settings=S)
    with pytest.raises(control.ControlConflict, match="already held by olga"):
        control.take_control(crew, "c1", "otto", "me too", settings=S)
    with pytest.raises(control.ControlConflict, match="held by olga"):
        control.send_operator_message(crew, "c1", "otto", "hi", settings=S)
    with pytest.raises(control.ControlConflict, match="only they or an admin"):
        control.release_control(crew, "c1", "otto", "done", settings=S)
    again = control.take_control(crew, "c1", "olga", "review", settings=S)  # idempotent for the holder
    assert again.outcome == "already_held"
    assert [r.action for r in _rows(crew, schema.interventions)] == ["take_control"]
    control.release_control(crew, "c1", "root", "admin override", settings=S)  # an admin may release
    assert control.intervention_status(crew, "c1").state == "ai"


def test_a_stopped_conversation_cannot_be_taken_over(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    control.stop_conversation(crew, "c1", "olga", "abuse", settings=S)
    # the refusal says what to do, without sending anyone elsewhere: Reset is on the conversation's
    # own view, and the API has its own endpoint
    with pytest.raises(
        control.ControlConflict, match=r"^conversation c1 is stopped; reset it before taking it over$"
    ):
        control.take_control(crew, "c1", "olga", "review", settings=S)
    assert control.intervention_status(crew, "c1").state == "stopped"


def test_replying_or_releasing_needs_a_take_over_first(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    with pytest.raises(control.ControlConflict, match="take conversation c1 over"):
        control.send_operator_message(crew, "c1", "olga", "hi", settings=S)
    with pytest.raises(control.ControlConflict, match="not held"):
        control.release_control(crew, "c1", "olga", "done", settings=S)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda st: control.take_control(st, "nope", "olga", "x", settings=S), control.ConversationNotFound),
        (lambda st: control.take_control(st, "c1", "olga", "", settings=S), ValueError),
        (lambda st: control.take_control(st, "c1", "olga", "x", "urgent!!", settings=S), ValueError),
        (lambda st: control.take_control(st, "", "olga", "x", settings=S), ValueError),
        (lambda st: control.take_control(st, "c1", "olga", "x" * 5000, settings=S), ValueError),
        (lambda st: control.release_control(st, "c1", "olga", " ", settings=S), ValueError),
        (lambda st: control.intervention_status(st, "nope"), control.ConversationNotFound),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(crew: Store, call: object, error: type) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    with pytest.raises(error):
        call(crew)
    assert _rows(crew, schema.interventions) == [] and _activity(crew, "intervention.") == []
    assert control.intervention_status(crew, "c1").state == "ai"


def test_empty_or_oversized_replies_are_refused(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    control.take_control(crew, "c1", "olga", "review", settings=S)
    for text in ("", "   ", "x" * (S.sdk_max_text_bytes + 1), "nul\x00byte"):
        with pytest.raises(ValueError):
            control.send_operator_message(crew, "c1", "olga", text, settings=S)
    assert [m["role"] for m in control.transcript(crew, "c1")] == ["user"]


def test_suggestions_come_from_the_most_similar_resolved_conversation(crew: Store) -> None:
    _conversation(
        crew, "done-1", ("user", "How much deposit do I need for a mortgage?"),
        ("bot", "Most lenders ask for a 10% deposit."), resolved=True,
    )  # fmt: skip
    _conversation(
        crew, "done-2", ("user", "Can I book a viewing on Saturday?"),
        ("bot", "Yes, Saturday viewings run from 10 to 4."), resolved=True,
    )  # fmt: skip
    _conversation(crew, "open-1", ("user", "Do you have viewings on Saturday?"), ("bot", "Let me check."))
    _conversation(crew, "c1", ("user", "what deposit would I need for my mortgage"))
    control.take_control(crew, "c1", "olga", "review", settings=S)
    s = control.suggest_response(crew, "c1", "olga", settings=S)
    assert s.source == "similar_conversation" and s.similar_conversation_id == "done-1"
    assert s.text == "Most lenders ask for a 10% deposit."
    assert "Not AI-generated" in s.label and "done-1" in s.label

    _conversation(crew, "c2", ("user", "zebra quantum pineapple"))
    none = control.suggest_response(crew, "c2", "olga", settings=S)
    assert none.source == "none" and none.text is None

    # only words every question has in common ("what is", "in"): no draft rather than an unrelated one
    _conversation(
        crew, "done-3", ("user", "What time is the open house in Docklands?"),
        ("bot", "Yes, there's an open house in Docklands on Tuesday from 12:30."), resolved=True,
    )  # fmt: skip
    _conversation(crew, "c3", ("user", "I want to sell my townhouse in Northgate, what is it worth?"))
    unrelated = control.suggest_response(crew, "c3", "olga", settings=S)
    assert unrelated.source == "none" and unrelated.text is None, unrelated


def test_suggestions_without_any_resolved_conversation_say_so(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    s = control.suggest_response(crew, "c1", "olga", settings=S)
    assert s.source == "none" and "No resolved conversations" in s.label


class _FakeClaude:
    """Stands in for anthropic.Anthropic (no network): records the request, returns a draft."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[dict] = []
        self.fail = fail
        self.messages = self

    def create(self, **request: object) -> SimpleNamespace:
        self.requests.append(request)
        if self.fail:
            raise ConnectionError("no network in tests")
        usage = SimpleNamespace(
            input_tokens=120, output_tokens=30, cache_read_input_tokens=0, cache_creation_input_tokens=0
        )
        return SimpleNamespace(
            content=[SimpleNamespace(type="text", text="Happy to help with that!")],
            usage=usage,
            model="claude-x",
        )


def test_suggestions_from_claude_are_labelled_and_costed(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "mail me at jo@example.com please"))
    fake = _FakeClaude()
    s = control.suggest_response(crew, "c1", "olga", settings=S, anthropic_client=fake)
    assert (s.source, s.text, s.model) == ("claude", "Happy to help with that!", S.suggest_model)
    assert "Claude" in s.label
    prompt = fake.requests[0]["messages"][0]["content"]
    assert "[email redacted]" in prompt and "jo@example.com" not in prompt
    with crew.connect() as conn:
        call = conn.execute(sa.select(schema.llm_calls)).one()
    assert (call.bot, call.agent, call.conversation_id, call.input_tokens) == (
        "console",
        "operator_suggestion",
        "c1",
        120,
    )


def test_a_failing_claude_falls_back_to_similar_conversations(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello there"))
    s = control.suggest_response(crew, "c1", "olga", settings=S, anthropic_client=_FakeClaude(fail=True))
    assert s.source == "none" and any("Claude was unavailable" in n for n in s.notes)


def test_list_conversations_puts_held_and_stopped_first_with_scores(crew: Store) -> None:
    _conversation(crew, "alpha", ("user", "one"))
    _conversation(crew, "bravo", ("user", "two"), ("bot", "ok"))
    _conversation(crew, "charlie", ("user", "three"))
    with crew.begin() as conn:
        conn.execute(
            sa.update(schema.conversations)
            .where(schema.conversations.c.id == "bravo")
            .values(quality_score=0.8)
        )
    control.take_control(crew, "charlie", "olga", "review", settings=S)
    control.stop_conversation(crew, "alpha", "olga", "abuse", settings=S)
    rows = control.list_conversations(crew)
    assert [(r["id"], r["state"]) for r in rows] == [
        ("charlie", "human"),
        ("alpha", "stopped"),
        ("bravo", "ai"),
    ]
    bravo = rows[-1]
    assert (bravo["messages"], bravo["quality_score"], bravo["bot"], bravo["account_id"]) == (
        2,
        0.8,
        "buyer",
        "account-1",
    )
    assert [r["id"] for r in control.list_conversations(crew, states=["ai"])] == ["bravo"]
    assert [r["id"] for r in control.list_conversations(crew, search="CHARL")] == ["charlie"]


def test_two_operators_taking_over_at_once_one_wins_and_the_other_is_told(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def take(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = control.take_control(crew, "c1", name, "mine", settings=S).outcome
        except control.ControlConflict as exc:
            outcomes[name] = f"refused: {exc}"

    threads = [threading.Thread(target=take, args=(n,)) for n in ("olga", "otto")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winner = control.intervention_status(crew, "c1").operator
    loser = "otto" if winner == "olga" else "olga"
    assert outcomes[winner] == "taken" and outcomes[loser].startswith("refused")
    assert [(r.action, r.user_name) for r in _rows(crew, schema.interventions)] == [("take_control", winner)]


def _many(store: Store, n: int, vip_every: int = 3) -> None:
    """n conversations, one second apart (conv-000 oldest); every `vip_every`-th on a VIP account."""
    base = time.time() - 3600
    events = [ev.account("vip-acct", base, name="Very Important", vip=True)]
    for i in range(n):
        account = "vip-acct" if i % vip_every == 0 else f"acct-{i}"
        events.append(ev.message(uuid.uuid4().hex, base + i, conversation_id=f"conv-{i:03d}", role="user",
                                 text="hi", bot="lead" if i % 2 else "buyer", account_id=account))  # fmt: skip
    write_batch(store, events, S)


def test_browsing_pages_through_every_conversation_with_true_counts(crew: Store) -> None:
    _many(crew, 25)
    control.take_control(crew, "conv-003", "olga", "review", settings=S)
    seen, cursor = [], None
    while True:
        page = control.browse_conversations(crew, limit=10, cursor=cursor)
        assert (page.total, page.by_state) == (25, {"ai": 24, "human": 1})
        seen += [r["id"] for r in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    # newest activity first, no cap, nothing skipped or repeated; VIP does not change the order
    assert seen == [f"conv-{i:03d}" for i in range(24, -1, -1)]
    vip = control.browse_conversations(crew, vip=True, limit=100)
    assert vip.total == 9 and all(r["vip"] and r["account_name"] == "Very Important" for r in vip.rows)
    assert control.browse_conversations(crew, vip=False).total == 16
    lead = control.browse_conversations(crew, bots=["lead"], search="conv-01", limit=100)
    assert [r["id"] for r in lead.rows] == ["conv-019", "conv-017", "conv-015", "conv-013", "conv-011"]
    assert control.browse_conversations(crew, states=["human"]).rows[0]["id"] == "conv-003"
    assert control.conversation_matches(crew, "conv-003", states=["human"])
    assert not control.conversation_matches(crew, "conv-004", states=["human"])
    assert not control.conversation_matches(crew, "nope")
    with pytest.raises(ValueError, match="cursor"):
        control.browse_conversations(crew, cursor="garbage")


def test_during_a_system_wide_stop_every_conversation_is_listed_and_counted_as_stopped(crew: Store) -> None:
    _many(crew, 4)
    control.system_wide_stop(crew, "root", "incident", control.STOP_PHRASE, settings=S)
    page = control.browse_conversations(crew)
    assert (page.total, page.by_state, page.system_stopped) == (4, {"stopped": 4}, True)
    assert {r["effective_state"] for r in page.rows} == {"stopped"}
    assert control.browse_conversations(crew, states=["stopped"]).total == 4
    assert control.browse_conversations(crew, states=["ai"]).total == 0
    assert control.intervention_status(crew, "conv-000").effective_state == "stopped"


def test_resolved_on_hand_back_stays_resolved_after_new_messages_and_rescoring(crew: Store) -> None:
    from observability.analytics.conversation_scoring import score_pending

    _conversation(crew, "c1", ("user", "I need help"), ("bot", "Sure"))
    control.take_control(crew, "c1", "olga", "review", settings=S)
    control.release_control(crew, "c1", "olga", "sorted out", mark_resolved=True, settings=S)
    _conversation(crew, "c1", ("user", "one more question, this is still broken and I am angry"))
    score_pending(crew, datetime.now(UTC).replace(tzinfo=None))
    assert control.browse_conversations(crew).rows[0]["resolved"] is True
    assert control.intervention_status(crew, "c1").resolved is True
    # taken over again: the worker's scores apply once more
    control.take_control(crew, "c1", "olga", "again", settings=S)
    _conversation(crew, "c1", ("user", "still broken"))
    score_pending(crew, datetime.now(UTC).replace(tzinfo=None))
    assert control.browse_conversations(crew).rows[0]["resolved"] is not True
    assert control.intervention_status(crew, "c1").resolved is False


def test_suggestions_are_refused_when_the_take_over_turned_them_off(crew: Store) -> None:
    _conversation(crew, "c1", ("user", "hello"))
    control.take_control(crew, "c1", "olga", "review", preserve_ai_suggestions=False, settings=S)
    with pytest.raises(control.ControlConflict, match="AI suggestions are off"):
        control.suggest_response(crew, "c1", "olga", settings=S)
