"""The wire check on the store's side: every field of an event against the column that will hold it.

What comes off the Redis stream, out of a spool file or from an OTLP span was built by a producer
this process does not control, so ingest re-validates each event (type, length, range, NUL and lone
surrogates) before writing: whatever passes can be stored, and one bad event never fails its batch.
The checks are derived from the schema itself, so a new column cannot be forgotten here; the SDK
checks the same limits on the caller's thread from `events.LIMITS` (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from observability import events as ev
from observability.events import (
    FIELDS,
    KIND_ACTIVITY,
    KIND_LLM,
    KIND_MESSAGE,
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
    if type(event) is list and len(event) == _LLM_LEN and event[0] == KIND_LLM and plain_llm_event(event):
        return event  # the common case, checked in one expression; anything unusual goes the long way
    return check_event(event, max_text_bytes)


_LLM_LEN = len(FIELDS[KIND_LLM]) + 1
# events from producers older than a kind's last field (error_raw of LLM calls, conversation_id of
# handoffs), still in a stream, a spool file or an old bot: stored as they were meant, without it
_LEN_BEFORE_LAST_FIELD = {KIND_LLM: _LLM_LEN - 1, ev.KIND_HANDOFF: len(FIELDS[ev.KIND_HANDOFF])}


def check_event(event: Any, max_text_bytes: int = 1_000_000) -> list:
    """`check_wire` field by field, for any kind: returns the event or raises EventRejected."""
    if not isinstance(event, list) or not event:
        raise EventRejected("event must be a non-empty list")
    kind = event[0]
    fields = FIELDS.get(kind) if type(kind) is str else None
    if fields is None:
        raise EventRejected(f"unknown event kind {kind!r:.40}")
    if len(event) == _LEN_BEFORE_LAST_FIELD.get(kind):
        event.append(None)  # an older producer's event: its last field absent, filled in place
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
