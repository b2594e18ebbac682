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
