"""The wire check on the store's side: every field of an event against the column that will hold it.

What comes off the Redis stream, out of a spool file or from an OTLP span was built by a producer
this process does not control, so ingest re-validates each event (type, length, range, NUL and lone
surrogates) before writing: whatever passes can be stored, and one bad event never fails its batch.
The checks are derived from the schema itself, so a new column cannot be forgotten here; the SDK
checks the same limits on the caller's thread from `events.LIMITS` (a test keeps the two equal).
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

from observability import events as ev
from observability.events import (
    FIELDS,
    KIND_ACTIVITY,
    KIND_LLM,
    KIND_MESSAGE,
    LIMITS,
    MAX_COUNT,
    MAX_TS,
    MESSAGE_ROLES,
    SEVERITIES,
    EventRejected,
    check_bool,
    check_chars,
    check_count,
    check_metadata,
    check_ms,
    check_number,
    check_text,
    check_ts,
    plain_llm_event,
)
from observability.store import schema

TABLE_OF_KIND: dict[str, sa.Table] = {
    ev.KIND_LLM: schema.llm_calls, ev.KIND_OPERATION: schema.bot_operations,
    ev.KIND_INTERACTION: schema.bot_interactions, ev.KIND_HANDOFF: schema.handoffs,
    ev.KIND_MESSAGE: schema.messages, ev.KIND_ACCOUNT: schema.accounts,
    ev.KIND_METRIC: schema.system_metrics, ev.KIND_ACTIVITY: schema.activity_events,
}  # fmt: skip
_SIGNED_NUMBERS = frozenset({"value"})  # Float fields that may be negative; the others are durations/costs
_OPTIONAL = frozenset({("llm", "cost_usd")})  # None on the wire means "compute it at ingest"


def _wire_checks(kind: str) -> tuple:
    """(position, field, check, required, arg) for every field, derived from the schema."""
    table = TABLE_OF_KIND[kind]
    out = []
    for pos, name in enumerate(FIELDS[kind], start=1):
        if name == "ts":
            out.append((pos, name, "ts", True, None))
            continue
        col = table.c[name]
        required = (not col.nullable) and (kind, name) not in _OPTIONAL
        t = col.type
        if isinstance(t, sa.JSON):
            out.append((pos, name, "json", False, None))
        elif isinstance(t, sa.String):
            out.append((pos, name, "str" if t.length else "text", required, t.length))
        elif isinstance(t, sa.Boolean):
            out.append((pos, name, "bool", required, None))
        elif isinstance(t, sa.Integer):
            out.append((pos, name, "count", required, None))
        elif isinstance(t, sa.Float):
            out.append((pos, name, "number" if name in _SIGNED_NUMBERS else "ms", required, None))
        else:  # pragma: no cover - a new column type needs a rule here
            raise TypeError(f"no wire check for {table.name}.{name} ({t})")
    return tuple(out)


_WIRE_CHECKS: dict[str, tuple] = {}


def check_wire(event: Any, max_text_bytes: int = 1_000_000) -> list:
    """Validate an event read from the stream or the spool; returns it or raises EventRejected.

    Every field is checked against the column that will store it (type, length, range, NUL and
    lone surrogates), so whatever passes can be written: one bad event never fails its batch.
    """
    if type(event) is list and len(event) == 18 and event[0] == KIND_LLM and plain_llm_event(event):
        return event  # the common case, checked in one expression; anything unusual goes the long way
    return check_event(event, max_text_bytes)


_NONE = type(None)
_LLM = FIELDS[KIND_LLM]
_LLM_LIMIT = LIMITS[KIND_LLM]
# (position, limit) of the LLM event's strings: required (non-empty, not blank) and optional
_LLM_REQUIRED = tuple((1 + _LLM.index(n), _LLM_LIMIT[n]) for n in ("trace_id", "model", "provider"))
_LLM_OPTIONAL = tuple(
    (1 + _LLM.index(n), _LLM_LIMIT[n])
    for n in ("bot", "agent", "decision_type", "conversation_id", "error_type")
)
_LLM_COUNTS = tuple(1 + _LLM.index(n) for n in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                "cache_write_tokens"))  # fmt: skip
_LLM_BOOLS = tuple(1 + _LLM.index(n) for n in ("cache_hit", "success"))
_TS, _LATENCY, _COST = 1 + _LLM.index("ts"), 1 + _LLM.index("latency_ms"), 1 + _LLM.index("cost_usd")
_NUMBER_TYPES = frozenset({int, float})


def _numbers_within(col: tuple, upper: float, optional: bool = False) -> bool:
    """Every value an int or float in [0, upper) (None too when `optional`), checked in bulk."""
    types = set(map(type, col))
    if optional and _NONE in types:
        types.discard(_NONE)
        col = tuple(v for v in col if v is not None)
        if not col:
            return True
    if not types <= _NUMBER_TYPES:
        return False
    total = sum(col)  # NaN when any value is NaN (min and max would not say so)
    return total == total and min(col) >= 0 and max(col) < upper


def _printable_ascii(col: tuple | list) -> bool:
    text = "".join(col)
    return text.isascii() and text.isprintable()


def plain_llm_batch(batch: list) -> bool:
    """True when every event of `batch` is an LLM event `plain_llm_event` would pass.

    The same checks, column by column in C (`map`, `set`, `min`, `max`, `str.join`) instead of
    field by field in Python: a worker checks a stream entry of hundreds of calls in a few
    microseconds. False says only "not certainly", and the batch is then checked event by event.
    """
    if not batch:
        return True
    if set(map(type, batch)) != {list} or set(map(len, batch)) != {1 + len(_LLM)}:
        return False
    cols = list(zip(*batch, strict=True))
    if set(map(type, cols[0])) != {str} or set(cols[0]) != {KIND_LLM}:
        return False
    for pos, limit in _LLM_REQUIRED:
        col = cols[pos]
        if set(map(type, col)) != {str}:
            return False
        lengths = tuple(map(len, col))
        if min(lengths) == 0 or max(lengths) > limit or any(map(str.isspace, col)):
            return False
        if not _printable_ascii(col):
            return False
    for pos, limit in _LLM_OPTIONAL:
        col = cols[pos]
        types = set(map(type, col))
        if types == {_NONE}:
            continue
        if not types <= {str, _NONE}:
            return False
        values = list(filter(None, col)) if _NONE in types else col  # "" is within limits, printable
        if values and (max(map(len, values)) > limit or not _printable_ascii(values)):
            return False
    for pos in _LLM_COUNTS:
        col = cols[pos]
        if set(map(type, col)) != {int} or min(col) < 0 or max(col) > MAX_COUNT:
            return False
    for pos in _LLM_BOOLS:
        if set(map(type, cols[pos])) != {bool}:
            return False
    return (
        _numbers_within(cols[_TS], MAX_TS)
        and _numbers_within(cols[_LATENCY], math.inf)
        and _numbers_within(cols[_COST], math.inf, optional=True)
    )


def check_event(event: Any, max_text_bytes: int = 1_000_000) -> list:
    """`check_wire` field by field, for any kind: returns the event or raises EventRejected."""
    if not isinstance(event, list) or not event:
        raise EventRejected("event must be a non-empty list")
    kind = event[0]
    fields = FIELDS.get(kind) if type(kind) is str else None
    if fields is None:
        raise EventRejected(f"unknown event kind {kind!r:.40}")
    if len(event) != len(fields) + 1:
        raise EventRejected(f"{kind} event has {len(event) - 1} fields, expected {len(fields)}")
    checks = _WIRE_CHECKS.get(kind)
    if checks is None:
        checks = _WIRE_CHECKS[kind] = _wire_checks(kind)
    for pos, name, what, required, arg in checks:
        v = event[pos]
        if v is None:
            if required:
                raise EventRejected(f"{kind}.{name} is required")
            continue
        if what == "str":
            if type(v) is not str:
                raise EventRejected(f"{kind}.{name} must be a string, got {type(v).__name__}")
            if len(v) > arg:
                raise EventRejected(f"{kind}.{name} is longer than {arg} characters")
            if required and not v.strip():
                raise EventRejected(f"{kind}.{name} must not be empty")
            if "\x00" in v or not v.isascii():
                check_chars(f"{kind}.{name}", v)
        elif what == "ts":
            check_ts(f"{kind}.ts", v)
        elif what == "ms":
            check_ms(f"{kind}.{name}", v)
        elif what == "count":
            check_count(f"{kind}.{name}", v)
        elif what == "bool":
            check_bool(f"{kind}.{name}", v)
        elif what == "number":
            check_number(f"{kind}.{name}", v)
        elif what == "text":
            check_text(f"{kind}.{name}", v, max_text_bytes)
        else:
            check_metadata(v)
    if kind == KIND_MESSAGE and event[4] not in MESSAGE_ROLES:
        raise EventRejected(f"message.role must be one of {sorted(MESSAGE_ROLES)}, got {event[4]!r:.20}")
    if kind == KIND_ACTIVITY and event[6] not in SEVERITIES:
        raise EventRejected(f"activity.severity must be one of {SEVERITIES}, got {event[6]!r:.20}")
    return event
