"""`wait_for`: poll a condition until it holds, or fail the test saying what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], object] | None = None,
) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy and return that.

    After `timeout` seconds it is called one last time; if that is still falsy, an AssertionError
    is raised with `message` (a string, or a callable evaluated then, e.g. `lambda: client.stats()`),
    so `assert wait_for(...)` and plain `wait_for(...)` both fail with a useful text.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    text = message() if callable(message) else message
    detail = f"{text} " if text else ""
    raise AssertionError(f"{detail}(condition still false after {timeout:g}s; last value {value!r})")
