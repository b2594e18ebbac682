"""Random event ids, cheap enough for the record call's hot path.

An id is 128 random bits as 32 hex digits (a uuid4's randomness, the OpenTelemetry trace-id form).
One `os.urandom` per id is a system call of about a microsecond, a third of a record call's budget;
drawing 8 KiB at once and slicing it costs a tenth of that per id. The pool is emptied in a forked
child, so a parent and its child never hand out the same ids.
"""

from __future__ import annotations

import os

_PER_DRAW = 512
_pool: list[str] = []
os.register_at_fork(after_in_child=_pool.clear)


def new_id() -> str:
    """A fresh random id (thread-safe: `list.pop` and `list.extend` are atomic)."""
    while True:
        try:
            return _pool.pop()
        except IndexError:
            digits = os.urandom(16 * _PER_DRAW).hex()
            _pool.extend([digits[i : i + 32] for i in range(0, len(digits), 32)])
