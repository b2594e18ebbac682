"""A Redis that would lose the undrained ingest backlog on a restart is visible: /healthz says
"degraded" with the reason (still 200: everything works), /metrics has obs_redis_persistent 0, and the
Admin page warns.

The test Redis (TEST_REDIS_URL) runs without persistence (`--save "" --appendonly no`): the
degraded side. For the other sides the test starts private redis-servers on free ports in a temp
directory: one with `--appendonly yes`, one with CONFIG disabled (as managed Redis often has it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from streamlit.testing.v1 import AppTest
from support import ROOT, free_port, wait_for

from observability import redis_client
from observability.settings import Settings, reset_settings_cache
from observability.store import Store
from observability.ui import common
from observability.worker.health import HealthChecker
from observability.worker.metrics import StoreCollector

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def start_redis(tmp_path: Path, *args: str) -> Iterator[str]:
    """A private redis-server on a free port, its files in `tmp_path`; stopped after the test."""
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--save",
            "",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=0.5)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis_lib.RedisError:
            return False

    try:
        assert wait_for(answers, 10.0), "the private redis-server did not start"
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[str]:
    yield from start_redis(tmp_path, "--appendonly", "yes")


@pytest.fixture
def redis_without_config(tmp_path: Path) -> Iterator[str]:
    yield from start_redis(tmp_path, "--appendonly", "no", "--rename-command", "CONFIG", "")


def health(store: Store, settings: Settings) -> tuple[int, dict]:
    r = redis_client.connect(settings)
    checker = HealthChecker(store, settings, redis=r)
    try:
        resp = checker.response()
        return resp.status, json.loads(resp.body)
    finally:
        checker.close()
        r.close()


def test_a_redis_without_persistence_makes_healthz_degraded_with_the_reason(
    sqlite_store: Store, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sqlite_store.url, redis_url)
    status, doc = health(sqlite_store, settings)
    assert status == 200, doc  # it works: a probe must not restart the worker for it
    assert doc["status"] == "degraded", doc
    reason = doc["checks"]["redis"]["persistence"]["reason"]
    assert reason in doc["reasons"] and "Redis has no persistence (appendonly no" in reason
    assert "loses the events still waiting in the ingest stream" in reason and "appendonly yes" in reason


def test_a_redis_with_an_append_only_file_is_ok(
    sqlite_store: Store, durable_redis: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sqlite_store.url, durable_redis)
    p = redis_client.persistence(redis_client.connect(settings))
    assert p.durable is True and p.source == "CONFIG" and p.reason is None
    status, doc = health(sqlite_store, settings)
    assert status == 200 and doc["checks"]["redis"]["persistence"]["durable"] is True
    assert doc["status"] == "ok" and doc["reasons"] == [], doc  # a fresh checker: workers in grace


def test_a_redis_with_config_disabled_is_judged_by_info_persistence(
    sqlite_store: Store, redis_without_config: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sqlite_store.url, redis_without_config)
    client = redis_client.connect(settings)
    with pytest.raises(redis_lib.ResponseError):
        client.config_get("appendonly")  # really disabled
    p = redis_client.persistence(client)
    assert p.durable is False and p.source == "INFO"
    assert p.reason is not None and "aof_enabled:0" in p.reason
    status, doc = health(sqlite_store, settings)
    assert status == 200 and doc["status"] == "degraded" and p.reason in doc["reasons"]


def test_metrics_say_whether_redis_persists(
    sqlite_store: Store, redis_url: str, durable_redis: str, make_settings: Callable[..., Settings]
) -> None:
    def persistent(url: str) -> float:
        settings = make_settings(sqlite_store.url, url)
        collector = StoreCollector(sqlite_store, settings, redis=redis_client.connect(settings))
        fams = {f.name: f for f in collector.collect()}
        return fams["obs_redis_persistent"].samples[0].value

    assert persistent(redis_url) == 0
    assert persistent(durable_redis) == 1


@pytest.mark.parametrize("durable", [False, True])
def test_the_admin_page_warns_when_redis_would_lose_the_backlog(
    durable: bool, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue("durable_redis" if durable else "redis_url")
    db = f"sqlite:///{tmp_path / 'console.db'}"
    Store.from_url(db).migrate()
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    try:
        at = AppTest.from_file(str(ROOT / "pages/admin.py"), default_timeout=60).run()
        assert not at.exception, at.exception
        warnings = [w.value for w in at.warning]
        if durable:
            assert not any("Redis" in w for w in warnings), warnings
        else:
            assert any("Redis is at risk of losing events" in w and "appendonly yes" in w for w in warnings)
    finally:
        reset_settings_cache()
        common.clear_caches()
