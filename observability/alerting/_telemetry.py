"""Spans and counters through `observability.telemetry` when it is there; no-ops otherwise.
Telemetry never breaks alerting: its errors are logged and swallowed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

try:  # pragma: no cover - depends on which parts of the project are installed
    from observability.telemetry import increment_counter as _increment
    from observability.telemetry import optional_span as _optional_span
except ImportError:  # pragma: no cover
    _increment = None
    _optional_span = None

SERVICE = "observability.alerting"


def count(name: str, **attributes: Any) -> None:
    if _increment is None:
        return
    try:
        _increment(name, **attributes)
    except Exception as exc:  # noqa: BLE001 - telemetry must not break alerting
        log.debug("counter %s failed: %s", name, exc)


@contextlib.contextmanager
def span(operation: str) -> Iterator[Any]:
    if _optional_span is None:
        yield None
        return
    try:
        cm = _optional_span(SERVICE, operation)
        s = cm.__enter__()
    except Exception as exc:  # noqa: BLE001
        log.debug("span %s failed: %s", operation, exc)
        yield None
        return
    try:
        yield s
    except BaseException as exc:
        if not cm.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        cm.__exit__(None, None, None)


def set_attribute(s: Any, key: str, value: Any) -> None:
    if s is None:
        return
    try:
        s.set_attribute(key, value)
    except Exception:  # noqa: BLE001
        pass
