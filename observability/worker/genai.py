"""GenAI spans into LLM calls: the OpenTelemetry GenAI semantic conventions, read here only.

A span that carries the conventions becomes one `llm` wire event (`observability.events.llm_call`),
priced and stored by the same ingest path as SDK events, so a bot instrumented with OpenTelemetry
instead of our SDK shows up on every page:

| row column | from |
|---|---|
| model | `gen_ai.response.model`, else `gen_ai.request.model` |
| provider | `gen_ai.provider.name`, else the older `gen_ai.system`, else `unknown` |
| input / output tokens | `gen_ai.usage.input_tokens` / `gen_ai.usage.output_tokens` (older `prompt_tokens` / `completion_tokens`) |
| cache read / write tokens | `gen_ai.usage.cache_read.input_tokens` / `gen_ai.usage.cache_creation.input_tokens`, and the variants in `CACHE_READ_KEYS` / `CACHE_WRITE_KEYS` |
| conversation_id, agent | `gen_ai.conversation.id`, `gen_ai.agent.name` |
| bot | span attribute `obs.bot`, else the resource's `service.name` |
| decision_type, cache_hit | span attributes `obs.decision_type`, `obs.cache_hit` (optional) |
| ts, latency_ms | the span's start time and duration |
| success, error_type | status ERROR or an `error.type` attribute -> failure; `error.type`, else the status message |
| trace_id (row id) | `<trace id>-<span id>`: a span sent twice is stored once |

`input_tokens` includes cached tokens (the GenAI convention); when the cached counts exceed it, the
instrumentation reported uncached input only (as Anthropic's usage does) and they are added up.
Spans without `gen_ai.*` attributes and GenAI spans without a model (tools, agent creation) are no
model calls (`llm_event` returns None). A span with bad values (negative tokens, end before start)
raises `SpanRejected`.
"""

from __future__ import annotations

from typing import Any

from observability import events as ev
from observability.store.wire import check_wire
from observability.worker.otlp import SpanRejected, SpanView

MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",  # current semantic conventions
    "gen_ai.usage.cache_read_input_tokens",  # earlier name (OpenLLMetry and others)
    "gen_ai.usage.input_tokens.cached",
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
)
CONVERSATION_KEY = "gen_ai.conversation.id"
AGENT_KEYS = ("gen_ai.agent.name",)
OPERATION_KEY = "gen_ai.operation.name"
NOT_A_CALL = frozenset({"execute_tool", "create_agent"})
AGENT_OPERATION = "invoke_agent"
STATUS_ERROR = 2


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        v = attrs.get(k)
        if v is not None:
            return k, v
    return None, None


def _count(attrs: dict[str, Any], keys: tuple[str, ...]) -> int:
    key, v = _first(attrs, keys)
    if key is None:
        return 0
    if type(v) is float and v.is_integer():
        v = int(v)
    elif isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if type(v) is not int or v < 0:
        raise SpanRejected(f"{key} must be a non-negative integer, got {v!r:.40}")
    return v


def _text(
    attrs: dict[str, Any], keys: tuple[str, ...], max_len: int, *, truncate: bool = False
) -> str | None:
    key, v = _first(attrs, keys)
    if key is None:
        return None
    if not isinstance(v, str):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        else:
            raise SpanRejected(f"{key} must be a string, got {type(v).__name__}")
    if len(v) > max_len:
        if not truncate:
            raise SpanRejected(f"{key} is longer than {max_len} characters")
        v = v[:max_len]
    return v or None


def is_agent_call(span: SpanView) -> bool:
    """An agent span (`invoke_agent`): its tokens are the sum of the model calls it made."""
    return span.attrs.get(OPERATION_KEY) == AGENT_OPERATION


def llm_event(span: SpanView) -> list | None:
    """The wire event (observability.events, kind llm) of a span, or None if it is no model call
    (no `gen_ai.*` model attribute, or a tool / agent-creation span).

    Raises SpanRejected for a span whose values cannot be stored.
    """
    a = span.attrs
    if a.get(OPERATION_KEY) in NOT_A_CALL:
        return None
    model = _text(a, MODEL_KEYS, 200)
    if model is None:
        return None
    provider = _text(a, PROVIDER_KEYS, 100) or "unknown"
    inp = _count(a, INPUT_KEYS)
    out = _count(a, OUTPUT_KEYS)
    read = _count(a, CACHE_READ_KEYS)
    write = _count(a, CACHE_WRITE_KEYS)
    if read + write > inp:  # uncached input reported apart from the cached parts
        inp += read + write
    if span.start_ns <= 0:
        raise SpanRejected(f"span {span.name!r:.60}: startTimeUnixNano is missing")
    if span.end_ns < span.start_ns:
        raise SpanRejected(f"span {span.name!r:.60}: ends before it starts")
    failed = span.status_code == STATUS_ERROR or a.get("error.type") is not None
    error_type = None
    if failed:
        error_type = str(a.get("error.type") or span.status_message or "error")[:100]
    bot = _text(a, ("obs.bot",), 64, truncate=True)
    if bot is None:
        service = span.resource.get("service.name")
        if isinstance(service, str) and service and not service.startswith("unknown_service"):
            bot = service[:64]
    cache_hit = a.get("obs.cache_hit")
    event = ev.llm_call(
        f"{span.trace_id}-{span.span_id}",
        span.start_ns / 1e9,
        bot=bot,
        agent=_text(a, AGENT_KEYS, 100, truncate=True),
        decision_type=_text(a, ("obs.decision_type",), 100, truncate=True),
        model=model,
        provider=provider,
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=read,
        cache_write_tokens=write,
        latency_ms=(span.end_ns - span.start_ns) / 1e6,
        cache_hit=cache_hit if isinstance(cache_hit, bool) else False,
        cost_usd=None,  # priced at ingest like SDK events
        conversation_id=_text(a, (CONVERSATION_KEY,), 100),
        success=not failed,
        error_type=error_type,
    )
    try:
        return check_wire(event)
    except ev.EventRejected as exc:
        raise SpanRejected(f"span {span.name!r:.60}: {exc}") from exc
