"""What a bot sees of a take-over through the SDK: operator messages (pulled or pushed to a
callback), hand-back instructions, and gates that fall back to the store whenever Redis cannot be
trusted (new, restarted or down). The SDK never raises into the bot."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from support import wait_for

from observability import auth, control, keys
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch

PW = "a-long-password"


@pytest.fixture
def world(
    store: Store, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Store, Settings, ObservabilityClient]]:
    settings = make_settings(store.url, auth_mode="password")
    auth.create_user(store, "olga", auth.OPERATOR, PW)
    for cid in ("c1", "c2"):
        write_batch(
            store,
            [["message", uuid.uuid4().hex, time.time(), cid, "user", "hi", "lead", None, None]],
            settings,
        )
    client = ObservabilityClient(settings=settings)
    yield store, settings, client
    client.close()


def test_operator_messages_are_readable_by_the_bot(world: tuple) -> None:
    store, settings, client = world
    assert client.operator_messages("c1") == []
    control.take_control(store, "c1", "olga", "review", settings=settings)
    control.send_operator_message(store, "c1", "olga", "first, mail olga@example.com", settings=settings)
    control.send_operator_message(store, "c1", "olga", "second", settings=settings)
    got = client.operator_messages("c1")
    assert [m["text"] for m in got] == ["first, mail [email redacted]", "second"]
    assert {m["author"] for m in got} == {"olga"} and {m["conversation_id"] for m in got} == {"c1"}
    assert all(m["ts"].tzinfo is not None for m in got)
    assert [m["text"] for m in client.operator_messages("c1", since=got[0]["ts"])] == ["second"]
    assert client.operator_messages("c2") == []


def test_operator_messages_are_pushed_to_a_callback_once_each(world: tuple) -> None:
    store, settings, client = world
    seen: list[dict] = []
    only_c2: list[dict] = []
    lock = threading.Lock()

    def flaky(message: dict) -> None:
        with lock:
            seen.append(message)
        raise RuntimeError("a bug in the bot's callback")  # must not stop delivery

    client.on_operator_message(flaky)
    client.on_operator_message(only_c2.append, conversation_id="c2")
    client.on_operator_message("not callable")  # ignored, logged
    for cid in ("c1", "c2"):
        control.take_control(store, cid, "olga", "review", settings=settings)
    control.send_operator_message(store, "c1", "olga", "one", settings=settings)
    control.send_operator_message(store, "c2", "olga", "two", settings=settings)
    control.send_operator_message(store, "c1", "olga", "three", settings=settings)
    wait_for(lambda: len(seen) >= 3, message=lambda: seen)
    # later polls re-read a window of earlier replies: "four" arrives by one of them, and only once
    control.send_operator_message(store, "c1", "olga", "four", settings=settings)
    wait_for(lambda: len(seen) >= 4, message=lambda: seen)
    assert [m["text"] for m in seen] == ["one", "two", "three", "four"]
    assert [m["text"] for m in only_c2] == ["two"]


def test_messages_from_before_registration_are_not_replayed_unless_asked(world: tuple) -> None:
    store, settings, client = world
    control.take_control(store, "c1", "olga", "review", settings=settings)
    control.send_operator_message(store, "c1", "olga", "old", settings=settings)
    fresh: list[dict] = []
    replay: list[dict] = []
    client.on_operator_message(fresh.append)
    client.on_operator_message(replay.append, since=datetime.now(UTC) - timedelta(minutes=1))
    control.send_operator_message(store, "c1", "olga", "new", settings=settings)
    wait_for(lambda: len(fresh) >= 1 and len(replay) >= 2, message=lambda: (fresh, replay))
    control.send_operator_message(store, "c1", "olga", "newer", settings=settings)  # after later polls
    wait_for(lambda: len(fresh) >= 2 and len(replay) >= 3, message=lambda: (fresh, replay))
    assert [m["text"] for m in fresh] == ["new", "newer"]
    assert [m["text"] for m in replay] == ["old", "new", "newer"]


def test_handoff_instructions_reach_the_bot_after_release(world: tuple) -> None:
    store, settings, client = world
    assert client.handoff_instructions("c1") is None
    control.take_control(store, "c1", "olga", "review", settings=settings)
    control.release_control(store, "c1", "olga", "done", "Offer a viewing on Saturday", settings=settings)
    wait_for(lambda: client.handoff_instructions("c1") == "Offer a viewing on Saturday")
    assert client.handoff_instructions("unknown") is None


def test_sdk_reads_never_raise_when_the_store_is_gone(tmp_path: object) -> None:
    settings = Settings().replace(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", spool_dir=tmp_path / "spool"
    )
    client = ObservabilityClient(settings=settings)
    try:
        assert client.operator_messages("c1") == []
        assert client.handoff_instructions("c1") is None
        assert client.ai_may_respond("c1") is True  # nothing known yet: the bot keeps working
    finally:
        client.close(timeout=1)


# ---- Redis: trusted only while its mirror is complete ---------------------------------------------


@pytest.fixture
def redis_world(
    sqlite_store: Store,
    make_settings: Callable[..., Settings],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Store, Settings, ObservabilityClient, object]]:
    import redis

    settings = make_settings(sqlite_store.url, redis_url, auth_mode="password")
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PW)
    write_batch(
        sqlite_store,
        [["message", uuid.uuid4().hex, time.time(), "c1", "user", "hi", None, None, None]],
        settings,
    )
    r = redis.Redis.from_url(redis_url)
    client = ObservabilityClient(settings=settings)
    yield sqlite_store, settings, client, r
    client.close()
    r.close()


def test_without_the_synced_marker_the_gate_reads_the_store(redis_world: tuple) -> None:
    store, settings, client, r = redis_world
    prefix = settings.redis_prefix
    control.take_control(
        store, "c1", "olga", "review", settings=settings.replace(redis_url=None)
    )  # not published
    assert not r.exists(keys.control_synced(prefix))
    assert client.ai_may_respond("c1") is False  # Redis says nothing, but it is not trusted yet
    control.sync_gates(store, r, prefix)
    r.hdel(keys.control_conversations(prefix), "c1")  # now Redis is trusted, even when it is wrong
    wait_for(lambda: client.ai_may_respond("c1") is True)  # once the cached answer has expired


def test_pushed_operator_messages_arrive_at_once_with_redis(redis_world: tuple) -> None:
    store, settings, client, r = redis_world
    got: list[dict] = []
    client.on_operator_message(got.append)
    client.ai_may_respond("c1")  # starts the subscription
    channel = keys.control_channel(settings.redis_prefix)
    wait_for(lambda: dict(r.pubsub_numsub(channel)).get(channel.encode()), message="the SDK never subscribed")
    control.take_control(store, "c1", "olga", "review", settings=settings, redis=r)
    started = time.monotonic()
    control.send_operator_message(store, "c1", "olga", "instant", settings=settings, redis=r)
    wait_for(lambda: got, timeout=2.0)
    assert time.monotonic() - started < 1.0 and got[0]["text"] == "instant"
    control.send_operator_message(store, "c1", "olga", "next", settings=settings, redis=r)
    wait_for(lambda: len(got) >= 2, timeout=2.0)
    assert [m["text"] for m in got] == ["instant", "next"]  # each delivered once


def test_an_unreachable_redis_makes_the_gate_read_the_store(
    sqlite_store: Store, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(sqlite_store.url, "redis://127.0.0.1:1/0", auth_mode="password")
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PW)
    write_batch(
        sqlite_store,
        [["message", uuid.uuid4().hex, time.time(), "c1", "user", "hi", None, None, None]],
        settings,
    )
    store_only = settings.replace(redis_url=None)
    control.take_control(sqlite_store, "c1", "olga", "review", settings=store_only)
    client = ObservabilityClient(settings=settings)
    try:
        started = time.monotonic()
        assert client.ai_may_respond("c1") is False
        assert time.monotonic() - started < 3.0
    finally:
        client.close(timeout=1)
