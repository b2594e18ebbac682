"""One log line per failure kind per minute, with a count: how the worker logs an outage.

Without it, a PostgreSQL outage of half a minute wrote 72 traceback lines (every step, every tick,
every drain). With it, the first failure of a kind (`"ingest"`, `"steps"`, `"delivery via slack"`)
is one line; repeats within `interval_s` (60 s) are only counted; the next line after the interval
says how many were held back; and the first success after failures says the kind recovered, after
how many failures and for how long. A traceback is kept only for the first failure of a kind whose
exception is not an outage (a bug deserves its traceback once; a refused connection never does).

Each `OutageLog` keeps its own counts (a worker, a collector, a service each own one), so two
processes or two tests never hide each other's lines. Imports nothing of the package (a contract
module: any layer may use it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 60.0

# exception classes (by name, anywhere in the class hierarchy) that mean "a peer is down", not a bug
OUTAGE_TYPES = frozenset({
    "StoreUnavailable", "OperationalError", "InterfaceError", "DisconnectionError", "ConnectionError",
    "TimeoutError", "OSError", "RedisError", "DeliveryError",
})  # fmt: skip


def is_outage(exc: BaseException) -> bool:
    """True for a refused or lost connection, a timeout, a peer that answered with an error."""
    return any(cls.__name__ in OUTAGE_TYPES for cls in type(exc).__mro__)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line (driver messages often span several), at most `limit` characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:limit] if text else type(exc).__name__


@dataclass
class _Kind:
    first_at: float  # when the current run of failures began
    logged_at: float  # when the last line of this kind was written
    held: int = 0  # failures since that line, not yet reported
    failures: int = 0  # failures in the current run


class OutageLog:
    """Rate-limited failure lines for one logger: `failure(kind, ...)` and `recovered(kind)`."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()

    def failure(
        self, kind: str, message: str, exc: BaseException | None = None, *, level: int = logging.WARNING
    ) -> bool:
        """Count one failure of `kind`; write a line if none of this kind was written within the
        interval. Returns True when a line was written."""
        now = self.clock()
        detail = f": {one_line(exc)}" if exc is not None else ""
        with self._lock:
            k = self._kinds.get(kind)
            if k is None:
                self._kinds[kind] = _Kind(first_at=now, logged_at=now, failures=1)
                trace = exc is not None and not is_outage(exc)
                self.logger.log(level, "%s%s", message, detail, exc_info=exc if trace else None)
                return True
            k.failures += 1
            k.held += 1
            if now - k.logged_at < self.interval_s:
                return False
            held, since = k.held, now - k.logged_at
            k.held, k.logged_at = 0, now
        self.logger.log(level, "%s%s (%d times in the last %.0f s, %d since it began %.0f s ago)",
                        message, detail, held, since, k.failures, now - k.first_at)  # fmt: skip
        return True

    def recovered(self, kind: str, message: str | None = None) -> bool:
        """The first success of `kind` after failures: one line with how many and for how long."""
        with self._lock:
            k = self._kinds.pop(kind, None)
        if k is None:
            return False
        took = self.clock() - k.first_at
        self.logger.info("%s recovered after %d failure(s) over %.0f s", message or kind, k.failures, took)
        return True

    def failing(self) -> dict[str, int]:
        """Kinds failing now, with their failure counts (for health pages and tests)."""
        with self._lock:
            return {name: k.failures for name, k in self._kinds.items()}
