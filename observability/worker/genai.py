"""GenAI spans into LLM calls: the OpenTelemetry GenAI semantic conventions, read here only.

A span that carries the conventions becomes one `llm` wire event (`observability.events.llm_call`),
priced and stored by the same ingest path as SDK events, so a bot instrumented with OpenTelemetry
instead of our SDK shows up on every page:

The attributes read, by convention (the README's table says the same for users): `MODEL_KEYS`,
`PROVIDER_KEYS`, `INPUT_KEYS`, `OUTPUT_KEYS`, `CACHE_READ_KEYS`, `CACHE_WRITE_KEYS` and
`CONVERSATION_KEYS` list the current GenAI names, the older ones still emitted, and OpenInference's
`llm.*`; bot from `obs.bot` else the resource's `service.name`; `decision_type` and `cache_hit` from
`obs.decision_type` and `obs.cache_hit`; ts and latency from the span; `error_type` is one of
`ERROR_KINDS` (`error_kind`). The row id is given by the receiver (`merge.py`); alone, a span's is
`<trace id>-<span id>`.

`input_tokens` includes cached tokens (the GenAI convention); when the cached counts exceed it, the
instrumentation reported uncached input only (as Anthropic's usage does) and they are added up.
Spans without `gen_ai.*` attributes and GenAI spans without a model (tools, agent creation) are no
model calls (`llm_event` returns None). A span with bad values (negative tokens, end before start)
raises `SpanRejected`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from observability import events as ev
from observability.redaction import pseudonymize_id
from observability.store.wire import check_wire
from observability.worker.otlp import SpanRejected, SpanView

# The model a call is stored under: the one the bot asked for, whenever a span names it. A failed
# call has no response, so only the request model; a successful one names the dated snapshot too
# (`claude-sonnet-4-5` answered by `claude-sonnet-4-5-20250929`): keying on the request model keeps
# a model's successes and failures under one name (error rates, filters, costs), as the SDK path
# names it (the model string the bot passed). Both names are priced alike.
REQUEST_MODEL_KEYS = ("gen_ai.request.model", "llm.request.model_name")
MODEL_KEYS = (
    *REQUEST_MODEL_KEYS,
    "gen_ai.response.model",
    "llm.response.model_name",  # OpenInference (its request model: `llm.invocation_parameters`)
    "llm.model_name",
    "langfuse.observation.model.name",  # the Langfuse SDK's generations (the response's, once answered)
)
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",  # current semantic conventions
    "gen_ai.usage.cache_read_input_tokens",  # earlier name (OpenLLMetry and others)
    "gen_ai.usage.input_tokens.cached",
    "llm.token_count.prompt_details.cache_read",  # OpenInference
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",  # the anthropic SDK's own spans
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
    "llm.token_count.prompt_details.cache_write",  # OpenInference
)
CONVERSATION_KEYS = ("gen_ai.conversation.id", "session.id")
LANGFUSE_USAGE = "langfuse.observation.usage_details"  # JSON: Langfuse's names or the provider's usage
LANGFUSE_TYPE = "langfuse.observation.type"
_LANGFUSE_USAGE_KEYS = (  # (usage key or "details.key", the GenAI attribute it stands for)
    (("input", "prompt_tokens", "input_tokens"), "gen_ai.usage.input_tokens"),
    (("output", "completion_tokens", "output_tokens"), "gen_ai.usage.output_tokens"),
    (("cache_read_input_tokens", "input_cached_tokens", "input_cache_read", "prompt_tokens_details.cached_tokens",
      "input_tokens_details.cached_tokens"), "gen_ai.usage.cache_read.input_tokens"),
    (("cache_creation_input_tokens", "input_cache_creation"), "gen_ai.usage.cache_creation.input_tokens"),
)  # fmt: skip
_MODEL_PROVIDERS = (("gpt-", "openai"), ("chatgpt", "openai"), ("o1", "openai"), ("o3", "openai"),
                    ("o4", "openai"), ("claude", "anthropic"), ("gemini", "google"), ("mistral", "mistral"))  # fmt: skip
RESPONSE_ID_KEY = "gen_ai.response.id"
INVOCATION_PARAMETERS = "llm.invocation_parameters"  # OpenInference: the request as JSON
OPENINFERENCE_KIND = "openinference.span.kind"
AGENT_KEYS = ("gen_ai.agent.name",)
BOT_KEYS = ("obs.bot",)
ACCOUNT_KEYS = ("obs.account_id", "obs.account")
OPERATION_KEY = "gen_ai.operation.name"
NOT_A_CALL = frozenset({"execute_tool", "create_agent"})
# Pydantic Logfire: a streamed call is a span around the request (no usage, no response id) and, when
# the stream ends, a log (a span of no duration) beside it with the usage, the response id and the
# stream's `duration` in seconds, counted from the first chunk; the log is the call, its request span
# no call of its own but where the call's time starts
LOGFIRE_SPAN_TYPE = "logfire.span_type"
LOGFIRE_DURATION = "duration"
AGENT_OPERATION = "invoke_agent"
STATUS_ERROR = 2
# attributes of a model call (not mere context such as a conversation id on the bot's span)
GENAI_CALL_PREFIXES = ("gen_ai.usage.", "gen_ai.request.", "gen_ai.response.", "gen_ai.operation.",
                       "llm.token_count.", "llm.model_name", "llm.invocation_parameters")  # fmt: skip

# ---- one error vocabulary ---------------------------------------------------------------------
# The same failure comes as `InternalServerError`, `api_error`, `<class 'openai.InternalServerError'>`
# or "Error code: 500 - ..." depending on the client and the instrumentation; pages group on these.
ERROR_KINDS = ("rate_limit", "server_error", "timeout", "auth", "bad_request", "content_filter", "other")
_STATUS_IN_TEXT = re.compile(r"(?:error code|status(?: code)?)\W{0,3}([1-5]\d\d)\b", re.IGNORECASE)
_NAME_KINDS = (  # checked in order on the lowercased names with "_", "-", " " and "." removed
    ("content_filter", ("contentfilter", "contentpolicy", "safety", "refusal")),
    ("rate_limit", ("ratelimit", "toomanyrequests", "quota")),
    ("timeout", ("timeout", "timedout", "deadlineexceeded")),
    ("auth", ("authentication", "permissiondenied", "unauthorized", "forbidden", "invalidapikey")),
    ("bad_request", ("badrequest", "invalidrequest", "notfound", "unprocessable", "conflict", "requesttoolarge")),
    ("server_error", ("internalserver", "apierror", "servererror", "overloaded", "serviceunavailable",
                      "badgateway", "apistatuserror")),
)  # fmt: skip


def error_kind_of_status(status: int) -> str | None:
    if status == 429:
        return "rate_limit"
    if status in (408, 504):
        return "timeout"
    if status in (401, 403):
        return "auth"
    if 400 <= status < 500:
        return "bad_request"
    if status >= 500:
        return "server_error"
    return None


def error_kind(status: Any, names: Iterable[Any]) -> str:
    """One of `ERROR_KINDS` from an HTTP status (if any) and the error's names and messages."""
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if type(status) is int and (kind := error_kind_of_status(status)):
        return kind
    texts = [str(n) for n in names if n]
    for t in texts:
        m = _STATUS_IN_TEXT.search(t)
        if m and (kind := error_kind_of_status(int(m.group(1)))):
            return kind
    flat = " ".join(t.lower() for t in texts).translate(_SQUASH)
    for kind, needles in _NAME_KINDS:
        if any(n in flat for n in needles):
            return kind
    return "other"


_SQUASH = str.maketrans("", "", "_-. ")
ERROR_RAW_LEN = 200


def error_raw(status: Any, names: Iterable[Any]) -> str | None:
    """The error as the instrumentation named it, kept beside `error_kind`: the first name given
    (`error.type`, else the exception event's `exception.type`, else the status message) and the HTTP
    status when known and not already in it, e.g. `InternalServerError (HTTP 500)`."""
    name = next((str(n).strip() for n in names if n is not None and str(n).strip()), "")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if type(status) is int and str(status) not in name:
        name = f"{name} (HTTP {status})" if name else f"HTTP {status}"
    name = " ".join(name.split())  # one line: a status message may hold a whole response body
    return name[:ERROR_RAW_LEN] or None


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        v = attrs.get(k)
        if v is not None:
            return k, v
    return None, None


def _count(attrs: dict[str, Any], keys: tuple[str, ...]) -> int:
    key, v = _first(attrs, keys)
    return 0 if key is None else _count_value(key, v)


def _count_value(key: str, v: Any) -> int:
    if type(v) is int and v >= 0:
        return v
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
    return None if key is None else _text_value(key, v, max_len, truncate)


def _text_value(key: str, v: Any, max_len: int, truncate: bool = False) -> str | None:
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


# `llm_event` reads a span's attributes in one pass: each attribute it knows goes to its slot, and a
# slot keeps the first of its keys (in the order of the tuple) that has a value, as `_first` would
# after looking up every key of every tuple (about 30 lookups and 20 calls a span before)
_S_MODEL, _S_PROVIDER, _S_IN, _S_OUT, _S_READ, _S_WRITE, _S_CONV, _S_AGENT, _S_BOT, _S_DTYPE = range(10)
_SLOT_KEYS = (MODEL_KEYS, PROVIDER_KEYS, INPUT_KEYS, OUTPUT_KEYS, CACHE_READ_KEYS, CACHE_WRITE_KEYS,
              CONVERSATION_KEYS, AGENT_KEYS, BOT_KEYS, ("obs.decision_type",))  # fmt: skip
_SLOT_OF = {k: (slot, rank) for slot, keys in enumerate(_SLOT_KEYS) for rank, k in enumerate(keys)}


def _pick(attrs: dict[str, Any]) -> list:
    """(rank, key, value) per slot, or None: the first key of the slot's tuple with a value."""
    found: list = [None] * len(_SLOT_KEYS)
    slot_of = _SLOT_OF.get
    for k, v in attrs.items():
        hit = slot_of(k)
        if hit is None or v is None:
            continue
        slot, rank = hit
        cur = found[slot]
        if cur is None or rank < cur[0]:
            found[slot] = (rank, k, v)
    return found


def _slot_text(found: list, slot: int, max_len: int, truncate: bool = False) -> str | None:
    f = found[slot]
    if f is None:
        return None
    v = f[2]
    if type(v) is str and 0 < len(v) <= max_len:
        return v
    return _text_value(f[1], v, max_len, truncate)


def _slot_count(found: list, slot: int) -> int:
    f = found[slot]
    if f is None:
        return 0
    v = f[2]
    return v if type(v) is int and v >= 0 else _count_value(f[1], v)


def _logfire_stream_request(span: SpanView) -> bool:
    """Logfire's span around a streamed request that did not fail: its call is the log after it."""
    a = span.attrs
    return (
        a.get(LOGFIRE_SPAN_TYPE) == "span"  # (the bot's own spans under Logfire are spans too)
        and "gen_ai.request.model" in a
        and RESPONSE_ID_KEY not in a
        and span.status_code != STATUS_ERROR
        and a.get("error.type") is None
        and not any(k.startswith("gen_ai.usage.") for k in a)
    )


def is_logfire_stream_request(span: SpanView) -> bool:
    """Logfire's span around a streamed request (`_logfire_stream_request`): it starts when the call
    does and ends when the response's headers arrive, before the first chunk is read."""
    return LOGFIRE_SPAN_TYPE in span.attrs and _logfire_stream_request(span)


def logfire_stream_seconds(span: SpanView) -> float | None:
    """The `duration` of Logfire's log of a streamed call: seconds from the first chunk being read
    to the stream's end (Logfire starts it when iteration begins); None for any other span."""
    a = span.attrs
    if a.get(LOGFIRE_SPAN_TYPE) != "log":
        return None
    d = a.get(LOGFIRE_DURATION)
    return float(d) if type(d) in (int, float) and 0 <= d < 86_400 else None


def is_agent_call(span: SpanView) -> bool:
    """An agent span (`invoke_agent`): its tokens are the sum of the model calls it made."""
    return span.attrs.get(OPERATION_KEY) == AGENT_OPERATION


def ignore_reason(span: SpanView) -> str:
    """Why `llm_event` found no model call in a span: `not_genai` (an ordinary application span),
    `not_a_call` (a tool, agent-creation or non-LLM OpenInference span) or `no_model` (GenAI-looking
    attributes, but no model: what an instrumentation we do not read looks like)."""
    a = span.attrs
    if a.get(OPERATION_KEY) in NOT_A_CALL or a.get(OPENINFERENCE_KIND, "LLM") != "LLM":
        return "not_a_call"
    if LOGFIRE_SPAN_TYPE in a and _logfire_stream_request(span):
        return "not_a_call"
    if any(k.startswith(GENAI_CALL_PREFIXES) for k in a):
        return "no_model"
    return "not_genai"


def conversation_of(attrs: dict[str, Any]) -> str | None:
    """`gen_ai.conversation.id`, else OpenInference's `session.id`, cut to the column's length."""
    return _text(attrs, CONVERSATION_KEYS, 100, truncate=True)


Context = tuple[str | None, str | None, str | None, str | None]  # conversation, bot, agent, account
NO_CONTEXT: Context = (None, None, None, None)


def span_context(attrs: dict[str, Any]) -> Context:
    """What a span says about its calls' context: (conversation, bot, agent, account); a value on a
    call's own span wins over its ancestors', theirs over the resource's (`resource_context`)."""
    if not attrs or attrs.keys().isdisjoint(CONTEXT_KEYS):  # most spans: nothing to read
        return NO_CONTEXT
    try:
        account = _text(attrs, ACCOUNT_KEYS, 100, truncate=True)
        return (conversation_of(attrs), _text(attrs, BOT_KEYS, 64, truncate=True),
                _text(attrs, AGENT_KEYS, 100, truncate=True),
                None if account is None else pseudonymize_id(account))  # as the SDK's ids are  # fmt: skip
    except SpanRejected:  # a non-string id on a span that is no call: that span names no context
        return NO_CONTEXT


CONTEXT_KEYS = frozenset((*CONVERSATION_KEYS, *BOT_KEYS, *AGENT_KEYS, *ACCOUNT_KEYS))


def resource_context(resource: dict[str, Any]) -> Context:
    """The resource's context: the same attributes, the bot else the `service.name`."""
    conv, bot, agent, account = span_context(resource)
    if bot is None:
        service = resource.get("service.name")
        if isinstance(service, str) and service and not service.startswith("unknown_service"):
            bot = service[:64]
    return conv, bot, agent, account


def response_id(span: SpanView) -> str | None:
    v = span.attrs.get(RESPONSE_ID_KEY)
    return v if isinstance(v, str) and v else None


def call_row_id(span: SpanView, response: str | None) -> str:
    """The row id of a call: from the provider's response id when there is one (every span of the
    call, from any instrumentation, in any trace or export, gets the same id and the store keeps
    one), else `<trace id>-<span id>` (a span sent twice is stored once)."""
    if response is None:
        return f"{span.trace_id}-{span.span_id}"
    if len(response) <= 59 and response.isascii() and response.isprintable():
        return f"resp-{response}"
    return "resp-" + hashlib.sha256(response.encode()).hexdigest()[:40]


def _model(a: dict[str, Any], found: list) -> str | None:
    """The request model when the span names one (`MODEL_KEYS`), else the response model."""
    f = found[_S_MODEL]
    if (f is None or f[1] not in REQUEST_MODEL_KEYS) and isinstance(
        params := a.get(INVOCATION_PARAMETERS), str
    ):
        try:  # OpenInference names the request model only in the request's parameters
            m = json.loads(params).get("model")
        except (ValueError, AttributeError):
            m = None
        if isinstance(m, str) and m.strip():
            return m[:200]
    return _slot_text(found, _S_MODEL, 200)


def _langfuse_attrs(a: dict[str, Any]) -> dict[str, Any]:
    """A Langfuse generation's usage (a JSON object, Langfuse's own keys or the provider's usage as
    returned, details nested) as GenAI usage attributes; its type other than generation: no call."""
    t = a.get(LANGFUSE_TYPE)
    if t is not None and t != "generation":
        return {**a, OPERATION_KEY: "execute_tool"} if t == "tool" else a
    try:
        usage = json.loads(a[LANGFUSE_USAGE]) if isinstance(a.get(LANGFUSE_USAGE), str) else {}
    except ValueError:
        usage = {}
    out = dict(a)
    if isinstance(usage, dict):
        for names, attr in _LANGFUSE_USAGE_KEYS:
            for name in names:
                head, _, tail = name.partition(".")
                v = usage.get(head)
                v = v.get(tail) if tail and isinstance(v, dict) else (None if tail else v)
                if v is not None and attr not in out:
                    out[attr] = v
                    break
    return out


def provider_of_model(model: str) -> str | None:
    """The provider a model name says, for spans that name none (Langfuse's generations)."""
    m = model.lower()
    return next((p for prefix, p in _MODEL_PROVIDERS if m.startswith(prefix)), None)


def llm_event(
    span: SpanView, *, conversation_id: str | None = None, row_id: str | None = None
) -> list | None:
    """The wire event (observability.events, kind llm) of a span, or None if it is no model call
    (no model attribute, a tool / agent-creation span, an OpenInference span of another kind).

    `conversation_id` is used when the span names none (the receiver finds it on an ancestor).
    Raises SpanRejected for a span whose values cannot be stored.
    """
    a = span.attrs
    if LANGFUSE_TYPE in a:
        a = _langfuse_attrs(a)
    if a.get(OPERATION_KEY) in NOT_A_CALL or a.get(OPENINFERENCE_KIND, "LLM") != "LLM":
        return None
    if LOGFIRE_SPAN_TYPE in a and _logfire_stream_request(span):
        return None
    found = _pick(a)
    model = _model(a, found)
    if model is None:
        return None
    provider = _slot_text(found, _S_PROVIDER, 100) or provider_of_model(model) or "unknown"
    inp = _slot_count(found, _S_IN)
    out = _slot_count(found, _S_OUT)
    read = _slot_count(found, _S_READ)
    write = _slot_count(found, _S_WRITE)
    if read + write > inp:  # uncached input reported apart from the cached parts
        inp += read + write
    if span.start_ns <= 0:
        raise SpanRejected(f"span {span.name!r:.60}: startTimeUnixNano is missing")
    if span.end_ns < span.start_ns:
        raise SpanRejected(f"span {span.name!r:.60}: ends before it starts")
    ts, latency_ms = span.start_ns / 1e9, (span.end_ns - span.start_ns) / 1e6
    # Logfire's log of a streamed call: its stream took `duration` s; the receiver adds the wait
    # before the first chunk from the request's span beside it (`merge.CallMerger.whole_streams`)
    if (d := logfire_stream_seconds(span)) is not None:
        ts, latency_ms = span.end_ns / 1e9 - d, d * 1e3
    failed = span.status_code == STATUS_ERROR or a.get("error.type") is not None
    error_type = raw_error = None
    if failed:
        status = a.get("http.response.status_code", a.get("http.status_code"))
        names = (a.get("error.type"), *span.exception_types, span.status_message)
        error_type = error_kind(status, names)
        raw_error = error_raw(status, names)
    bot = _slot_text(found, _S_BOT, 64, truncate=True)
    if bot is None:
        service = span.resource.get("service.name")
        if isinstance(service, str) and service and not service.startswith("unknown_service"):
            bot = service[:64]
    cache_hit = a.get("obs.cache_hit")
    event = ev.llm_call(
        row_id or f"{span.trace_id}-{span.span_id}",
        ts,
        bot=bot,
        agent=_slot_text(found, _S_AGENT, 100, truncate=True),
        decision_type=_slot_text(found, _S_DTYPE, 100, truncate=True),
        model=model,
        provider=provider,
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=read,
        cache_write_tokens=write,
        latency_ms=latency_ms,
        cache_hit=cache_hit if isinstance(cache_hit, bool) else False,
        cost_usd=None,  # priced at ingest like SDK events
        conversation_id=_slot_text(found, _S_CONV, 100, truncate=True) or conversation_id,
        success=not failed,
        error_type=error_type,
        error_raw=raw_error,
    )
    try:
        return check_wire(event)
    except ev.EventRejected as exc:
        raise SpanRejected(f"span {span.name!r:.60}: {exc}") from exc
