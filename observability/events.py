"""The event schema shared by the SDK, the Redis stream and ingest.

An event is a flat list `[kind, id, ts, *fields]` (ts in epoch seconds, UTC). Lists keep the SDK's
hot path cheap (no dict, no dataclass, no SQLAlchemy) and make a whole batch one JSON document on
the stream. `FIELDS` names the positions and one builder per kind fills them by name; `LIMITS` says
how long each string may be. The `check_*` functions run on the caller's thread and reject bad
input with `EventRejected` (the SDK counts and logs it, never raises it); `check_wire` re-validates
what comes off the stream, because other producers may write to it. Only `check_wire` looks at the
SQL schema (lazily): a bot that imports this module never loads SQLAlchemy.
"""

from __future__ import annotations

import json
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
        "cost_usd", "conversation_id", "success", "error_type", "error_raw",
    ),
    KIND_OPERATION: (
        "id", "ts", "bot", "operation", "duration_ms", "success", "cache_hit", "error_type",
    ),
    KIND_INTERACTION: ("id", "ts", "bot", "duration_ms", "success", "cache_hit", "error_type"),
    KIND_HANDOFF: ("id", "ts", "source", "target", "success", "duration_ms", "blocked", "reason", "conversation_id"),
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

# ---- building events: the one place that knows the positions ----------------------------------
# The SDK, the simulator, the OTLP receiver and the control services all build wire events here,
# by name; `FIELDS` above is the same order, and a test checks that each builder follows it.


def llm_call(
    trace_id: str,
    ts: float,
    *,
    bot: str | None,
    agent: str | None,
    decision_type: str | None,
    model: str,
    provider: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    latency_ms: float,
    cache_hit: bool,
    cost_usd: float | None,
    conversation_id: str | None,
    success: bool,
    error_type: str | None,
    error_raw: str | None = None,
) -> list:
    """An LLM call; `cost_usd=None` means: price it at ingest from the model table.

    `error_type` is what the pages group failures by; `error_raw` the value it was read from, as the
    client or instrumentation named it (an OTLP span's `exception.type`, `error.type`, HTTP status),
    None when there is no other name (the SDK's callers pass one name, kept as `error_type`)."""
    return [
        KIND_LLM,
        trace_id,
        ts,
        bot,
        agent,
        decision_type,
        model,
        provider,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        latency_ms,
        cache_hit,
        cost_usd,
        conversation_id,
        success,
        error_type,
        error_raw,
    ]


def operation(
    id: str,
    ts: float,
    *,
    bot: str,
    operation: str,
    duration_ms: float,
    success: bool,
    cache_hit: bool,
    error_type: str | None,
) -> list:
    return [KIND_OPERATION, id, ts, bot, operation, duration_ms, success, cache_hit, error_type]


def interaction(
    id: str,
    ts: float,
    *,
    bot: str,
    duration_ms: float,
    success: bool,
    cache_hit: bool,
    error_type: str | None,
) -> list:
    return [KIND_INTERACTION, id, ts, bot, duration_ms, success, cache_hit, error_type]


def handoff(
    id: str,
    ts: float,
    *,
    source: str,
    target: str,
    success: bool,
    duration_ms: float,
    blocked: bool,
    reason: str | None,
    conversation_id: str | None = None,
) -> list:
    return [KIND_HANDOFF, id, ts, source, target, success, duration_ms, blocked, reason, conversation_id]


def message(
    id: str,
    ts: float,
    *,
    conversation_id: str,
    role: str,
    text: str,
    bot: str | None,
    account_id: str | None,
    author: str | None = None,
) -> list:
    return [KIND_MESSAGE, id, ts, conversation_id, role, text, bot, account_id, author]


def account(id: str, ts: float, *, name: str | None, vip: bool) -> list:
    return [KIND_ACCOUNT, id, ts, name, vip]


def metric(
    id: str,
    ts: float,
    *,
    metric_name: str,
    metric_type: str,
    value: float,
    account_id: str | None,
    conversation_id: str | None,
    user_id: str | None = None,
    metadata: dict | None = None,
) -> list:
    return [
        KIND_METRIC,
        id,
        ts,
        metric_name,
        metric_type,
        value,
        account_id,
        conversation_id,
        user_id,
        metadata,
    ]


def activity(
    id: str,
    ts: float,
    *,
    event_type: str,
    title: str,
    description: str | None,
    severity: str,
    category: str,
    account_id: str | None,
    conversation_id: str | None,
    user_id: str | None = None,
    metadata: dict | None = None,
) -> list:
    return [
        KIND_ACTIVITY,
        id,
        ts,
        event_type,
        title,
        description,
        severity,
        category,
        account_id,
        conversation_id,
        user_id,
        metadata,
    ]


BUILDERS = {
    KIND_LLM: llm_call, KIND_OPERATION: operation, KIND_INTERACTION: interaction, KIND_HANDOFF: handoff,
    KIND_MESSAGE: message, KIND_ACCOUNT: account, KIND_METRIC: metric, KIND_ACTIVITY: activity,
}  # fmt: skip


def as_dict(event: list) -> dict[str, Any]:
    """A wire event's fields by name (for messages, logs and tests; not for the hot path)."""
    return dict(zip(("kind", *FIELDS[event[0]]), event, strict=True))


# Longest string each field's column holds (None: unlimited text); fields not named are not strings.
# The SDK checks them on the caller's thread, so a name too long for PostgreSQL is rejected with a
# clear log line instead of failing its batch later. The schema declares the same lengths (a test
# compares them), but the contract states them here so that a bot never imports SQLAlchemy.
LIMITS: dict[str, dict[str, int | None]] = {
    KIND_LLM: {"trace_id": 64, "bot": 64, "agent": 100, "decision_type": 100, "model": 200,
               "provider": 100, "conversation_id": 100, "error_type": 100, "error_raw": 200},
    KIND_OPERATION: {"id": 64, "bot": 64, "operation": 100, "error_type": 100},
    KIND_INTERACTION: {"id": 64, "bot": 64, "error_type": 100},
    KIND_HANDOFF: {"id": 64, "source": 64, "target": 64, "reason": 500, "conversation_id": 100},
    KIND_MESSAGE: {"id": 64, "conversation_id": 100, "role": 16, "text": None, "bot": 64,
                   "account_id": 100, "author": 100},
    KIND_ACCOUNT: {"id": 100, "name": 200},
    KIND_METRIC: {"id": 64, "metric_name": 100, "metric_type": 50, "account_id": 100,
                  "conversation_id": 100, "user_id": 100},
    KIND_ACTIVITY: {"id": 64, "event_type": 100, "title": 200, "description": None, "severity": 20,
                    "category": 50, "account_id": 100, "conversation_id": 100, "user_id": 100},
}  # fmt: skip

MESSAGE_ROLES = frozenset({"user", "bot", "operator"})
SEVERITIES = ("low", "medium", "high", "critical")
METRIC_TYPES = frozenset({"gauge", "counter", "histogram", "timer"})
MAX_NAME = 200
MAX_COUNT = 2**31 - 1  # token counts are INTEGER columns
MAX_TS = 253_402_300_800.0  # 10000-01-01T00:00:00Z
MAX_METADATA_BYTES = 64_000


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
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        if type(value) is bool or not isinstance(value, int):
            raise EventRejected(f"{name} must be a non-negative integer, got {value!r:.40}")
        shown = value if -(10**18) < value < 10**18 else "a larger number"
        raise EventRejected(f"{name} must be an integer from 0 to {MAX_COUNT}, got {shown}")


def check_ts(name: str, value: Any) -> None:
    """Epoch seconds between 1970 and 9999 (what both stores and `datetime` can hold)."""
    if type(value) not in (float, int) or not (0.0 <= value < MAX_TS):
        raise EventRejected(f"{name} must be a time between 1970 and 9999, got {value!r:.40}")


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
    if len(value) > max_bytes:
        raise EventRejected(f"{name} is larger than {max_bytes} bytes")
    check_chars(name, value)
    if len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
        raise EventRejected(f"{name} is larger than {max_bytes} bytes")


def check_chars(name: str, value: str) -> None:
    """No NUL character (PostgreSQL text cannot hold one) and no lone surrogate (not UTF-8)."""
    if "\x00" in value:
        raise EventRejected(f"{name} contains a NUL character")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise EventRejected(f"{name} is not valid Unicode (lone surrogate)") from None


def check_metadata(value: Any, max_bytes: int = MAX_METADATA_BYTES) -> None:
    """A dict that JSON can hold as it is: no NaN, no datetime, no set; at most `max_bytes`."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise EventRejected(f"metadata must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventRejected(f"metadata must be plain JSON (str, number, bool, list, dict): {exc}") from None
    if len(text) > max_bytes:
        raise EventRejected(f"metadata is larger than {max_bytes} bytes")
    check_chars("metadata", text)


def usage_tokens(usage: Any) -> tuple[int, int, int, int]:
    """(input incl. cached, output, cache_read, cache_write) from a provider's `usage`, object or dict.

    Three shapes, told apart by their keys (our `input_tokens` counts cached input too, the
    OpenTelemetry GenAI convention):
    - OpenAI Chat Completions (`CompletionUsage`): `prompt_tokens` (cached included),
      `completion_tokens`, `prompt_tokens_details.cached_tokens` / `.cache_write_tokens`;
    - OpenAI Responses (`ResponseUsage`): `input_tokens` (cached included), `output_tokens`,
      `input_tokens_details.cached_tokens` / `.cache_write_tokens`;
    - Anthropic (`Usage`): `input_tokens` (uncached only: the cache reads and writes are added up),
      `output_tokens`, `cache_read_input_tokens`, `cache_creation_input_tokens`.
    Anything else raises EventRejected naming what was expected: a usage read as zero tokens would
    store the call as free.
    """

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    def count(obj: Any, name: str, where: str = "") -> int:
        v = get(obj, name) if obj is not None else None
        if v is None:
            return 0
        if type(v) is not int or v < 0:
            raise EventRejected(f"usage.{where}{name} must be a non-negative integer, got {v!r:.40}")
        return v

    def openai(inp_name: str, out_name: str, details_name: str) -> tuple[int, int, int, int]:
        inp, details = count(usage, inp_name), get(usage, details_name)
        read = min(count(details, "cached_tokens", f"{details_name}."), inp)
        write = min(count(details, "cache_write_tokens", f"{details_name}."), inp - read)
        return inp, count(usage, out_name), read, write

    if get(usage, "prompt_tokens") is not None or get(usage, "completion_tokens") is not None:
        return openai("prompt_tokens", "completion_tokens", "prompt_tokens_details")
    if get(usage, "input_tokens") is None and get(usage, "output_tokens") is None:
        shown = sorted(map(str, usage))[:8] if isinstance(usage, dict) else type(usage).__name__
        raise EventRejected(
            "usage must be an OpenAI or Anthropic usage (object or dict) with prompt_tokens / completion_tokens "
            f"or input_tokens / output_tokens; got {shown}"
        )
    if get(usage, "input_tokens_details") is not None:  # OpenAI Responses: input counts cached tokens
        return openai("input_tokens", "output_tokens", "input_tokens_details")
    uncached = count(usage, "input_tokens")  # Anthropic: cached parts reported apart
    read = count(usage, "cache_read_input_tokens")
    write = count(usage, "cache_creation_input_tokens")
    return uncached + read + write, count(usage, "output_tokens"), read, write


# ---- the fast check of a plain LLM event (SDK and ingest share it) ---------------------------

_LEN = LIMITS[KIND_LLM]
_L_ID, _L_BOT, _L_MODEL, _L_PROVIDER = _LEN["trace_id"], _LEN["bot"], _LEN["model"], _LEN["provider"]
_L_AGENT, _L_DTYPE, _L_ERR = _LEN["agent"], _LEN["decision_type"], _LEN["error_type"]
_L_CONV, _L_RAW = _LEN["conversation_id"], _LEN["error_raw"]
_NUM = (float, int)
_INF = math.inf


def plain_llm_event(e: list) -> bool:
    """True when an LLM wire event is certainly valid; False sends it through `check_event`.

    Strings must be printable ASCII here (no NUL, no surrogate) and within their column; anything
    else (a non-ASCII bot name, say) is not wrong, only checked by the slower general path.
    """
    (_, tid, ts, bot, agent, dtype, model, provider, it, ot, cr, cw, lat, hit, cost, conv, ok, err, raw) = e
    S = str
    return (
        type(tid) is S and 0 < len(tid) <= _L_ID and tid.isascii() and tid.isprintable() and not tid.isspace()
        and type(model) is S and 0 < len(model) <= _L_MODEL and model.isascii() and model.isprintable()
        and not model.isspace()
        and type(provider) is S and 0 < len(provider) <= _L_PROVIDER and provider.isascii()
        and provider.isprintable() and not provider.isspace()
        and type(ts) in _NUM and 0.0 <= ts < MAX_TS
        and type(it) is int and 0 <= it <= MAX_COUNT and type(ot) is int and 0 <= ot <= MAX_COUNT
        and type(cr) is int and 0 <= cr <= MAX_COUNT and type(cw) is int and 0 <= cw <= MAX_COUNT
        and type(lat) in _NUM and 0.0 <= lat < _INF
        and type(hit) is bool and type(ok) is bool
        and (cost is None or (type(cost) in _NUM and 0.0 <= cost < _INF))
        and (bot is None or (type(bot) is S and len(bot) <= _L_BOT and bot.isascii() and bot.isprintable()))
        and (agent is None or (type(agent) is S and len(agent) <= _L_AGENT and agent.isascii()
                               and agent.isprintable()))
        and (dtype is None or (type(dtype) is S and len(dtype) <= _L_DTYPE and dtype.isascii()
                               and dtype.isprintable()))
        and (conv is None or (type(conv) is S and len(conv) <= _L_CONV and conv.isascii()
                              and conv.isprintable()))
        and (err is None or (type(err) is S and len(err) <= _L_ERR and err.isascii() and err.isprintable()))
        and (raw is None or (type(raw) is S and len(raw) <= _L_RAW and raw.isascii() and raw.isprintable()))
    )  # fmt: skip
