# ruff: noqa: E402  (tests/ goes on sys.path before the imports)
"""Redis Cluster: with REDIS_CLUSTER=true the ingest stream, its consumer group, the control keys
and their pub/sub channel work on a cluster as on one Redis: events recorded by a bot reach the
store through the worker, exactly once, and a take-over reaches a bot's gate through the cluster.

Real servers: the fixture starts 3 masters (`redis-server --cluster-enabled yes`) on free
127.0.0.1 ports, joins them with `redis-cli --cluster create`, and stops and removes them after.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.clusters import RedisClusterInfo, redis_cluster
from support.net import free_port
from support.pipeline import open_pipeline, record_llm_calls
from support.process import doomed_worker_script, subprocess_env
from support.waiting import wait_for

from observability import auth, control, keys, redis_client
from observability import events as ev
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.worker.runner import Worker

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterInfo]:
    with redis_cluster(masters=3) as c:
        yield c


@pytest.fixture
def cluster_settings(
    cluster: RedisClusterInfo, make_settings: Callable[..., Settings], pg_url: str
) -> Settings:
    return make_settings(pg_url, cluster.url, redis_cluster=True)


def test_connect_returns_a_cluster_client_that_spreads_keys_over_three_masters(
    cluster_settings: Settings,
) -> None:
    from redis.cluster import RedisCluster

    client = redis_client.connect(cluster_settings)
    assert isinstance(client._get(), RedisCluster)
    masters = {(n.host, n.port) for n in client.get_primaries()}
    assert len(masters) == 3
    for i in range(30):
        client.set(f"{cluster_settings.redis_prefix}spread:{i}", i)
    owners = {client.get_node_from_key(f"{cluster_settings.redis_prefix}spread:{i}").port for i in range(30)}
    assert len(owners) == 3  # plain keys land on every master: it is a real cluster
    client.close()


def test_keys_used_together_share_one_slot(cluster_settings: Settings) -> None:
    client = redis_client.connect(cluster_settings)
    prefix = cluster_settings.redis_prefix
    together = [keys.control_system(prefix), keys.control_conversations(prefix), keys.control_synced(prefix)]
    assert len({client.keyslot(k) for k in together}) == 1
    assert all(k.startswith(prefix) for k in together)
    with pytest.raises(ValueError, match="braces"):
        keys.slotted("obs{x}:", keys.CONTROL, "system")
    client.close()


def test_events_go_sdk_to_cluster_to_worker_to_store_exactly_once(cluster_settings: Settings) -> None:
    pipeline = open_pipeline(cluster_settings, worker_steps=[])
    try:
        ids = record_llm_calls(pipeline.client, 0, 2_000)
        pipeline.deliver()
        assert pipeline.count(schema.llm_calls) == 2_000
        assert sorted(r[0] for r in pipeline.rows(schema.llm_calls, "trace_id")) == sorted(ids)
        stream = redis_client.connect(cluster_settings)
        key = keys.ingest_stream(cluster_settings.redis_prefix)
        assert stream.xlen(key) == 0  # acknowledged and deleted after the commit
        assert stream.xpending(key, keys.INGEST_GROUP)["pending"] == 0
        # the same events sent again (a bot retried after a lost reply) store nothing twice
        at = datetime.now(UTC)
        for _ in range(2):
            for i in range(5):
                pipeline.client.record_llm_call(
                    "claude-sonnet-4-5", "anthropic", 10, 2, 40.0, trace_id=f"again-{i}", timestamp=at
                )
            pipeline.deliver()
        assert pipeline.count(schema.llm_calls) == 2_005
        stream.close()
    finally:
        pipeline.close()


def test_a_take_over_reaches_the_gate_through_the_cluster(cluster_settings: Settings, pg_url: str) -> None:
    store = Store.from_url(pg_url)
    store.migrate()
    auth.create_user(store, "olga", auth.OPERATOR, "operator-password")
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    hello = ev.message(
        uuid.uuid4().hex,
        time.time(),
        conversation_id=cid,
        role="user",
        text="hi",
        bot="seller",
        account_id=None,
    )
    write_batch(store, [hello], cluster_settings)
    console = redis_client.connect(cluster_settings)
    control.sync_gates(store, console, cluster_settings.redis_prefix)
    # the bot keeps answers for a minute: only the cluster's pub/sub can close its gate in time
    bot = ObservabilityClient(settings=cluster_settings.replace(control_cache_s=60.0))
    listener = console.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(keys.control_channel(cluster_settings.redis_prefix))
    try:
        assert bot.ai_may_respond(cid)
        control.take_control(store, cid, "olga", "review", settings=cluster_settings, redis=console)
        wait_for(lambda: not bot.ai_may_respond(cid), timeout=5, message="the bot's gate stayed open")
        assert console.hget(keys.control_conversations(cluster_settings.redis_prefix), cid) == b"human"
        got = wait_for(lambda: listener.get_message(timeout=0.1), timeout=5)
        assert json.loads(got["data"]) == {"conversation_id": cid, "state": "human"}

        control.release_control(store, cid, "olga", "done", settings=cluster_settings, redis=console)
        wait_for(lambda: bot.ai_may_respond(cid), timeout=5, message="the bot's gate stayed closed")
    finally:
        listener.close()
        bot.close()
        console.close()
        store.dispose()


def test_a_bot_starts_and_spools_while_the_cluster_is_unreachable(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    settings = make_settings(pg_url, f"redis://127.0.0.1:{free_port()}/0", redis_cluster=True)
    client = ObservabilityClient(settings=settings)  # no exception although no node answers
    try:
        client.record_llm_call("claude-sonnet-4-5", "anthropic", 10, 2, 40.0)
        wait_for(lambda: client.stats()["spilled"] >= 1, timeout=10, message=client.stats)
        assert client.ai_may_respond("any-conversation")  # gates fall back to the store
    finally:
        client.close()


# ---- several ingest streams spread over the masters (INGEST_STREAM_SHARDS) ----------------------


@pytest.fixture
def sharded(cluster_settings: Settings) -> Settings:
    return cluster_settings.replace(ingest_stream_shards=3, sdk_batch_size=50)


def _streams(settings: Settings) -> list[str]:
    return keys.ingest_streams(settings.redis_prefix, settings.ingest_stream_shards)


def test_three_shards_sit_on_three_masters_and_every_event_is_stored_once(sharded: Settings) -> None:
    pipeline = open_pipeline(sharded, worker_steps=[])
    client = redis_client.connect(sharded)
    try:
        owners = {client.get_node_from_key(k).port for k in _streams(sharded)}
        assert len(owners) == 3, "one stream on each master"
        ids = record_llm_calls(pipeline.client, 0, 3_000, pause_every=100)
        pipeline.deliver()
        assert sorted(r[0] for r in pipeline.rows(schema.llm_calls, "trace_id")) == sorted(ids)
        for key in _streams(sharded):
            assert int(client.xinfo_stream(key)["entries-added"]) > 0, f"the SDK wrote to {key}"
            assert client.xlen(key) == 0 and client.xpending(key, keys.INGEST_GROUP)["pending"] == 0
    finally:
        client.close()
        pipeline.close()


DOOMED_CLUSTER_WORKER = doomed_worker_script("redis.cluster.ClusterPipeline")


@pytest.mark.parametrize("kill_at", ["before_ack", "mid_write"])
def test_a_worker_killed_mid_batch_on_three_shards_loses_and_duplicates_nothing(
    kill_at: str, sharded: Settings, pg_url: str
) -> None:
    settings = sharded.replace(worker_claim_idle_ms=300)
    store = Store.from_url(pg_url)
    store.migrate()
    client = ObservabilityClient(settings=settings)
    ids = record_llm_calls(client, 0, 1_500)
    assert client.flush(10.0)
    client.close()
    env = subprocess_env(DATABASE_URL=pg_url, REDIS_URL=settings.redis_url, REDIS_CLUSTER="true",
                         REDIS_PREFIX=settings.redis_prefix, INGEST_STREAM_SHARDS="3", KILL_AT=kill_at)  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", DOOMED_CLUSTER_WORKER], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    r = redis_client.connect(settings)

    def stored() -> list[str]:
        with store.connect() as conn:
            return list(conn.execute(sa.select(schema.llm_calls.c.trace_id)).scalars())

    try:
        pending = {k: r.xpending(k, keys.INGEST_GROUP)["pending"] for k in _streams(settings)}
        assert all(n > 0 for n in pending.values()), f"the dead worker held entries of every shard: {pending}"
        assert len(stored()) == {"before_ack": len(ids), "mid_write": 0}[kill_at]
        survivor = Worker(store, settings, worker_id="survivor", steps=[])
        survivor.drain()  # the dead worker's entries are not idle long enough to be taken yet

        def settled() -> bool:
            survivor.drain()  # takes them once they have been idle WORKER_CLAIM_IDLE_MS
            return not any(r.xpending(k, keys.INGEST_GROUP)["pending"] for k in _streams(settings))

        wait_for(settled, timeout=20, message=lambda: len(stored()))
        survivor.close()
        assert sorted(stored()) == sorted(ids)
        assert all(r.xlen(k) == 0 for k in _streams(settings))
    finally:
        r.close()
        store.dispose()
