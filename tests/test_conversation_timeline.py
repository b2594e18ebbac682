"""One conversation view holding everything: the timeline service interleaves messages, LLM calls,
handoffs, interventions, stops and alerts about its bot, bounded and in time order, on SQLite and
PostgreSQL; take over, stop and reset refuse an id the store has never seen; the page shows it."""

from __future__ import annotations

import time
import uuid

import pytest

from observability import auth, control
from observability import events as ev
from observability.alerting import AlertingService
from observability.analytics.conversation_timeline import conversation_overview, conversation_timeline
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch

S = Settings().replace(auth_mode="password", redis_url=None, alert_default_for_s=0.0)


def _call(ts: float, *, cost: float, latency: float, ok: bool = True, cid: str = "c1") -> list:
    return ev.llm_call(
        uuid.uuid4().hex, ts, bot="lead_bot", agent="qualifier", decision_type="reply", model="claude-sonnet-4",
        provider="anthropic", input_tokens=1200, output_tokens=300, cache_read_tokens=0, cache_write_tokens=0,
        latency_ms=latency, cache_hit=False, cost_usd=cost, conversation_id=cid, success=ok,
        error_type=None if ok else "rate_limit",
    )  # fmt: skip


def _seed(store: Store) -> float:
    t = time.time() - 120
    msg = [("user", "I want to buy a flat"), ("bot", "Which area?"), ("user", "Can I talk to a human?")]
    write_batch(
        store,
        [ev.message(uuid.uuid4().hex, t + i * 10, conversation_id="c1", role=r, text=x, bot="lead_bot",
                    account_id="acc-1") for i, (r, x) in enumerate(msg)]
        + [_call(t + 5, cost=0.0123, latency=850.0), _call(t + 15, cost=0.02, latency=4200.0, ok=False),
           _call(t + 16, cost=0.5, latency=100.0, cid="other"),
           ev.handoff(uuid.uuid4().hex, t + 12, source="lead_bot", target="seller_bot", success=True, duration_ms=40.0,
                      blocked=False, reason=None, conversation_id="c1"),
           ev.handoff(uuid.uuid4().hex, t + 17, source="lead_bot", target="buyer_bot", success=False, duration_ms=90.0,
                      blocked=False, reason="timeout", conversation_id="c1"),
           ev.handoff(uuid.uuid4().hex, t + 13, source="lead_bot", target="buyer_bot", success=True, duration_ms=30.0,
                      blocked=False, reason=None, conversation_id="other"),
           ev.activity(uuid.uuid4().hex, t + 17, event_type="handoff_failed", title="Handoff lead_bot -> buyer_bot failed",
                       description=None, severity="high", category="handoff", account_id="acc-1", conversation_id="c1"),
           ev.activity(uuid.uuid4().hex, t + 40, event_type="handoff_blocked", title="Handoff buyer_bot -> lead_bot blocked",
                       description=None, severity="medium", category="handoff", account_id="acc-1",
                       conversation_id="c1"),  # recorded without a handoff row: it stays
           ev.account("acc-1", t, name="Ada Flats", vip=True)],
        S,
    )  # fmt: skip
    return t


def test_the_timeline_interleaves_everything_in_time_order(store: Store) -> None:
    _seed(store)
    auth.create_user(store, "olga", auth.OPERATOR, "a-long-password")
    AlertingService(store, S).check_and_send_alerts({"lead_bot.response_time_p95": 3000.0})
    AlertingService(store, S).check_and_send_alerts({"buyer_bot.response_time_p95": 3000.0})  # another bot
    control.take_control(store, "c1", "olga", "asked for a person", settings=S)
    control.send_operator_message(store, "c1", "olga", "Hi, I am Olga", settings=S)

    items = conversation_timeline(store, "c1")
    kinds = [i["kind"] for i in items]
    assert kinds.count("message") == 4 and kinds.count("llm_call") == 2 and kinds.count("handoff") == 2
    handoffs = [(i["who"], i["text"], i["latency_ms"], i["ok"]) for i in items if i["kind"] == "handoff"]
    assert handoffs == [("lead_bot", "to seller_bot", 40.0, True),
                        ("lead_bot", "to buyer_bot · failed: timeout", 90.0, False)]  # fmt: skip
    activity = [i["ref"] for i in items if i["kind"] == "activity"]
    assert activity == ["handoff_blocked"], "the failed handoff is said once, by its row"
    assert kinds.count("intervention") == 1, "the reply is the operator's message, said once"
    alerts = [i for i in items if i["kind"] == "alert"]
    assert [a["who"] for a in alerts] == ["sla_violation"] and "lead_bot" in alerts[0]["text"]
    assert [i["ts"] for i in items] == sorted(i["ts"] for i in items)
    calls = [i for i in items if i["kind"] == "llm_call"]
    assert calls[0]["model"] == "claude-sonnet-4" and calls[0]["input_tokens"] == 1200
    assert calls[0]["cost_usd"] == pytest.approx(0.0123) and calls[0]["latency_ms"] == 850.0
    assert calls[1]["ok"] is False and calls[1]["text"] == "rate_limit"
    assert kinds.index("llm_call") < kinds.index("handoff") < kinds.index("intervention")
    assert any(
        i["kind"] == "message" and i["who"] == "olga" and i["text"] == "Hi, I am Olga" for i in items[-2:]
    )

    assert len(conversation_timeline(store, "c1", limit=3)) == 3
    assert conversation_timeline(store, "c1", limit=3)[-1] == items[-1], "the newest entries are kept"
    assert conversation_timeline(store, "never-seen") == []

    o = conversation_overview(store, "c1")
    assert (o.state, o.operator, o.account_name, o.vip) == ("human", "olga", "Ada Flats", True)
    assert (o.llm_calls, o.failed_calls, o.tokens) == (2, 1, 3000)
    assert o.cost_usd == pytest.approx(0.0323) and o.p95_hint_ms == 4200.0
    assert conversation_overview(store, "never-seen") is None


def test_take_over_stop_and_reset_refuse_an_id_the_store_never_saw(store: Store) -> None:
    _seed(store)
    auth.create_user(store, "olga", auth.OPERATOR, "a-long-password")
    for act in (
        lambda: control.take_control(store, "c1x", "olga", "typo", settings=S),
        lambda: control.stop_conversation(store, "c1x", "olga", "typo", settings=S),
        lambda: control.reset_conversation(store, "c1x", "olga", "typo", settings=S),
    ):
        with pytest.raises(control.ConversationNotFound, match="no conversation 'c1x' in the store"):
            act()
    assert sorted(r["id"] for r in control.list_conversations(store)) == ["c1"], "no phantom conversation"
    assert control.intervention_history(store, "c1x") == [] and control.emergency_history(store) == []
