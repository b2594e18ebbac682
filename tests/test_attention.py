"""Needs attention: live conversations in trouble ranked by the documented trouble score, each
saying why, computed in SQL over what the store already holds (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from observability import auth, control
from observability import events as ev
from observability.analytics.attention import needs_attention
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch

NOW = datetime(2026, 3, 1, 12, 0, 0)
S = Settings().replace(auth_mode="password", redis_url=None)


def _at(seconds_ago: float) -> float:
    return to_epoch(NOW - timedelta(seconds=seconds_ago))


def _talk(cid: str, *turns: tuple[str, str, float], account: str | None = None) -> list:
    return [
        ev.message(uuid.uuid4().hex, _at(ago), conversation_id=cid, role=role, text=text, bot="lead",
                   account_id=account)
        for role, text, ago in turns
    ]  # fmt: skip


def _metric(cid: str, name: str, value: float, ago: float = 30) -> list:
    return ev.metric(uuid.uuid4().hex, _at(ago), metric_name=name, metric_type="gauge", value=value,
                     account_id=None, conversation_id=cid, metadata=None)  # fmt: skip


def _event(cid: str, kind: str, ago: float = 30) -> list:
    return ev.activity(uuid.uuid4().hex, _at(ago), event_type=kind, title=kind, description=None,
                       severity="high", category="handoff", account_id=None, conversation_id=cid,
                       metadata=None)  # fmt: skip


@pytest.fixture
def traffic(store: Store) -> Store:
    auth.create_user(store, "olga", auth.OPERATOR, "a-long-password")
    answered = [("user", "hello", 90), ("bot", "Hi! How can I help?", 80)]
    events = [
        ev.account("acme", _at(500), name="Acme", vip=True),
        *_talk("calm", *answered),
        *_talk("unsafe", *answered),
        _metric("unsafe", "safety_score", 0.5),
        _metric("unsafe", "ai_confidence", 0.9),
        *_talk(
            "asker",
            ("user", "hello", 300),
            ("bot", "Hi!", 290),
            ("user", "This is useless, can I talk to a REAL person?", 150),
            account="acme",
        ),  # fmt: skip
        *_talk("looping", *answered),
        _event("looping", "handoff_failed"),
        _event("looping", "handoff_blocked"),
        _event("looping", "handoff_blocked"),
        *_talk("held", *answered),
        _metric("held", "safety_score", 0.1),
        *_talk("old", ("user", "I want a human", 7300)),
        _metric("old", "safety_score", 0.1, ago=7300),
        *_talk("unsure", *answered),
        _metric("unsure", "ai_confidence", 0.55),
    ]
    write_batch(store, events, S)
    control.take_control(store, "held", "olga", "on it", settings=S, now=NOW)
    return store


def test_live_conversations_in_trouble_come_worst_first_each_saying_why(traffic: Store) -> None:
    rows = needs_attention(traffic, now=NOW)
    assert [(r["id"], r["score"]) for r in rows] == [
        ("asker", 40),  # asked for a person (30) + 2.5 min unanswered (10); VIP wins the tie
        ("unsafe", 40),  # safety 0.5 is below the critical 0.6
        ("looping", 35),  # a failed handoff (20) and circular ones (15)
        ("unsure", 12),  # confidence below the warning level
    ]
    why = {r["id"]: r["reasons"] for r in rows}
    assert why["asker"] == ["the user asked for a person", "waiting 2 min for a reply"]
    assert why["unsafe"] == ["safety score 0.50 (critical, below 0.6)"]
    assert why["looping"] == ["1 failed handoff", "2 circular handoffs blocked"]
    assert why["unsure"] == ["AI confidence 0.55 (warning, below 0.6)"]
    asker = rows[0]
    assert asker["vip"] is True and asker["account_name"] == "Acme" and 149 <= asker["waiting_s"] <= 151
    # held by a person (already has attention), quiet for two hours, or calm: not listed
    assert not {"held", "old", "calm"} & {r["id"] for r in rows}


def test_a_reply_ends_the_wait_and_the_limit_and_bots_filter_apply(traffic: Store) -> None:
    write_batch(traffic, _talk("asker", ("bot", "A colleague will join shortly.", 10), account="acme"), S)
    rows = needs_attention(traffic, now=NOW)
    assert (rows[0]["id"], rows[0]["score"], rows[0]["waiting_s"]) == ("unsafe", 40, None)
    assert [r["id"] for r in needs_attention(traffic, now=NOW, limit=3)] == ["unsafe", "looping", "asker"]
    assert needs_attention(traffic, now=NOW, bots=["seller"]) == []


def test_a_resolved_conversation_leaves_the_list(traffic: Store) -> None:
    control.take_control(traffic, "unsafe", "olga", "check", settings=S, now=NOW)
    control.release_control(traffic, "unsafe", "olga", "handled", mark_resolved=True, settings=S, now=NOW)
    assert "unsafe" not in [r["id"] for r in needs_attention(traffic, now=NOW)]


def test_a_score_below_its_threshold_never_reads_as_the_threshold() -> None:
    from observability.analytics.attention import _down

    assert _down(0.5996) == "0.59"  # it read "AI confidence 0.60 (warning, below 0.6)"
    assert (_down(0.29), _down(0.55), _down(0.1)) == ("0.29", "0.55", "0.10")
