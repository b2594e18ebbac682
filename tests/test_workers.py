"""Workers: many drain, exactly one leads, and they start and stop cleanly.

Two workers against the same store and Redis stream both take entries and exactly one of them
holds the leader lock (a PostgreSQL advisory lock, or a lock file next to the SQLite database);
when the leader goes away, on purpose or killed, the other takes over at its next tick.
`python -m observability.worker --once` runs one full tick and exits 0; the long-running worker
drains what is left and exits 0 on SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa
from support import free_port, subprocess_env, wait_for

from observability import keys
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.timeutil import utcnow
from observability.worker.health import HealthChecker, max_worker_lag_s
from observability.worker.leader import LeaderLock
from observability.worker.metrics import StoreCollector
from observability.worker.runner import STEPS, Worker


def count(store: Store, table: sa.Table) -> int:
    with store.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def fill_stream(settings: Settings, entries: int, per_entry: int) -> int:
    """Put `entries` stream entries of `per_entry` LLM calls each, through the SDK."""
    client = ObservabilityClient(
        settings=settings.replace(sdk_batch_size=per_entry, sdk_flush_interval_s=5.0)
    )
    for i in range(entries * per_entry):  # the SDK closes a batch (one stream entry) on size
        client.record_llm_call("claude-haiku-4-5", "anthropic", 200, 40, 120.0 + i % 50, bot="lead")
    assert client.flush(20.0)
    client.close()
    return entries * per_entry


@pytest.fixture(params=["sqlite", "postgres"])
def shared(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], redis_url: str
) -> Iterator[tuple[Store, Settings]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    settings = make_settings(url, redis_url, worker_tick_s=0.1, worker_batch_entries=3)
    store = Store.from_url(url)
    store.migrate()
    yield store, settings
    store.dispose()


# ---- leadership -----------------------------------------------------------------------------------


def test_exactly_one_lock_holder_and_the_next_takes_over(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(store.url)
    a, b = LeaderLock(store, settings), LeaderLock(Store.from_url(store.url), settings)
    assert a.try_acquire() is True
    assert b.try_acquire() is False
    assert a.try_acquire() is True, "the holder keeps it tick after tick"
    a.release()
    assert b.try_acquire() is True
    assert a.try_acquire() is False
    b.release()
    b.store.dispose()


def test_two_workers_both_drain_and_exactly_one_leads(shared: tuple[Store, Settings]) -> None:
    store, settings = shared
    steps = [s for s in STEPS if s.name in ("rollups", "heartbeat")]
    workers = [Worker(Store.from_url(store.url), settings, worker_id=f"w{i}", steps=steps) for i in range(2)]
    threads = [threading.Thread(target=w.run_forever, daemon=True) for w in workers]
    for t in threads:
        t.start()
    r = redis_lib.Redis.from_url(settings.redis_url)
    key = keys.ingest_stream(settings.redis_prefix)

    def consumers() -> set[str]:
        try:
            return {c["name"].decode() for c in r.xinfo_consumers(key, keys.INGEST_GROUP)}
        except redis_lib.ResponseError:  # the group does not exist yet
            return set()

    try:
        # both read the stream before anything is in it, so neither finds a backlog to itself
        wait_for(lambda: consumers() == {w.worker_id for w in workers}, 10.0, message=consumers)
        total = fill_stream(
            settings, entries=150, per_entry=8
        )  # many small entries: a worker slowed by the machine still gets some
        wait_for(
            lambda: count(store, schema.llm_calls) == total,
            20.0,
            message=lambda: count(store, schema.llm_calls),
        )
        wait_for(lambda: sum(w.lock.held for w in workers) == 1)
        # each worker counts a batch just after its commit: wait for the counts to catch up
        wait_for(lambda: sum(w.state["ingested_total"] for w in workers) >= total, 5.0)
        ingested = [w.state["ingested_total"] for w in workers]
        assert all(n > 0 for n in ingested), f"both workers drained: {ingested}"
        later = utcnow() + timedelta(seconds=3 * settings.worker_tick_s)
        wait_for(lambda: _ticked_since(store, later) == {w.worker_id for w in workers}, 20.0)
        assert sum(w.lock.held for w in workers) == 1, "several ticks later, still exactly one leader"
        assert len(_heartbeat_leaders(store)) == 1
        leader = next(w for w in workers if w.lock.held)
        other = next(w for w in workers if w is not leader)

        leader.stop()
        threads[workers.index(leader)].join(10)
        assert not leader.lock.held
        wait_for(lambda: other.lock.held, 5.0, message="the other worker takes over at its next tick")
        wait_for(lambda: _heartbeat_leaders(store) == {other.worker_id}, 5.0)
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(10)
    # the leader's rollup step saw every call exactly once
    with store.connect() as conn:
        rolled = conn.execute(sa.select(sa.func.sum(schema.rollup_llm_minute.c["count"]))).scalar()
    assert rolled == total
    assert r.xlen(key) == 0 and r.xpending(key, keys.INGEST_GROUP)["pending"] == 0
    for w in workers:
        w.store.dispose()


def _heartbeat_leaders(store: Store) -> set[str]:
    hb = schema.worker_heartbeats
    with store.connect() as conn:
        return set(conn.execute(sa.select(hb.c.worker_id).where(hb.c.is_leader == sa.true())).scalars())


def _ticked_since(store: Store, since: datetime) -> set[str]:
    hb = schema.worker_heartbeats
    with store.connect() as conn:
        return set(conn.execute(sa.select(hb.c.worker_id).where(hb.c.last_tick_at >= since)).scalars())


# ---- the worker as a process ------------------------------------------------------------------------


def worker_env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        REDIS_PREFIX=settings.redis_prefix,
        SPOOL_DIR=str(tmp_path / "worker-spool"),
        WORKER_LOCK_FILE=str(tmp_path / "worker.lock"),
        WORKER_HTTP_PORT=str(free_port()),
        WORKER_CLAIM_IDLE_MS="500",
        **extra,
    )


def test_worker_once_runs_a_full_tick_and_exits_0(shared: tuple[Store, Settings], tmp_path: Path) -> None:
    store, settings = shared
    total = fill_stream(settings, entries=10, per_entry=30)
    proc = subprocess.run([sys.executable, "-m", "observability.worker", "--once"],
                          env=worker_env(settings, tmp_path), capture_output=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert count(store, schema.llm_calls) == total, "one tick drains the whole stream"
    with store.connect() as conn:
        loads = conn.execute(
            sa.select(schema.system_metrics.c.value).where(
                schema.system_metrics.c.metric_name == "system_load"
            )
        ).all()
        rolled = conn.execute(sa.select(sa.func.sum(schema.rollup_llm_minute.c["count"]))).scalar()
    assert len(loads) == 1 and 0.0 <= loads[0][0] <= 100.0, "the host's CPU load is recorded each tick"
    assert rolled == total, "the leader's rollups ran in the same tick"
    assert count(store, schema.worker_heartbeats) == 1


def test_running_worker_drains_then_exits_0_on_sigterm(
    shared: tuple[Store, Settings], tmp_path: Path
) -> None:
    store, settings = shared
    proc = subprocess.Popen([sys.executable, "-m", "observability.worker"], env=worker_env(settings, tmp_path, WORKER_TICK_S="0.2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        first = fill_stream(settings, entries=5, per_entry=20)
        wait_for(lambda: count(store, schema.llm_calls) == first, 30.0, message="the running worker drains")
        wait_for(lambda: _heartbeat_leaders(store), 10.0, message="and leads, being alone")
        second = fill_stream(settings, entries=20, per_entry=50)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert count(store, schema.llm_calls) == first + second, "what was in the stream is stored before exit"
    r = redis_lib.Redis.from_url(settings.redis_url)
    assert r.xpending(keys.ingest_stream(settings.redis_prefix), keys.INGEST_GROUP)["pending"] == 0


def test_a_killed_leader_is_replaced_at_the_next_tick(
    shared: tuple[Store, Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, settings = shared
    proc = subprocess.Popen([sys.executable, "-m", "observability.worker"], env=worker_env(settings, tmp_path, WORKER_TICK_S="0.2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    heartbeat = [s for s in STEPS if s.name == "heartbeat"]
    survivor = Worker(Store.from_url(store.url), settings, worker_id="survivor", steps=heartbeat)
    caplog.set_level(logging.INFO, logger="observability.worker")
    try:
        wait_for(lambda: _heartbeat_leaders(store), 30.0, message="the process worker leads first")
        [dead] = _heartbeat_leaders(store)
        survivor.tick()
        assert not survivor.lock.held
        assert _live_leaders(store, settings) == ({dead}, dead), "/metrics and /healthz name the leader"
        proc.kill()  # SIGKILL: no clean-up; the lock must still be freed by the OS / the server
        proc.wait(10)
        out = proc.stdout.read().decode()
        assert f"worker {dead} now leads" in out, out[-2000:]
        # until somebody takes over, the dead leader's flag stays; once older than the allowed lag it
        # no longer counts as a leader
        late = utcnow() + timedelta(seconds=max_worker_lag_s(settings) + 1)
        assert _live_leaders(store, settings, now=late) == (set(), None)
        wait_for(lambda: (survivor.tick(), survivor.lock.held)[1], 10.0, interval=0.1,
                 message="the survivor takes the lead at its next tick")  # fmt: skip
        assert "worker survivor now leads" in caplog.text
        assert _heartbeat_leaders(store) == {"survivor"}, (
            "the new leader's heartbeat clears the dead one's flag"
        )
        assert _live_leaders(store, settings) == ({"survivor"}, "survivor")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        survivor.close()
        survivor.store.dispose()
    assert "worker survivor no longer leads" in caplog.text


def _live_leaders(
    store: Store, settings: Settings, now: datetime | None = None
) -> tuple[set[str], str | None]:
    """(workers /metrics labels leader="true", the leader /healthz names)."""
    clock = (lambda: now) if now is not None else utcnow
    leaders = {
        s.labels["worker_id"]
        for fam in StoreCollector(store, settings, now=clock).collect()
        if fam.name == "obs_worker_heartbeat_age_seconds"
        for s in fam.samples
        if s.labels["leader"] == "true"
    }
    checker = HealthChecker(store, settings, now=clock)
    try:
        _, doc = checker.check()
    finally:
        checker.close()
    return leaders, doc["checks"]["worker"]["leader"]


def test_the_leader_lock_never_leaves_a_transaction_open(
    pg_store: Store, make_settings: Callable[..., Settings]
) -> None:
    """An idle-in-transaction session would hold back VACUUM on the whole database for days."""
    lock = LeaderLock(pg_store, make_settings(pg_store.url))
    for _ in range(3):
        assert lock.try_acquire()
    with pg_store.connect() as conn:  # the session holding the leader's advisory lock
        states = conn.execute(
            sa.text("SELECT a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"),
            {"k": pg_store.lock_key("leader")},
        ).scalars().all()  # fmt: skip
    assert states == ["idle"]
    lock.release()
