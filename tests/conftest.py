"""Shared fixtures: real SQLite, PostgreSQL and Redis, each test with its own schema / key prefix.

PostgreSQL and Redis come from TEST_DATABASE_URL and TEST_REDIS_URL (set by `.ci/run`). Without
them the tests that need them skip, unless REQUIRE_SERVICES=1, where they fail instead.

Plain helpers (wait_for, the TCP proxy, the pipeline, the alerting peers) live in `tests/support/`;
the alerting fixtures are the plugin `support.alerting_fixtures`, registered below.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from support.pipeline import Pipeline, open_pipeline  # noqa: E402
from support.process import subprocess_env  # noqa: E402

from observability.settings import Settings, test_environment  # noqa: E402
from observability.store import Store  # noqa: E402

pytest_plugins = ["support.alerting_fixtures", "support.api_fixtures"]
__all__ = ["subprocess_env"]  # still importable from here for older test files

TEST_ENV = test_environment()

# argon2 at its smallest cost: these tests check behaviour, not hash strength. Set before any
# settings are read, and inherited by the worker, CLI and console processes the tests start.
os.environ.setdefault("PASSWORD_HASH_TIME_COST", "1")
os.environ.setdefault("PASSWORD_HASH_MEMORY_KIB", "1024")


def _need(what: str, value: str | None) -> str:
    if value:
        return value
    if TEST_ENV["require_services"]:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not configured")
    pytest.skip(f"{what} not configured")


# ---- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A database of our own for this test session, dropped at the end."""
    base = _need("TEST_DATABASE_URL (PostgreSQL)", TEST_ENV["database_url"])
    url = sa.make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"obs_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if TEST_ENV["require_services"]:
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database_url: str) -> Iterator[str]:
    """A fresh schema in the session database; its URL sets search_path to it."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(pg_database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with eng.connect() as c:
        c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.from_url(pg_url)
    store.migrate()
    yield store
    store.dispose()


# ---- SQLite -----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    store = Store.from_url(sqlite_url)
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Run the test on both stores."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.from_url(store_url)
    s.migrate()
    yield s
    s.dispose()


# ---- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    url = _need("TEST_REDIS_URL (Redis)", TEST_ENV["redis_url"])
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if TEST_ENV["require_services"]:
            pytest.fail(f"Redis unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return url


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"obstest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    url = TEST_ENV["redis_url"]
    if url:
        import redis

        try:
            r = redis.Redis.from_url(url, socket_connect_timeout=2)
            keys = list(r.scan_iter(f"{prefix}*", count=1000))
            if keys:
                r.delete(*keys)
        except redis.RedisError:
            pass


# ---- settings ---------------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path, redis_prefix: str):
    """Settings for a store (and optionally Redis) with a private spool, lock file and prefix."""

    def make(database_url: str, redis_url: str | None = None, **overrides) -> Settings:
        base = Settings().replace(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            spool_dir=tmp_path / "spool",
            worker_lock_file=tmp_path / "leader.lock",
            otlp_ingest_token_file=tmp_path / "otlp_ingest.token",
            sdk_flush_interval_s=0.05,
            sdk_retry_backoff_s=0.01,
            sdk_max_retries=1,
            worker_claim_idle_ms=500,
            auth_mode="none",
        )
        return base.replace(**overrides) if overrides else base

    return make


# ---- the ingest pipeline --------------------------------------------------------------------------


@pytest.fixture
def make_pipeline(request: pytest.FixtureRequest, make_settings):  # noqa: ANN001, ANN201
    """`make_pipeline(kind, worker_steps=None, **settings)` for kind in `support.PIPELINE_KINDS`:
    SDK → SQLite, SDK → PostgreSQL, or SDK → Redis stream → worker → PostgreSQL; closed afterwards."""
    opened: list[Pipeline] = []

    def make(kind: str, worker_steps=None, **overrides) -> Pipeline:  # noqa: ANN001
        if kind == "sqlite":
            settings = make_settings(request.getfixturevalue("sqlite_url"), **overrides)
        elif kind == "postgres":
            settings = make_settings(request.getfixturevalue("pg_url"), **overrides)
        elif kind == "redis+postgres":
            settings = make_settings(
                request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url"), **overrides
            )
        else:
            raise ValueError(f"unknown pipeline kind {kind!r}")
        pipeline = open_pipeline(settings, worker_steps=worker_steps)
        opened.append(pipeline)
        return pipeline

    yield make
    for pipeline in opened:
        pipeline.close()
