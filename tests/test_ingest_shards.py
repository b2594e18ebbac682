"""Several ingest streams (`INGEST_STREAM_SHARDS`) on one Redis, and the worker's bulk drain path.

With shards the SDK spreads its batches over several streams and every worker reads them all:
every event is stored exactly once, the streams are empty and acknowledged afterwards, /metrics
counts what waits in all of them, and changing the shard count (bots and workers restarted in any
order) leaves nothing behind in a stream of the old layout. The Redis Cluster side (one shard per
master) is in `test_redis_cluster.py`.

The worker prices a stream entry per model (the price looked up once per model and batch): every
call must cost exactly what `cost_of` says.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable

import pytest
import redis as redis_lib
from support import open_pipeline, record_llm_calls, wait_for

from observability import keys
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.pricing import cost_of, pricer
from observability.worker.runner import Worker
from observability.worker.server import serve


def streams(settings: Settings) -> list[str]:
    return keys.ingest_streams(settings.redis_prefix, settings.ingest_stream_shards)


def entries_added(r: redis_lib.Redis, key: str) -> int:
    return int(r.xinfo_stream(key)["entries-added"])


def assert_drained(r: redis_lib.Redis, names: list[str]) -> None:
    for key in names:
        assert r.xlen(key) == 0, key
        assert r.xpending(key, keys.INGEST_GROUP)["pending"] == 0, key


def test_shard_names_are_distinct_slotted_and_the_single_stream_keeps_its_name() -> None:
    assert keys.ingest_streams("obs:", 1) == [keys.ingest_stream("obs:")] == ["obs:ingest"]
    names = keys.ingest_streams("obs:", 3)
    assert len(set(names)) == 3 and all(n.startswith("obs:") for n in names)
    slots = [keys.key_slot(n) for n in names]
    # one slot in each third of the slot space: one shard per master of an evenly split cluster
    assert [s * 3 // keys.SLOTS for s in slots] == [0, 1, 2]
    assert keys.key_slot("123456789") == 12739 and keys.key_slot("{user1000}.following") == 3443  # Redis' own


def test_the_setting_is_read_and_checked() -> None:
    assert Settings.from_env({"INGEST_STREAM_SHARDS": "4"}).ingest_stream_shards == 4
    assert Settings.from_env({}).ingest_stream_shards == 1
    with pytest.raises(ValueError, match="INGEST_STREAM_SHARDS"):
        Settings.from_env({"INGEST_STREAM_SHARDS": "0"})


def test_batches_spread_over_every_shard_and_each_event_is_stored_once(
    pg_url: str, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(pg_url, redis_url, ingest_stream_shards=3, sdk_batch_size=50)
    pipeline = open_pipeline(settings, worker_steps=[])
    r = redis_lib.Redis.from_url(redis_url)
    try:
        ids = record_llm_calls(pipeline.client, 0, 3_000, pause_every=100)
        pipeline.deliver()
        assert sorted(t for (t,) in pipeline.rows(schema.llm_calls, "trace_id")) == sorted(ids)
        added = [entries_added(r, key) for key in streams(settings)]
        assert all(n > 0 for n in added) and sum(added) >= 3_000 // 50, added
        assert_drained(r, streams(settings))
        assert not r.exists(keys.ingest_stream(settings.redis_prefix))  # no single stream besides
    finally:
        pipeline.close()
        r.close()


def test_two_running_workers_drain_every_shard_as_entries_arrive(
    pg_store: Store, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(pg_store.url, redis_url, ingest_stream_shards=3, worker_tick_s=0.2,
                             sdk_batch_size=20)  # fmt: skip
    workers = [Worker(Store.from_url(pg_store.url), settings, worker_id=f"w{i}", steps=[]) for i in range(2)]
    threads = [threading.Thread(target=w.run_forever, daemon=True) for w in workers]
    for t in threads:
        t.start()
    client = ObservabilityClient(settings=settings)
    r = redis_lib.Redis.from_url(redis_url)
    try:
        ids = record_llm_calls(client, 0, 2_000, pause_every=50)
        assert client.flush(20.0), client.stats()
        wait_for(lambda: len(_ids(pg_store)) == len(ids), 30.0, message=lambda: len(_ids(pg_store)))
        assert sorted(_ids(pg_store)) == sorted(ids)
        wait_for(lambda: sum(w.state["ingested_total"] for w in workers) >= len(ids), 5.0)
        assert all(w.state["ingested_total"] > 0 for w in workers)
    finally:
        client.close()
        for w in workers:
            w.stop()
        for t in threads:
            t.join(10)
    assert_drained(r, streams(settings))
    for w in workers:
        w.store.dispose()
    r.close()


def _ids(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(
            conn.execute(schema.llm_calls.select().with_only_columns(schema.llm_calls.c.trace_id)).scalars()
        )


@pytest.mark.parametrize(("bots", "workers"), [(1, 3), (3, 1), (3, 2)])
def test_changing_the_shard_count_leaves_nothing_behind(
    bots: int, workers: int, pg_store: Store, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    """Bots still on the old layout (or already on the new one) write streams the workers no
    longer (or not yet) read as their own: the workers' tick drains them too."""
    old = make_settings(pg_store.url, redis_url, ingest_stream_shards=bots, sdk_batch_size=40)
    client = ObservabilityClient(settings=old)
    ids = record_llm_calls(client, 0, 600)
    assert client.flush(10.0)
    client.close()
    new = old.replace(ingest_stream_shards=workers)
    worker = Worker(pg_store, new, worker_id="w-new", steps=[])
    try:
        worker.tick()
    finally:
        worker.close()
    assert sorted(_ids(pg_store)) == sorted(ids)
    r = redis_lib.Redis.from_url(redis_url)
    assert_drained(r, streams(old))
    r.close()


def test_metrics_count_what_waits_in_every_shard(
    pg_store: Store, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    from test_worker_http import scrape

    settings = make_settings(pg_store.url, redis_url, ingest_stream_shards=3)
    r = redis_lib.Redis.from_url(redis_url)
    worker = Worker(pg_store, settings, worker_id="w-m", steps=[])
    worker.consumer.ensure_group()
    names = streams(settings)
    for i, key in enumerate(names):
        for _ in range(i + 1):
            r.xadd(key, {"v": "1", "e": "[]"})
    r.xreadgroup(keys.INGEST_GROUP, "w-m", {names[2]: ">"}, count=2)  # delivered, not yet acknowledged
    srv = serve(pg_store, settings, redis=r, consumer=worker.consumer, port=0)
    try:
        m = scrape(srv.url)
        assert m[("obs_ingest_queue_depth", frozenset({("state", "stream")}))] == 1 + 2 + 3
        assert m[("obs_ingest_queue_depth", frozenset({("state", "pending")}))] == 2
        assert [m[("obs_ingest_stream_length", frozenset({("stream", k)}))] for k in names] == [1, 2, 3]
    finally:
        srv.stop()
        worker.close()
        r.close()


# ---- the worker prices a batch per model, as cost_of prices each call ---------------------------


def test_the_per_model_pricer_prices_as_cost_of() -> None:
    rng = random.Random(5)
    models = [("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5"), (None, "claude-opus-4-1"),
              ("google", "gemini-2.5-flash"), ("google", "gemini-2.5-pro"), ("nobody", "no-such-model")]  # fmt: skip
    for _ in range(20_000):
        provider, model = rng.choice(models)
        it = rng.choice([0, 1, 1000, 150_000, 250_000, int(rng.lognormvariate(7, 2))])
        call = (it, rng.randrange(5000), rng.choice([0, rng.randrange(it + 5)]),
                rng.choice([0, rng.randrange(it + 5)]), rng.random() < 0.2)  # fmt: skip
        want = cost_of(provider, model, *call[:4], response_cache_hit=call[4])
        got = pricer(provider, model)(*call)
        assert got == want and [math.copysign(1, v) for v in got[:2]] == [
            math.copysign(1, v) for v in want[:2]
        ]
