"""The worker step that scores conversations with new messages and stores the scores on them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from observability.analytics.conversation_analytics import ConversationAnalytics
from observability.analytics.conversation_scoring import score_pending
from observability.analytics.conversations import SCORED_MESSAGES, analyze_conversation
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch
from observability.worker import steps as worker

NOW = datetime(2026, 3, 10, 12, 0, 0)

SCRIPT = [
    ("user", "The listing is overpriced and the basement had mold."),
    ("bot", "Sorry to hear that. Here is a renovated one nearby."),
    ("user", "Oh that one is bright and spacious, I love it!"),
    ("bot", "Your tour is scheduled for Friday."),
    ("user", "Perfect, thank you!"),
]


def message(conv: str, role: str, text: str, ts: datetime) -> list:
    return ["message", uuid.uuid4().hex, to_epoch(ts), conv, role, text, "lead_bot", "acct-1", None]


def conversation_row(store: Store, conv: str) -> sa.Row:
    c = schema.conversations
    with store.connect() as conn:
        return conn.execute(sa.select(c).where(c.c.id == conv)).one()


def test_new_messages_are_scored_and_stored(store: Store) -> None:
    start = NOW - timedelta(minutes=20)
    write_batch(
        store, [message("c1", r, t, start + timedelta(minutes=i)) for i, (r, t) in enumerate(SCRIPT[:3])]
    )
    write_batch(store, [message("c2", "user", "Is the condo walkable to the train?", start)])
    assert score_pending(store, NOW) == 2
    row = conversation_row(store, "c1")
    expected = ConversationAnalytics().analyze([{"role": r, "text": t} for r, t in SCRIPT[:3]])
    assert row.message_count == row.scored_message_count == 3
    assert row.sentiment == pytest.approx(expected.sentiment) and row.sentiment_trend == "improving"
    assert row.topic_drift == pytest.approx(expected.topic_drift)
    assert row.engagement == pytest.approx(expected.engagement)
    assert row.resolved is False and row.quality_score == pytest.approx(expected.quality_score)
    assert row.scored_at == NOW
    # nothing new: nothing rescored
    assert score_pending(store, NOW + timedelta(seconds=15)) == 0
    # two more messages: rescored with all five
    later = NOW + timedelta(seconds=20)
    write_batch(
        store, [message("c1", r, t, later + timedelta(seconds=i)) for i, (r, t) in enumerate(SCRIPT[3:])]
    )
    assert score_pending(store, NOW + timedelta(seconds=30)) == 1
    row = conversation_row(store, "c1")
    assert row.message_count == 5 and row.resolved is True
    full = ConversationAnalytics().analyze([{"role": r, "text": t} for r, t in SCRIPT])
    assert row.quality_score == pytest.approx(full.quality_score)


def test_the_console_analyses_the_messages_the_worker_scores(store: Store) -> None:
    # a long conversation: an angry start beyond the scored window, then the happy script
    start = NOW - timedelta(hours=3)
    angry = [message("long", "user", "This is terrible, awful, the worst agent ever.", start + timedelta(seconds=i))
             for i in range(10)]  # fmt: skip
    tail = [SCRIPT[i % len(SCRIPT)] for i in range(SCORED_MESSAGES)]
    happy = [message("long", r, t, start + timedelta(minutes=1, seconds=i)) for i, (r, t) in enumerate(tail)]
    write_batch(store, angry + happy)
    assert score_pending(store, NOW) == 1
    row = conversation_row(store, "long")
    on_page = analyze_conversation(store, "long")
    assert [m["text"] for m in on_page["messages"]] == [t for _, t in tail]  # the last ones, in order
    assert on_page["quality"] == pytest.approx(row.quality_score)
    assert on_page["sentiment_avg"] == pytest.approx(row.sentiment)
    assert (on_page["resolved"], on_page["sentiment_trend"]) == (row.resolved, row.sentiment_trend)


def test_late_messages_with_older_timestamps_are_picked_up(store: Store) -> None:
    write_batch(
        store, [message("c1", "user", "Hello, is the house still available?", NOW - timedelta(minutes=5))]
    )
    assert score_pending(store, NOW) == 1
    # a message that was delayed on its way: older than the scoring time, newer than nothing else
    write_batch(store, [message("c1", "user", "Thanks, that's all!", NOW - timedelta(minutes=4))])
    assert score_pending(store, NOW + timedelta(seconds=15)) == 1
    row = conversation_row(store, "c1")
    assert row.message_count == 2 and row.resolved is True
    assert score_pending(store, NOW + timedelta(seconds=30)) == 0


def test_client_clock_ahead_does_not_rescore_forever(store: Store) -> None:
    write_batch(store, [message("c1", "user", "Spacious and bright!", NOW + timedelta(minutes=3))])
    assert score_pending(store, NOW) == 1
    assert conversation_row(store, "c1").scored_at >= NOW + timedelta(minutes=3)
    assert score_pending(store, NOW + timedelta(seconds=15)) == 0


def test_the_worker_runs_the_step(store: Store, tmp_path: Path) -> None:
    assert any(s.run is worker.step_conversation_scoring and s.leader_only for s in worker.STEPS)
    write_batch(
        store, [message("c9", "user", "Great, the inspection went smoothly", NOW - timedelta(minutes=1))]
    )
    ctx = worker.TickContext(
        store=store, settings=Settings(), redis=None, worker_id="w1", is_leader=True, now=NOW
    )
    assert worker.step_conversation_scoring(ctx) == 1
    assert conversation_row(store, "c9").sentiment == 1.0
