"""The event schema shared by the SDK, the Redis stream and ingest.

An event is a flat list `[kind, id, ts, *fields]` (ts in epoch seconds, UTC). Lists keep the SDK's
hot path cheap (no dict, no dataclass, no SQLAlchemy) and make a whole batch one JSON document on
the stream. `FIELDS` names the positions; `validate_*` functions run on the caller's thread and
reject bad input with `EventRejected` (the SDK counts and logs it, never raises it); `check_wire`
re-validates what comes off the stream, because other producers may write to it.
"""

from __future__ import annotations

import math
from typing import Any

KIND_LLM = "llm"
KIND_OPERATION = "op"
KIND_INTERACTION = "interaction"
KIND_HANDOFF = "handoff"
KIND_MESSAGE = "message"
KIND_ACCOUNT = "account"
KIND_METRIC = "metric"
KIND_ACTIVITY = "activity"

FIELDS: dict[str, tuple[str, ...]] = {
    KIND_LLM: (
        "trace_id", "ts", "bot", "agent", "decision_type", "model", "provider", "input_tokens",
        "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms", "cache_hit",
        "cost_usd", "conversation_id", "success", "error_type",
    ),
    KIND_OPERATION: (
        "id", "ts", "bot", "operation", "duration_ms", "success", "cache_hit", "error_type",
    ),
    KIND_INTERACTION: ("id", "ts", "bot", "duration_ms", "success", "cache_hit", "error_type"),
    KIND_HANDOFF: ("id", "ts", "source", "target", "success", "duration_ms", "blocked", "reason"),
    KIND_MESSAGE: ("id", "ts", "conversation_id", "role", "text", "bot", "account_id", "author"),
    KIND_ACCOUNT: ("id", "ts", "name", "vip"),
    KIND_METRIC: (
        "id", "ts", "metric_name", "metric_type", "value", "account_id", "conversation_id",
        "user_id", "metadata",
    ),
    KIND_ACTIVITY: (
        "id", "ts", "event_type", "title", "description", "severity", "category", "account_id",
        "conversation_id", "user_id", "metadata",
    ),
}  # fmt: skip

MESSAGE_ROLES = frozenset({"user", "bot", "operator"})
SEVERITIES = ("low", "medium", "high", "critical")
METRIC_TYPES = frozenset({"gauge", "counter", "histogram", "timer"})
MAX_NAME = 200


class EventRejected(ValueError):
    """An event that cannot be stored; the message says which field and why."""


def check_str(name: str, value: Any, *, required: bool = False, max_len: int = MAX_NAME) -> None:
    if value is None:
        if required:
            raise EventRejected(f"{name} is required")
        return
    if type(value) is not str:
        raise EventRejected(f"{name} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise EventRejected(f"{name} must not be empty")
    if len(value) > max_len:
        raise EventRejected(f"{name} is longer than {max_len} characters")


def check_count(name: str, value: Any) -> None:
    if type(value) is not int or value < 0:
        if type(value) is bool or not isinstance(value, int):
            raise EventRejected(f"{name} must be a non-negative integer, got {value!r:.40}")
        raise EventRejected(f"{name} must be a non-negative integer, got {value}")


def check_ms(name: str, value: Any) -> None:
    if type(value) not in (float, int) or not (0.0 <= value < math.inf):
        raise EventRejected(f"{name} must be a finite non-negative number, got {value!r:.40}")


def check_bool(name: str, value: Any) -> None:
    if type(value) is not bool:
        raise EventRejected(f"{name} must be a bool, got {type(value).__name__}")


def check_number(name: str, value: Any) -> None:
    if type(value) not in (float, int) or not math.isfinite(value):
        raise EventRejected(f"{name} must be a finite number, got {value!r:.40}")


def check_text(name: str, value: Any, max_bytes: int) -> None:
    if type(value) is not str:
        raise EventRejected(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_bytes or (len(value) * 4 > max_bytes and len(value.encode()) > max_bytes):
        raise EventRejected(f"{name} is larger than {max_bytes} bytes")


def check_metadata(value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        raise EventRejected(f"metadata must be a dict, got {type(value).__name__}")


def check_wire(event: Any, max_text_bytes: int = 1_000_000) -> list:
    """Validate an event read from the stream or the spool; returns it or raises EventRejected."""
    if not isinstance(event, list) or not event:
        raise EventRejected("event must be a non-empty list")
    kind = event[0]
    fields = FIELDS.get(kind)
    if fields is None:
        raise EventRejected(f"unknown event kind {kind!r:.40}")
    if len(event) != len(fields) + 1:
        raise EventRejected(f"{kind} event has {len(event) - 1} fields, expected {len(fields)}")
    v = dict(zip(fields, event[1:]))
    check_str("id", v.get("id", v.get("trace_id")), required=True, max_len=64)
    check_number("ts", v["ts"])
    if kind == KIND_LLM:
        check_str("model", v["model"], required=True)
        check_str("provider", v["provider"], required=True)
        for f in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            check_count(f, v[f])
        check_ms("latency_ms", v["latency_ms"])
        if v["cost_usd"] is not None:
            check_ms("cost_usd", v["cost_usd"])
        check_bool("cache_hit", v["cache_hit"])
        check_bool("success", v["success"])
    elif kind in (KIND_OPERATION, KIND_INTERACTION):
        check_str("bot", v["bot"], required=True)
        check_ms("duration_ms", v["duration_ms"])
        check_bool("success", v["success"])
    elif kind == KIND_HANDOFF:
        check_str("source", v["source"], required=True)
        check_str("target", v["target"], required=True)
        check_ms("duration_ms", v["duration_ms"])
    elif kind == KIND_MESSAGE:
        check_str("conversation_id", v["conversation_id"], required=True, max_len=100)
        if v["role"] not in MESSAGE_ROLES:
            raise EventRejected(f"role must be one of {sorted(MESSAGE_ROLES)}")
        check_text("text", v["text"], max_text_bytes)
    elif kind == KIND_METRIC:
        check_str("metric_name", v["metric_name"], required=True, max_len=100)
        check_number("value", v["value"])
        check_metadata(v["metadata"])
    elif kind == KIND_ACTIVITY:
        check_str("event_type", v["event_type"], required=True, max_len=100)
        check_str("title", v["title"], required=True)
        check_metadata(v["metadata"])
    return event
