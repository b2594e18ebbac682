"""Emergency controls: stop and reset one conversation, system-wide stop and resume (typed
confirmation, rate limit), their audit rows, and the Redis mirror every gate reads."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from support import wait_for

from observability import auth, control, keys
from observability import events as ev
from observability.control import mirror
from observability.conversation_state import read_from_redis
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.worker.runner import STEPS, TickContext

T0 = datetime(2026, 3, 1, 12, 0, 0)
S = Settings().replace(auth_mode="password", redis_url=None)
PW = "a-long-password"


@pytest.fixture
def crew(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    for name, role in (("olga", auth.OPERATOR), ("root", auth.ADMIN), ("root2", auth.ADMIN)):
        auth.create_user(store, name, role, PW)
    _first_message(store, "c1", bot="lead")
    return store


def _first_message(store: Store, cid: str, bot: str | None = None, settings: Settings = S) -> None:
    """A customer says hi: the store learns of the conversation from its first message."""
    message = ev.message(
        uuid.uuid4().hex, time.time(), conversation_id=cid, role="user", text="hi", bot=bot, account_id=None
    )
    write_batch(store, [message], settings)


def _emergency_rows(store: Store) -> list:
    e = schema.emergency_actions
    with store.connect() as conn:
        return conn.execute(sa.select(e).order_by(e.c.id)).all()


def _activity(store: Store, prefix: str) -> list:
    t = schema.activity_events
    with store.connect() as conn:
        return conn.execute(sa.select(t).where(t.c.event_type.like(f"{prefix}%")).order_by(t.c.ts)).all()


def test_stop_and_reset_one_conversation_are_audited(crew: Store) -> None:
    stopped = control.stop_conversation(crew, "c1", "olga", "abusive content", settings=S, now=T0)
    assert stopped.outcome == "stopped"
    status = control.intervention_status(crew, "c1")
    assert (status.state, status.operator, status.reason, status.ai_may_respond) == (
        "stopped",
        "olga",
        "abusive content",
        False,
    )
    assert (
        control.stop_conversation(crew, "c1", "olga", "again", settings=S, now=T0).outcome
        == "already_stopped"
    )
    reset = control.reset_conversation(
        crew, "c1", "olga", "reviewed", settings=S, now=T0 + timedelta(minutes=2)
    )
    assert reset.outcome == "reset_from_stopped"
    status = control.intervention_status(crew, "c1")
    assert (status.state, status.operator, status.reason, status.ai_may_respond) == ("ai", None, None, True)
    rows = _emergency_rows(crew)
    assert [(r.action, r.scope, r.conversation_id, r.user_name, r.reason, r.outcome) for r in rows] == [
        ("stop", "conversation", "c1", "olga", "abusive content", "stopped"),
        ("stop", "conversation", "c1", "olga", "again", "already_stopped"),
        ("reset", "conversation", "c1", "olga", "reviewed", "reset_from_stopped"),
    ]
    assert rows[0].created_at == T0
    events = _activity(crew, "emergency.")
    assert [(e.event_type, e.severity, e.user_id) for e in events] == [
        ("emergency.stop", "high", "olga"),
        ("emergency.stop", "high", "olga"),
        ("emergency.reset", "medium", "olga"),
    ]


def test_stopping_a_held_conversation_ends_the_take_over_with_its_duration(crew: Store) -> None:
    control.take_control(crew, "c1", "olga", "review", settings=S, now=T0)
    control.stop_conversation(crew, "c1", "root", "escalated", settings=S, now=T0 + timedelta(seconds=90))
    it = schema.interventions
    with crew.connect() as conn:
        ended = conn.execute(sa.select(it).where(it.c.action == "release_control")).one()
    assert (ended.outcome, ended.duration_s, ended.user_name) == ("ended_by_emergency_stop", 90, "root")


@pytest.mark.parametrize("typo", ["c1x", "<b>x</b>😀"])
@pytest.mark.parametrize(
    "action",
    [
        lambda st, cid: control.stop_conversation(st, cid, "olga", "abuse", settings=S),
        lambda st, cid: control.reset_conversation(st, cid, "olga", "checked", settings=S),
        lambda st, cid: control.take_control(st, cid, "olga", "review", settings=S),
    ],
    ids=["stop", "reset", "take_over"],
)
def test_an_id_the_store_has_never_seen_is_refused_and_leaves_no_phantom(
    crew: Store, action: object, typo: str
) -> None:
    with pytest.raises(control.ConversationNotFound, match="no conversation .* check the id") as exc:
        action(crew, typo)  # type: ignore[operator]
    assert typo in str(exc.value)
    assert [r["id"] for r in control.list_conversations(crew)] == ["c1"]  # no phantom row
    assert _emergency_rows(crew) == [] and control.intervention_history(crew) == []
    assert _activity(crew, "emergency.") == [] and _activity(crew, "intervention.") == []


def test_system_wide_stop_needs_the_typed_phrase(crew: Store) -> None:
    for wrong in (None, "", "stop all", "STOP", "yes"):
        with pytest.raises(control.ConfirmationRequired, match='type "STOP ALL"'):
            control.system_wide_stop(crew, "root", "incident", wrong, settings=S)
    assert _emergency_rows(crew) == [] and control.system_status(crew)["stopped"] is False

    result = control.system_wide_stop(crew, "root", "incident", " STOP ALL ", settings=S, now=T0)
    assert result.outcome == "stopped"
    system = control.system_status(crew)
    assert (system["stopped"], system["reason"], system["by"]) == (True, "incident", "root")
    status = control.intervention_status(crew, "c1")
    assert status.system_stopped and not status.ai_may_respond and status.state == "ai"

    with pytest.raises(control.ConfirmationRequired, match='type "RESUME ALL"'):
        control.system_resume(crew, "root", "over", "STOP ALL", settings=S)
    assert control.system_resume(crew, "root", "over", "RESUME ALL", settings=S, now=T0).outcome == "resumed"
    assert control.intervention_status(crew, "c1").ai_may_respond
    rows = _emergency_rows(crew)
    assert [(r.action, r.scope, r.user_name, r.confirmed, r.outcome) for r in rows] == [
        ("system_stop", "system", "root", True, "stopped"),
        ("system_resume", "system", "root", True, "resumed"),
    ]
    assert [(e.event_type, e.severity) for e in _activity(crew, "emergency.system")] == [
        ("emergency.system_stop", "critical"),
        ("emergency.system_resume", "high"),
    ]


def test_without_confirmation_required_no_phrase_is_needed(crew: Store) -> None:
    relaxed = S.replace(emergency_confirmation_required=False)
    result = control.system_wide_stop(crew, "root", "drill", settings=relaxed)
    assert result.outcome == "stopped" and _emergency_rows(crew)[0].confirmed is False


def test_resume_is_rate_limited_per_user_but_a_stop_never_is(crew: Store) -> None:
    limited = S.replace(emergency_rate_limit_per_min=3)
    at = [T0 + timedelta(seconds=10 * i) for i in range(8)]
    control.system_wide_stop(crew, "root", "a", "STOP ALL", settings=limited, now=at[0])
    control.system_resume(crew, "root", "b", "RESUME ALL", settings=limited, now=at[1])
    control.system_wide_stop(crew, "root", "c", "STOP ALL", settings=limited, now=at[2])
    # a fourth and a fifth action within the minute: stopping is always allowed
    assert control.system_wide_stop(crew, "root", "d", "STOP ALL", settings=limited, now=at[3]).outcome == (
        "already_stopped"
    )
    with pytest.raises(control.RateLimited, match="at most 3.*a stop is never limited") as exc:
        control.system_resume(crew, "root", "e", "RESUME ALL", settings=limited, now=at[4])
    assert 29 <= exc.value.retry_after_s <= 31
    assert control.system_status(crew)["stopped"] is True  # the refused resume changed nothing
    # another admin is not limited by root's actions; root is again after a minute
    control.system_resume(crew, "root2", "f", "RESUME ALL", settings=limited, now=at[4])
    control.system_wide_stop(crew, "root", "g", "STOP ALL", settings=limited, now=at[5])
    assert control.system_status(crew)["stopped"] is True
    assert len(_emergency_rows(crew)) == 6


def test_audit_rows_cannot_be_edited_through_the_services() -> None:
    """The services offer reads of the audit trail, never an edit or a delete."""
    public = [n for n in dir(control) if not n.startswith("_")]
    assert "intervention_history" in public and "emergency_history" in public
    assert not [n for n in public if any(w in n for w in ("update", "delete", "edit", "purge", "remove"))]


def test_history_reads_are_newest_first(crew: Store) -> None:
    control.take_control(crew, "c1", "olga", "review", settings=S, now=T0)
    control.release_control(crew, "c1", "olga", "done", settings=S, now=T0 + timedelta(minutes=1))
    control.stop_conversation(crew, "c1", "olga", "x", settings=S, now=T0)
    assert [r["action"] for r in control.intervention_history(crew, "c1")] == [
        "release_control",
        "take_control",
    ]
    assert control.intervention_history(crew, "other") == []
    assert [r["action"] for r in control.emergency_history(crew)] == ["stop"]


# ---- the Redis mirror ---------------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_url: str):  # noqa: ANN201 - redis.Redis
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_actions_are_published_to_redis_for_every_gate(
    sqlite_store: Store, redis_client: object, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = S.replace(redis_prefix=redis_prefix)
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PW)
    auth.create_user(sqlite_store, "root", auth.ADMIN, PW)
    _first_message(sqlite_store, "c1", settings=s)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.control_channel(redis_prefix))
    assert pubsub.get_message(timeout=5.0)["type"] == "subscribe"  # listening before the first action

    assert (
        control.take_control(sqlite_store, "c1", "olga", "x", settings=s, redis=redis_client).published
        is True
    )
    assert read_from_redis(redis_client, redis_prefix, "c1") == (False, "human")
    assert redis_client.exists(keys.control_synced(redis_prefix))  # the first publish mirrored everything
    control.send_operator_message(
        sqlite_store, "c1", "olga", "hello from olga", settings=s, redis=redis_client
    )
    control.release_control(sqlite_store, "c1", "olga", "done", settings=s, redis=redis_client)
    assert read_from_redis(redis_client, redis_prefix, "c1") == (False, None)
    control.system_wide_stop(sqlite_store, "root", "x", "STOP ALL", settings=s, redis=redis_client)
    assert read_from_redis(redis_client, redis_prefix, "c1") == (True, None)

    published = []

    def four_received() -> bool:
        msg = pubsub.get_message(timeout=0.2)
        if msg:
            published.append(json.loads(msg["data"]))
        return len(published) >= 4

    wait_for(four_received, timeout=5.0, message=lambda: f"published so far: {published}")
    pubsub.close()
    assert published[0] == {"conversation_id": "c1", "state": "human"}
    assert published[1]["operator_message"]["text"] == "hello from olga"
    assert published[2] == {"conversation_id": "c1", "state": "ai"}
    assert published[3] == {"system_stopped": True}


def test_a_failed_publish_is_stored_anyway_and_drops_the_synced_marker(sqlite_store: Store) -> None:
    class DownRedis:
        deleted: list = []

        def pipeline(self, transaction: bool = True) -> None:
            raise ConnectionError("redis down")

        def delete(self, *keys: str) -> None:
            self.deleted.extend(keys)

    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PW)
    _first_message(sqlite_store, "c1")
    down = DownRedis()
    result = control.take_control(sqlite_store, "c1", "olga", "x", settings=S, redis=down)
    assert result.published is False and control.intervention_status(sqlite_store, "c1").state == "human"
    assert down.deleted == [keys.control_synced(S.redis_prefix)]


def test_the_worker_step_re_mirrors_the_store_after_a_redis_restart(
    crew: Store, redis_client: object, redis_prefix: str
) -> None:
    s = S.replace(redis_prefix=redis_prefix)
    control.take_control(crew, "c1", "olga", "x", settings=s)  # no Redis configured: store only
    control.system_wide_stop(crew, "root", "x", "STOP ALL", settings=s)
    redis_client.hset(keys.control_conversations(redis_prefix), "stale", "human")
    step = next(st for st in STEPS if st.name == "control_sync")
    assert step.leader_only is False
    step.run(TickContext(crew, s, redis_client, "w1", False, T0))
    assert read_from_redis(redis_client, redis_prefix, "c1") == (True, "human")
    assert read_from_redis(redis_client, redis_prefix, "stale") == (True, None)
    assert redis_client.exists(keys.control_synced(redis_prefix))


def test_sync_re_asserts_a_take_over_committed_while_it_ran(
    sqlite_store: Store, redis_client: object, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync_to_redis reads the store, then rewrites Redis: a take-over published in between must
    not be undone (the gate would reopen until the next tick)."""
    _first_message(sqlite_store, "c1")
    real_sync = mirror.sync_to_redis

    def racing_sync(store: Store, redis: object, prefix: str) -> int:
        with store.begin() as conn:  # a take-over commits and publishes right after the sync's read
            conn.execute(sa.update(schema.conversations).values(state="human", operator="olga"))
        mirror.publish_conversation_state(redis, prefix, "c1", "human")
        with store.begin() as conn:  # ...which the sync then undoes by replaying its stale read
            conn.execute(sa.update(schema.conversations).values(state="ai", operator=None))
        n = real_sync(store, redis, prefix)
        with store.begin() as conn:
            conn.execute(sa.update(schema.conversations).values(state="human", operator="olga"))
        return n

    monkeypatch.setattr(mirror, "sync_to_redis", racing_sync)
    control.sync_gates(sqlite_store, redis_client, redis_prefix)
    assert read_from_redis(redis_client, redis_prefix, "c1") == (False, "human")


def test_a_second_system_wide_stop_keeps_who_stopped_it_and_says_nothing_changed(crew: Store) -> None:
    """A redundant stop replaced who stopped, why and when, and the feed read "stopped every
    conversation" twice; a resume with no stop held read as a resume."""
    control.system_wide_stop(crew, "root", "real incident", "STOP ALL", settings=S, now=T0)
    again = control.system_wide_stop(
        crew, "root2", "me too", "STOP ALL", settings=S, now=T0 + timedelta(minutes=1)
    )
    assert again.outcome == "already_stopped"
    status = control.system_status(crew)
    assert (status["by"], status["reason"]) == ("root", "real incident")
    assert status["at"] is not None and status["at"].replace(tzinfo=None) == T0
    control.system_resume(crew, "root", "over", "RESUME ALL", settings=S, now=T0 + timedelta(minutes=2))
    noop = control.system_resume(
        crew, "root", "again", "RESUME ALL", settings=S, now=T0 + timedelta(minutes=3)
    )
    assert noop.outcome == "not_stopped"
    with crew.connect() as conn:
        titles = conn.execute(
            sa.select(schema.activity_events.c.title).where(schema.activity_events.c.category == "emergency")
            .order_by(schema.activity_events.c.ts)
        ).scalars().all()  # fmt: skip
    assert titles == [
        "root stopped every conversation (system-wide stop)",
        "root2 asked for a system-wide stop: already stopped, nothing changed",
        "root resumed every conversation",
        "root asked to resume: no system-wide stop held, nothing changed",
    ]
