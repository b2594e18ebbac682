# ruff: noqa: E402  (tests/ goes on sys.path before the imports)
"""Read replicas: with DATABASE_READ_URL set, the console's queries read a PostgreSQL hot standby
while bots and the worker write to the primary, and every page says so when the standby lags more
than REPLICA_MAX_LAG_S.

Real servers: the fixture makes a private primary (initdb) on a free port, a standby of it with
`pg_basebackup -R` on another, streaming, and removes both afterwards.
"""

from __future__ import annotations

import glob
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from streamlit.testing.v1 import AppTest
from support.clusters import PgPair, pg_primary_and_standby
from support.waiting import wait_for

from observability.analytics.llm_observability import LLMObservabilityService
from observability.sdk import ObservabilityClient
from observability.settings import Settings, reset_settings_cache
from observability.store import Store, schema
from observability.ui import common

pytestmark = pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/initdb") and not shutil.which("initdb"),
    reason="PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) are not installed",
)

MAX_LAG_S = 1.0


@pytest.fixture(scope="module")
def pair() -> Iterator[PgPair]:
    with pg_primary_and_standby() as p:
        yield p


@pytest.fixture
def stores(pair: PgPair, tmp_path: Path) -> Iterator[tuple[Store, Store, Settings]]:
    settings = Settings().replace(
        database_url=pair.primary_url,
        database_read_url=pair.standby_url,
        replica_max_lag_s=MAX_LAG_S,
        spool_dir=tmp_path / "spool",
        auth_mode="none",
    )
    primary = Store.from_url(pair.primary_url)
    primary.migrate()
    replica = Store.for_reads(settings)
    yield primary, replica, settings
    with primary.begin() as conn:
        conn.execute(sa.delete(schema.llm_calls))
    primary.dispose()
    replica.dispose()


def _count(store: Store) -> int:
    with store.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.llm_calls)).scalar_one()


def _record(settings: Settings, n: int) -> None:
    client = ObservabilityClient(settings=settings)
    for i in range(n):
        client.record_llm_call("claude-sonnet-4-5", "anthropic", 100, 20, 300.0 + i, bot="lead_bot")
    assert client.flush(10.0), client.stats()
    client.close()


def _token_page(monkeypatch: pytest.MonkeyPatch, pair: PgPair) -> AppTest:
    monkeypatch.setenv("DATABASE_URL", pair.primary_url)
    monkeypatch.setenv("DATABASE_READ_URL", pair.standby_url)
    monkeypatch.setenv("REPLICA_MAX_LAG_S", str(MAX_LAG_S))
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    at = AppTest.from_file(str(ROOT / "pages/token_analytics.py"), default_timeout=60)
    at.query_params["range"] = "1h"
    at.run()
    assert not at.exception, at.exception
    return at


def _requests(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label.startswith("LLM requests"))


def _lag_notes(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "read replica" in w.value]


def test_the_standby_reports_its_lag_and_the_primary_none(stores: tuple[Store, Store, Settings]) -> None:
    primary, replica, _ = stores
    assert primary.replica_lag_s() is None
    assert replica.url != primary.url
    assert wait_for(lambda: replica.replica_lag_s() == 0.0, timeout=20, message=replica.replica_lag_s)


def test_writes_go_to_the_primary_and_reads_to_the_replica_which_says_when_it_lags(
    pair: PgPair, stores: tuple[Store, Store, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, replica, settings = stores
    with pytest.raises(sa.exc.InternalError, match="read-only"):  # a standby takes no writes
        with replica.engine.begin() as conn:
            conn.execute(sa.delete(schema.llm_calls))

    _record(settings, 3)  # a bot writes through the primary
    wait_for(lambda: _count(replica) == 3, timeout=20, message=lambda: f"replica has {_count(replica)} of 3")
    at = _token_page(monkeypatch, pair)
    assert _requests(at) == "3"
    assert not _lag_notes(at)

    # replay stops on the standby: new writes reach the primary only, and the page keeps reading the replica
    with replica.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SELECT pg_wal_replay_pause()"))
        wait_for(lambda: conn.execute(sa.text("SELECT pg_get_wal_replay_pause_state()")).scalar() == "paused")
    try:
        _record(settings, 2)
        assert _count(primary) == 5
        lag = wait_for(
            lambda: (replica.replica_lag_s() or 0) > MAX_LAG_S and replica.replica_lag_s(),
            timeout=20,
            message=replica.replica_lag_s,
        )
        assert lag < 60
        at = _token_page(monkeypatch, pair)
        assert _requests(at) == "3"  # the replica's figure, not the primary's 5
        assert LLMObservabilityService(replica).dashboard(3600).total_requests == 3
        (note,) = _lag_notes(at)
        assert "behind the primary" in note and "REPLICA_MAX_LAG_S = 1 s" in note
    finally:
        with replica.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SELECT pg_wal_replay_resume()"))

    wait_for(lambda: replica.replica_lag_s() == 0.0, timeout=20, message=replica.replica_lag_s)
    at = _token_page(monkeypatch, pair)
    assert _requests(at) == "5"
    assert not _lag_notes(at)
    reset_settings_cache()


def test_pages_say_when_the_replica_cannot_be_reached(
    pair: PgPair, stores: tuple[Store, Store, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.net import free_port

    monkeypatch.setenv("DATABASE_URL", pair.primary_url)
    monkeypatch.setenv("DATABASE_READ_URL", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    at = AppTest.from_file(str(ROOT / "pages/token_analytics.py"), default_timeout=60)
    at.run()
    assert any("cannot be reached" in w.value for w in at.warning)
    reset_settings_cache()
