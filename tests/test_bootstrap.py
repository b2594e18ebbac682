"""`python -m observability.bootstrap [--demo]`: migrate, registered steps, demo data once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ROOT, subprocess_env

from observability.demo import bootstrap
from observability.store import Store


def run_bootstrap(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(DATABASE_URL=url, SPOOL_DIR=str(tmp_path / "spool"), REDIS_URL="",
                         OTLP_INGEST_TOKEN="", OTLP_INGEST_TOKEN_FILE=str(tmp_path / "otlp.token"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "observability.bootstrap", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def count(url: str, table: str) -> int:
    store = Store.from_url(url)
    try:
        with store.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    finally:
        store.dispose()


def test_bootstrap_demo_on_a_fresh_sqlite_path_then_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'nested' / 'store.db'}"  # not even the directory exists
    first = run_bootstrap(url, tmp_path, "--demo", "--demo-hours", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "migrate: schema at revision" in first.stdout
    assert "demo_data: backfilled 1 h" in first.stdout
    assert "bootstrap: ready" in first.stdout
    calls = count(url, "llm_calls")
    assert calls > 1000 and count(url, "messages") > 1000 and count(url, "rollup_llm_minute") > 0
    # the demo gets a budget its traffic can be measured against, which a manager may change later
    from observability.analytics.llm_observability import LLMObservabilityService

    demo_store = Store.from_url(url)
    assert LLMObservabilityService(demo_store).monthly_budget() == bootstrap.DEMO_BUDGET_USD
    demo_store.dispose()

    again = run_bootstrap(url, tmp_path, "--demo")  # never backfills twice
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"skipped: the store already holds {calls:,} LLM calls" in again.stdout
    assert count(url, "llm_calls") == calls


def test_bootstrap_without_demo_only_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = run_bootstrap(url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo_data: skipped (no --demo)" in done.stdout
    assert count(url, "llm_calls") == 0 and count(url, "alert_rules") >= 0  # the schema is there


def test_default_demo_is_24_hours_and_steps_are_registered_in_order() -> None:
    assert bootstrap.DEMO_HOURS == 24
    names = [s.name for s in bootstrap.STEPS]
    assert names[0] == "migrate" and names[-1] == "demo_data"
    assert len(names) == len(set(names))
    assert bootstrap.STEPS[0].required and bootstrap.STEPS[-1].demo_only


def test_a_failing_step_is_reported_and_the_others_still_run(sqlite_store: Store, make_settings) -> None:  # noqa: ANN001
    ran: list[str] = []

    def ok(ctx: bootstrap.BootstrapContext) -> str:
        ran.append("ok")
        return "seeded 3 things"

    def broken(ctx: bootstrap.BootstrapContext) -> None:
        raise RuntimeError("channel config missing")

    lines: list[str] = []
    ctx = bootstrap.BootstrapContext(sqlite_store, make_settings(sqlite_store.url), echo=lines.append)
    steps = [
        bootstrap.BootstrapStep("broken", broken),
        bootstrap.BootstrapStep("ok", ok),
        bootstrap.BootstrapStep("demo", ok, demo_only=True),
    ]
    outcomes = bootstrap.run(ctx, steps)
    assert outcomes["broken"].startswith("error: RuntimeError: channel config missing")
    assert outcomes["ok"] == "seeded 3 things" and ran == ["ok"]
    assert outcomes["demo"] == "skipped (no --demo)"
    assert any("broken: FAILED" in line for line in lines)

    ran.clear()
    outcomes = bootstrap.run(ctx, [bootstrap.BootstrapStep("first", broken, required=True), steps[1]])
    assert "ok" not in outcomes and ran == []  # a required step stops bootstrap


def test_lazy_steps_import_their_module_when_they_run(sqlite_store: Store, make_settings) -> None:  # noqa: ANN001
    step = bootstrap.lazy("observability.demo.bootstrap:step_migrate")
    ctx = bootstrap.BootstrapContext(sqlite_store, make_settings(sqlite_store.url))
    assert step(ctx).startswith("schema at revision")
    with pytest.raises(ModuleNotFoundError):
        bootstrap.lazy("observability.no_such_module:run")(ctx)


def test_bootstrap_creates_the_ingest_token_once_in_a_private_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = tmp_path / "local" / "otlp.token"
    env = dict(OTLP_INGEST_TOKEN="", OTLP_INGEST_TOKEN_FILE=str(path))
    run = lambda: subprocess.run([sys.executable, "-m", "observability.bootstrap"], cwd=ROOT,  # noqa: E731
                                 env=subprocess_env(DATABASE_URL=url, REDIS_URL="", **env),
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    token = path.read_text().strip()
    assert len(token) >= 32
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert f'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer {token}"' in first.stdout
    again = run()  # kept: the same token, and not printed again
    assert again.returncode == 0, again.stdout + again.stderr
    assert path.read_text().strip() == token and token not in again.stdout
    assert f"ingest_token: kept in {path}" in again.stdout
