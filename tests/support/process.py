"""The repository root and the environment for child processes (worker, CLIs, simulator, console)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """Environment for a child process with overrides (an override of None is left out)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def doomed_worker_script(pipeline: str = "redis.client.Pipeline") -> str:
    """A worker process that drains once and is SIGKILLed mid-batch, at `KILL_AT` from its environment:
    `before_ack` (the SQL commit is done, XACK + XDEL never run: `pipeline`'s execute kills it; the
    cluster's is `redis.cluster.ClusterPipeline`) or `mid_write` (inside the SQL transaction)."""
    module = pipeline.rsplit(".", 1)[0]
    return f"""
import os, signal
import {module}
from observability.settings import get_settings
from observability.store import Store
from observability.worker.runner import Worker

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if os.environ["KILL_AT"] == "before_ack":
    {pipeline}.execute = die
else:
    Store.insert_ignore = lambda self, conn, table, cols, rows: die()
settings = get_settings()
Worker(Store.from_url(settings.database_url), settings, worker_id="doomed", steps=[]).drain()
raise SystemExit("the worker should have died")
"""
