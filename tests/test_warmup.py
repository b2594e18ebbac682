"""The console's start-up warm-up: what a first page run needs is imported at once, scikit-learn
(needed by no page's first screen) only once page runs pause, so it does not hold the GIL through
the first visitor's page run; and the router tells the warm-up when pages run."""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from observability.settings import reset_settings_cache
from observability.ui import warmup

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """A clock that moves only when waited on, so the waits are exact and instant."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a wait of nothing would spin"
        self.waits.append(seconds)
        self.now += seconds


def test_it_is_quiet_at_once_when_no_page_ran_lately() -> None:
    clock = FakeClock()
    with warmup.page_run(now=lambda: clock() - 10):
        pass
    assert warmup.wait_for_quiet(3.0, 60.0, clock, clock.sleep) is True
    assert clock.waits == []


def test_the_idle_imports_wait_for_a_pause_after_the_latest_page_run() -> None:
    clock = FakeClock()
    with warmup.page_run(now=lambda: clock() - 1.0):  # a run ended 1 s ago: 2 s more of quiet needed
        pass
    assert warmup.wait_for_quiet(3.0, 60.0, clock, clock.sleep) is True
    assert sum(clock.waits) == pytest.approx(2.0)


def test_a_page_run_in_progress_is_never_quiet() -> None:
    """A run that started long ago and has not ended (a slow page) still holds the imports back."""
    clock = FakeClock()
    with warmup.page_run(now=lambda: clock() - 100):
        assert warmup.runs_in_progress() == 1
        assert warmup.wait_for_quiet(3.0, 10.0, clock, clock.sleep) is False
    assert warmup.runs_in_progress() == 0
    assert sum(clock.waits) == pytest.approx(10.0)


def test_runs_that_never_pause_delay_the_idle_imports_by_the_bound_only() -> None:
    clock = FakeClock()

    def busy_sleep(seconds: float) -> None:  # a page runs during every wait
        with warmup.page_run(now=clock):
            clock.sleep(seconds)

    with warmup.page_run(now=clock):  # one has just ended
        pass
    assert warmup.wait_for_quiet(3.0, 20.0, clock, busy_sleep) is False
    assert sum(clock.waits) == pytest.approx(20.0)


def test_warm_up_imports_the_first_screen_modules_then_scikit_learn(tmp_path: Path) -> None:
    """In a fresh interpreter (this one has imported the world): everything is imported in the end,
    scikit-learn after the pages' modules and Plotly, and the store is migrated."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from observability.ui import warmup
        assert "sklearn" not in sys.modules and "plotly.express" not in sys.modules
        warmup.warm_up(quiet_s=0.05, max_s=5.0)
        order = list(sys.modules)  # in the order they were imported
        assert "sklearn.feature_extraction.text" in order and "plotly.express" in order
        assert order.index("plotly.express") < order.index("sklearn")
        assert order.index("observability.analytics.conversation_analytics") < order.index("sklearn")
        import gc  # what the imports created is out of the collector's reach: full collections are cheap
        assert gc.get_freeze_count() > 10 * len(gc.get_objects()), (gc.get_freeze_count(), len(gc.get_objects()))
        print("ok")
        """
    )
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'warm.db'}",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
    with sqlite3.connect(tmp_path / "warm.db") as db:  # the store was opened and migrated at start
        assert db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_freezing_collects_the_garbage_first() -> None:
    """Only what is alive is frozen: a cycle already unreachable is collected, not kept forever."""
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    del cycle
    try:
        warmup.freeze_long_lived()
        assert ref() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_router_notes_each_page_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'r.db'}")
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    with warmup.page_run(now=lambda: 0.0):
        pass
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert warmup.last_page_run() > 0.0  # the run was noted...
    assert warmup.runs_in_progress() == 0  # ...and its end too
