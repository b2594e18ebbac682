"""What the tests share, as plain helpers (the pytest fixtures live in `tests/conftest.py` and in
the plugins it registers with `pytest_plugins`).

- `wait_for`: the one way to wait for a condition (no fixed sleeps where a condition can be awaited);
- `TcpProxy`: a TCP forwarder in front of PostgreSQL, Redis or any server, that a test cuts and restores;
- `Pipeline` / `open_pipeline`: SDK → (Redis stream → worker →) store, with `deliver()` in between;
- `alerting`: real local SMTP and HTTP peers for the alerting channels and a scripted-clock harness;
- `subprocess_env`, `free_port`, `ROOT`: for tests that start the worker, a CLI or the console.

`tests/` is on `sys.path` (pytest's rootdir-relative import of `tests/conftest.py`), so test files
import this package as `support`.
"""

from __future__ import annotations

from support.net import TcpProxy, free_port
from support.pipeline import PIPELINE_KINDS, Pipeline, open_pipeline, record_llm_calls
from support.process import ROOT, subprocess_env
from support.waiting import wait_for

__all__ = [
    "PIPELINE_KINDS",
    "ROOT",
    "Pipeline",
    "TcpProxy",
    "free_port",
    "open_pipeline",
    "record_llm_calls",
    "subprocess_env",
    "wait_for",
]
