"""The worker's HTTP server: OTLP/HTTP trace receiver, Prometheus `/metrics`, `/healthz`.

Served on `WORKER_HTTP_HOST:WORKER_HTTP_PORT` (default 127.0.0.1:4318, the standard OTLP/HTTP
port) by a `ThreadingHTTPServer` in a daemon thread of the worker process.

`POST /v1/traces` takes an OTLP `ExportTraceServiceRequest`, protobuf (`application/x-protobuf`)
or JSON (`application/json`, the OTLP JSON mapping: hex trace and span ids, integer enums,
lowerCamelCase names), optionally gzip- or deflate-compressed. Spans that carry the OpenTelemetry
GenAI semantic conventions become `llm_calls` rows, priced and stored by the same ingest path as SDK
events, so a bot instrumented with OpenTelemetry instead of our SDK shows up on every page:

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
Spans without `gen_ai.*` attributes, GenAI spans without a model (tools, agent creation), and agent
spans (`invoke_agent`) of a trace whose model calls were reported as spans of their own (they would
count the same tokens twice) are counted and ignored. A span with bad values (negative tokens, end
before start, an id of the wrong length) is rejected alone: the answer is 200 with `partial_success`
saying how many and why. A body that cannot be decoded gets 400 with the reason; a missing or wrong
bearer token when `OTLP_INGEST_TOKEN` is set gets 401; a store outage gets 503 with `Retry-After`,
which OTLP exporters retry, so nothing is lost.

`GET /metrics` is the Prometheus text format (OpenMetrics when asked for) of a collector that reads
the store on every scrape; `GET /healthz` answers 200 or 503 with JSON reasons (store, Redis, worker
lag). See `StoreCollector` and `HealthChecker`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import concurrent.futures
import gzip
import hmac
import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from observability import events as ev
from observability.settings import Settings, get_settings
from observability.store import Store, StoreUnavailable, retention, schema
from observability.store.ingest import write_batch
from observability.store.sqlhelpers import as_datetime
from observability.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # as received
MAX_DECODED_BYTES = 64 * 1024 * 1024  # after decompression
MAX_REASONS = 5

# ---- GenAI semantic conventions ---------------------------------------------------------------

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


class BadRequest(Exception):
    """The request as a whole cannot be processed; `status` says how to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class SpanRejected(ValueError):
    """One span with bad values; the rest of the batch is still stored."""


@dataclass(slots=True)
class SpanView:
    """A span decoded from protobuf or JSON, reduced to what the receiver reads."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any]


# ---- protobuf ---------------------------------------------------------------------------------


def _proto_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_proto_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _proto_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def _proto_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _proto_value(kv.value) for kv in kvs}


def _proto_spans(body: bytes) -> Iterator[SpanView | SpanRejected]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        req = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BadRequest(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from exc
    for rs in req.resource_spans:
        resource = _proto_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                try:
                    if len(sp.trace_id) != 16 or not any(sp.trace_id):
                        raise SpanRejected(f"span {sp.name!r:.60}: traceId must be 16 non-zero bytes")
                    if len(sp.span_id) != 8:
                        raise SpanRejected(f"span {sp.name!r:.60}: spanId must be 8 bytes")
                    yield SpanView(sp.trace_id.hex(), sp.span_id.hex(), sp.name, sp.start_time_unix_nano,
                                   sp.end_time_unix_nano, _proto_attrs(sp.attributes), sp.status.code,
                                   sp.status.message, resource)  # fmt: skip
                except SpanRejected as exc:
                    yield exc


# ---- JSON (the OTLP JSON mapping) -------------------------------------------------------------


def _jget(d: dict, camel: str, snake: str, default: Any = None) -> Any:
    v = d.get(camel)
    if v is None:
        v = d.get(snake)
    return default if v is None else v


def _json_int(value: Any, what: str) -> int:
    """int64 fields come as strings or numbers in OTLP JSON."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if type(value) is float and value.is_integer():
        return int(value)
    raise SpanRejected(f"{what} must be an integer, got {value!r:.40}")


def _json_id(value: Any, nbytes: int, what: str) -> str:
    """Ids are hex in OTLP JSON; base64 (protobuf's generic JSON) is accepted too."""
    if isinstance(value, str):
        v = value.strip()
        if len(v) == 2 * nbytes:
            try:
                bytes.fromhex(v)
                return v.lower()
            except ValueError:
                pass
        try:
            raw = base64.b64decode(v, validate=True)
            if len(raw) == nbytes:
                return raw.hex()
        except (binascii.Error, ValueError):
            pass
    raise SpanRejected(f"{what} must be {2 * nbytes} hex digits, got {value!r:.40}")


_ANY_VALUE_KEYS = (
    ("stringValue", "string_value"),
    ("boolValue", "bool_value"),
    ("intValue", "int_value"),
    ("doubleValue", "double_value"),
    ("arrayValue", "array_value"),
    ("kvlistValue", "kvlist_value"),
    ("bytesValue", "bytes_value"),
)


def _json_value(v: Any, key: str) -> Any:
    if not isinstance(v, dict):
        raise SpanRejected(f"attribute {key!r:.60}: value must be an AnyValue object")
    for camel, snake in _ANY_VALUE_KEYS:
        if camel in v or snake in v:
            x = _jget(v, camel, snake)
            if camel == "stringValue":
                if not isinstance(x, str):
                    raise SpanRejected(f"attribute {key!r:.60}: stringValue must be a string")
                return x
            if camel == "boolValue":
                if not isinstance(x, bool):
                    raise SpanRejected(f"attribute {key!r:.60}: boolValue must be true or false")
                return x
            if camel == "intValue":
                return _json_int(x, f"attribute {key!r:.60}")
            if camel == "doubleValue":
                if isinstance(x, str) and x in ("NaN", "Infinity", "-Infinity"):
                    return float(x.replace("Infinity", "inf"))
                if type(x) not in (int, float):
                    raise SpanRejected(f"attribute {key!r:.60}: doubleValue must be a number")
                return float(x)
            if camel == "arrayValue":
                values = _jget(x or {}, "values", "values", [])
                if not isinstance(values, list):
                    raise SpanRejected(f"attribute {key!r:.60}: arrayValue.values must be an array")
                return [_json_value(i, key) for i in values]
            if camel == "kvlistValue":
                return _json_attrs(_jget(x or {}, "values", "values", []))
            return x  # bytesValue: base64 text, kept as is
    return None  # an empty AnyValue


def _json_attrs(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise SpanRejected("attributes must be an array of {key, value}")
    out: dict[str, Any] = {}
    for kv in items:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise SpanRejected("every attribute needs a string key")
        out[kv["key"]] = _json_value(kv.get("value", {}), kv["key"])
    return out


_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _json_span(sp: Any, resource: dict[str, Any], where: str) -> SpanView:
    if not isinstance(sp, dict):
        raise SpanRejected(f"{where} must be an object")
    name = sp.get("name", "")
    if not isinstance(name, str):
        raise SpanRejected(f"{where}.name must be a string")
    status = sp.get("status") or {}
    if not isinstance(status, dict):
        raise SpanRejected(f"{where}.status must be an object")
    code = status.get("code", 0)
    code = _STATUS_NAMES.get(code, code) if isinstance(code, str) and not code.isdigit() else code
    message = status.get("message") or ""
    return SpanView(
        trace_id=_json_id(_jget(sp, "traceId", "trace_id"), 16, f"{where}.traceId"),
        span_id=_json_id(_jget(sp, "spanId", "span_id"), 8, f"{where}.spanId"),
        name=name,
        start_ns=_json_int(
            _jget(sp, "startTimeUnixNano", "start_time_unix_nano", 0), f"{where}.startTimeUnixNano"
        ),
        end_ns=_json_int(_jget(sp, "endTimeUnixNano", "end_time_unix_nano", 0), f"{where}.endTimeUnixNano"),
        attrs=_json_attrs(sp.get("attributes")),
        status_code=_json_int(code, f"{where}.status.code"),
        status_message=message if isinstance(message, str) else str(message),
        resource=resource,
    )


def _as_list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{what} must be an array")
    return value


def _json_spans(body: bytes) -> Iterator[SpanView | SpanRejected]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object (ExportTraceServiceRequest)")
    for i, rs in enumerate(_as_list(_jget(doc, "resourceSpans", "resource_spans"), "resourceSpans")):
        if not isinstance(rs, dict):
            raise BadRequest(f"resourceSpans[{i}] must be an object")
        scopes = _as_list(_jget(rs, "scopeSpans", "scope_spans"), f"resourceSpans[{i}].scopeSpans")
        try:
            res = rs.get("resource") or {}
            if not isinstance(res, dict):
                raise SpanRejected(f"resourceSpans[{i}].resource must be an object")
            resource = _json_attrs(res.get("attributes"))
            resource_error = None
        except SpanRejected as exc:
            resource, resource_error = {}, exc
        for j, ss in enumerate(scopes):
            if not isinstance(ss, dict):
                raise BadRequest(f"resourceSpans[{i}].scopeSpans[{j}] must be an object")
            spans = _as_list(ss.get("spans"), f"resourceSpans[{i}].scopeSpans[{j}].spans")
            for k, sp in enumerate(spans):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                if resource_error is not None:
                    yield SpanRejected(f"{where}: resource: {resource_error}")
                    continue
                try:
                    yield _json_span(sp, resource, where)
                except SpanRejected as exc:
                    yield exc


# ---- span -> llm event ------------------------------------------------------------------------


def is_genai(span: SpanView) -> bool:
    return any(k.startswith("gen_ai.") for k in span.attrs)


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


def llm_event(span: SpanView) -> list | None:
    """The wire event (observability.events, kind llm) of a GenAI span, or None if it is no model call.

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
    event = [
        ev.KIND_LLM,
        f"{span.trace_id}-{span.span_id}",
        span.start_ns / 1e9,
        bot,
        _text(a, AGENT_KEYS, 100, truncate=True),
        _text(a, ("obs.decision_type",), 100, truncate=True),
        model,
        provider,
        inp,
        out,
        read,
        write,
        (span.end_ns - span.start_ns) / 1e6,
        cache_hit if isinstance(cache_hit, bool) else False,
        None,  # cost: priced at ingest like SDK events
        _text(a, (CONVERSATION_KEY,), 100),
        not failed,
        error_type,
    ]
    try:
        return ev.check_wire(event)
    except ev.EventRejected as exc:
        raise SpanRejected(f"span {span.name!r:.60}: {exc}") from exc


# ---- the receiver -----------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rpc_status(code: int, message: str) -> bytes:
    """A google.rpc.Status message (code, message), the OTLP/HTTP error body for protobuf."""
    msg = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def _decode_body(body: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {enc!r:.40} (use gzip or none)", 415)
    wbits = 31 if enc != "deflate" else 15
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, MAX_DECODED_BYTES + 1)
        if len(out) > MAX_DECODED_BYTES:
            raise BadRequest(f"decompressed body exceeds {MAX_DECODED_BYTES} bytes", 413)
        if not d.eof:
            raise BadRequest(f"truncated {enc} body")
        return out
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {enc}: {exc}") from exc


class OTLPReceiver:
    """`POST /v1/traces`: decode, turn GenAI spans into llm_calls rows, answer per OTLP/HTTP."""

    RECENT_TRACES = 100_000

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()  # HTTP status -> requests
        self.spans: collections.Counter = collections.Counter()  # outcome -> spans
        # traces whose model calls came as spans of their own (agent spans there are aggregates)
        self._traces_with_calls: collections.OrderedDict[str, None] = collections.OrderedDict()

    def _count(self, status: int, **spans: int) -> None:
        with self._lock:
            self.requests[str(status)] += 1
            for k, v in spans.items():
                if v:
                    self.spans[k] += v

    def _authorized(self, authorization: str | None) -> bool:
        token = self.settings.otlp_ingest_token
        if not token:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def export(
        self,
        body: bytes,
        content_type: str | None,
        content_encoding: str | None = None,
        authorization: str | None = None,
    ) -> Response:
        ctype = (content_type or "").split(";")[0].strip().lower()
        as_json = ctype == "application/json" or (not ctype and body.lstrip()[:1] == b"{")

        def error(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
            self._count(status)
            code = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}.get(status, 13)
            if as_json:
                data = json.dumps({"code": code, "message": reason}).encode()
                return Response(status, data, "application/json", headers or {})
            return Response(status, rpc_status(code, reason), "application/x-protobuf", headers or {})

        if not self._authorized(authorization):
            return error(
                401, "missing or wrong bearer token (OTLP_INGEST_TOKEN)", {"WWW-Authenticate": "Bearer"}
            )
        if ctype and ctype not in ("application/json", "application/x-protobuf", "application/protobuf"):
            return error(
                415, f"unsupported Content-Type {ctype!r:.60}: use application/x-protobuf or application/json"
            )
        try:
            data = _decode_body(body, content_encoding)
            views, rejected = [], []
            for item in _json_spans(data) if as_json else _proto_spans(data):
                (rejected if isinstance(item, SpanRejected) else views).append(item)
            received = len(views) + len(rejected)
        except BadRequest as exc:
            log.info("OTLP request rejected: %s", exc)
            return error(exc.status, str(exc))
        events, agent_spans, ignored = [], [], 0
        for v in views:
            if not is_genai(v):
                ignored += 1
                continue
            try:
                e = llm_event(v)
            except SpanRejected as exc:
                rejected.append(exc)
                continue
            if e is None:
                ignored += 1
            elif v.attrs.get(OPERATION_KEY) == AGENT_OPERATION:
                agent_spans.append((v, e))
            else:
                events.append(e)
                self._remember(v.trace_id)
        for v, e in agent_spans:
            if self._seen(v.trace_id):
                ignored += 1
            else:
                events.append(e)
        if events:
            try:
                result = write_batch(self.store, events, self.settings)
            except StoreUnavailable as exc:
                log.warning("OTLP export deferred, store unavailable: %s", exc)
                return error(503, "store unavailable, retry later", {"Retry-After": "5"})
            except Exception as exc:  # noqa: BLE001
                log.exception("OTLP export failed")
                return error(500, f"cannot store spans: {type(exc).__name__}")
            if result.rejected:  # not expected: events were checked above
                rejected.extend(SpanRejected(r) for r in result.reasons)
        self._count(200, received=received, llm=len(events), ignored=ignored, rejected=len(rejected))
        return self._success(as_json, rejected)

    def _remember(self, trace_id: str) -> None:
        with self._lock:
            d = self._traces_with_calls
            d[trace_id] = None
            d.move_to_end(trace_id)
            while len(d) > self.RECENT_TRACES:
                d.popitem(last=False)

    def _seen(self, trace_id: str) -> bool:
        with self._lock:
            return trace_id in self._traces_with_calls

    @staticmethod
    def _success(as_json: bool, rejected: list[SpanRejected]) -> Response:
        message = ""
        if rejected:
            reasons = [str(r) for r in rejected[:MAX_REASONS]]
            more = f" (and {len(rejected) - MAX_REASONS} more)" if len(rejected) > MAX_REASONS else ""
            message = f"{len(rejected)} span(s) rejected: " + "; ".join(reasons) + more
            log.info("OTLP partial success: %s", message)
        if as_json:
            doc: dict[str, Any] = {}
            if rejected:
                doc["partialSuccess"] = {"rejectedSpans": str(len(rejected)), "errorMessage": message}
            return Response(200, json.dumps(doc).encode(), "application/json")
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = len(rejected)
            resp.partial_success.error_message = message
        return Response(200, resp.SerializeToString(), "application/x-protobuf")


# ---- /metrics -----------------------------------------------------------------------------

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
ALERT_SEVERITIES = ("info", "warning", "critical")
WORKERS_SHOWN_FOR = timedelta(hours=1)
NONE = sa.literal_column("''")


def _le(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(float(b))


class StoreCollector:
    """A prometheus_client collector that reads the store on every scrape.

    - Counters (`obs_bot_operations_total`, `obs_llm_requests_total`, `obs_llm_cost_usd_total`,
      `obs_llm_tokens_total`, errors...) are sums of the per-hour rollups plus what retention purged
      from them, so they never go down; they advance when the rollup step runs (every tick).
    - Latency histograms (`obs_bot_operation_duration_seconds`, `obs_bot_response_duration_seconds`,
      `obs_llm_latency_seconds`) are gauge histograms of the raw rows of the last
      `METRICS_WINDOW_S` seconds (default 300): query them with `histogram_quantile` directly,
      without `rate()`.
    - Gauges: open alerts by severity and state, age of the newest row per event table (ingest
      lag), worker heartbeat ages, rollup backlog, and with Redis the ingest stream's length and
      pending entries. `obs_store_up` is 0 (and the store-backed families absent) when the store
      cannot be read.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        redis: Any = None,
        consumer: Any = None,
        receiver: OTLPReceiver | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.redis = redis
        self.consumer = consumer
        if consumer is None and redis is not None:
            from observability.store.stream import StreamConsumer

            self.consumer = StreamConsumer(store, redis, settings, "metrics")
        self.receiver = receiver
        self.now = now

    def describe(self) -> list:
        return []  # nothing fixed; avoids a store query when the collector is registered

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        started = time.perf_counter()
        now = self.now()
        up = GaugeMetricFamily("obs_store_up", "1 when the SQL store answered this scrape")
        try:
            with self.store.connect() as conn:
                families = list(self._store_families(conn, now))
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape still answers when the store is down
            log.warning("metrics: store unavailable: %s", exc)
            families = []
            up.add_metric([], 0)
        yield up
        yield from families
        yield from self._redis_families()
        yield from self._receiver_families()
        took = GaugeMetricFamily("obs_scrape_duration_seconds", "Time this scrape spent reading the store")
        took.add_metric([], time.perf_counter() - started)
        yield took

    # -- store-backed families
    def _store_families(self, conn: sa.Connection, now: datetime) -> Iterator[Any]:
        yield from self._counters(conn)
        since = now - timedelta(seconds=self.settings.metrics_window_s)
        yield self._histogram(conn, schema.bot_operations, ("bot", "operation"), "duration_ms", since,
                              "obs_bot_operation_duration_seconds",
                              "Bot operation durations in the last METRICS_WINDOW_S seconds (gauge histogram)")  # fmt: skip
        yield self._histogram(conn, schema.bot_interactions, ("bot",), "duration_ms", since,
                              "obs_bot_response_duration_seconds",
                              "Bot response durations in the last METRICS_WINDOW_S seconds (gauge histogram)")  # fmt: skip
        yield self._histogram(conn, schema.llm_calls, ("bot", "model"), "latency_ms", since,
                              "obs_llm_latency_seconds",
                              "LLM call latencies in the last METRICS_WINDOW_S seconds (gauge histogram)")  # fmt: skip
        from prometheus_client.core import GaugeMetricFamily

        window = GaugeMetricFamily("obs_metrics_window_seconds", "Window of the latency gauge histograms")
        window.add_metric([], self.settings.metrics_window_s)
        yield window
        yield self._alerts(conn)
        yield from self._lag(conn, now)

    def _counters(self, conn: sa.Connection) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        offsets = retention.purged_offsets(self.store, conn)
        ops: dict[tuple, list[float]] = {}
        h = schema.rollup_ops_hour
        for r in conn.execute(
            sa.select(h.c.bot, h.c.operation, sa.func.sum(h.c.count), sa.func.sum(h.c.errors),
                      sa.func.sum(h.c.cache_hits), sa.func.sum(h.c.sum_ms))
            .group_by(h.c.bot, h.c.operation)
        ):  # fmt: skip
            ops[(r[0] or "", r[1] or "")] = [float(x or 0) for x in r[2:]]
        for k, v in offsets.get("rollup_ops_hour", {}).items():
            acc = ops.setdefault(k, [0.0] * len(v))
            ops[k] = [a + b for a, b in zip(acc, v, strict=True)]
        labels = ["bot", "operation"]
        total = CounterMetricFamily("obs_bot_operations", "Bot operations tracked (rolled up)", labels=labels)
        errors = CounterMetricFamily("obs_bot_operation_errors", "Bot operations that failed", labels=labels)
        hits = CounterMetricFamily(
            "obs_bot_operation_cache_hits", "Bot operations served from cache", labels=labels
        )
        for k, v in sorted(ops.items()):
            total.add_metric(list(k), v[0])
            errors.add_metric(list(k), v[1])
            hits.add_metric(list(k), v[2])
        yield from (total, errors, hits)

        llm: dict[tuple, list[float]] = {}
        h = schema.rollup_llm_hour
        sums = retention.PURGED_SUMS["rollup_llm_hour"][1]
        for r in conn.execute(
            sa.select(h.c.bot, h.c.model, h.c.provider, *[sa.func.sum(h.c[c]) for c in sums]).group_by(
                h.c.bot, h.c.model, h.c.provider
            )
        ):
            llm[(r[0] or "", r[1] or "", r[2] or "")] = [float(x or 0) for x in r[3:]]
        for k, v in offsets.get("rollup_llm_hour", {}).items():
            acc = llm.setdefault(k, [0.0] * len(v))
            llm[k] = [a + b for a, b in zip(acc, v, strict=True)]
        labels = ["bot", "model", "provider"]
        fams = {
            "count": CounterMetricFamily("obs_llm_requests", "LLM calls (rolled up)", labels=labels),
            "errors": CounterMetricFamily("obs_llm_errors", "LLM calls that failed", labels=labels),
            "cost_usd": CounterMetricFamily("obs_llm_cost_usd", "Cost of LLM calls in USD", labels=labels),
            "cost_saved_usd": CounterMetricFamily(
                "obs_llm_cache_savings_usd", "USD saved by prompt and response caching", labels=labels
            ),
        }
        tokens = CounterMetricFamily("obs_llm_tokens", "LLM tokens by type (input includes cached)",
                                     labels=[*labels, "type"])  # fmt: skip
        token_cols = {"input_tokens": "input", "output_tokens": "output", "cache_read_tokens": "cache_read",
                      "cache_write_tokens": "cache_write"}  # fmt: skip
        for k, v in sorted(llm.items()):
            by = dict(zip(sums, v, strict=True))
            for col, fam in fams.items():
                fam.add_metric(list(k), by[col])
            for col, t in token_cols.items():
                tokens.add_metric([*k, t], by[col])
        yield from fams.values()
        yield tokens

    def _histogram(
        self,
        conn: sa.Connection,
        table: sa.Table,
        label_cols: tuple[str, ...],
        value_col: str,
        since: datetime,
        name: str,
        doc: str,
    ) -> Any:
        from prometheus_client.core import GaugeHistogramMetricFamily

        v = table.c[value_col]
        cols = [sa.func.coalesce(table.c[c], NONE) for c in label_cols]
        aggs = [sa.func.count(), sa.func.sum(v)]
        aggs += [sa.func.sum(sa.case((v <= b * 1000.0, 1), else_=0)) for b in LATENCY_BUCKETS_S]
        positions = [sa.literal_column(str(i + 1)) for i in range(len(cols))]
        rows = conn.execute(sa.select(*cols, *aggs).where(table.c.ts >= since).group_by(*positions)).all()
        fam = GaugeHistogramMetricFamily(name, doc, labels=list(label_cols))
        n = len(label_cols)
        for r in rows:
            count, total_ms = int(r[n]), float(r[n + 1] or 0.0)
            buckets = [(_le(b), float(c or 0)) for b, c in zip(LATENCY_BUCKETS_S, r[n + 2 :], strict=True)]
            buckets.append(("+Inf", float(count)))
            fam.add_metric([str(x) for x in r[:n]], buckets, gsum_value=total_ms / 1000.0)
        return fam

    def _alerts(self, conn: sa.Connection) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        a = schema.alerts
        counts = {(s, st): 0 for s in ALERT_SEVERITIES for st in ("firing", "acknowledged")}
        for sev, state, n in conn.execute(
            sa.select(a.c.severity, a.c.state, sa.func.count()).where(a.c.state != "resolved")
            .group_by(a.c.severity, a.c.state)
        ):  # fmt: skip
            counts[(sev, state)] = int(n)
        fam = GaugeMetricFamily("obs_alerts_open", "Alerts not resolved, by severity and state",
                                labels=["severity", "state"])  # fmt: skip
        for (sev, state), n in sorted(counts.items()):
            fam.add_metric([sev, state], n)
        return fam

    def _lag(self, conn: sa.Connection, now: datetime) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        newest = GaugeMetricFamily("obs_ingest_newest_event_age_seconds",
                                   "Seconds since the newest stored event of each table (ingest lag)",
                                   labels=["table"])  # fmt: skip
        for t in schema.RAW_EVENT_TABLES:
            ts = as_datetime(conn.execute(sa.select(sa.func.max(t.c.ts))).scalar())
            if ts is not None:
                newest.add_metric([t.name], max(0.0, (now - ts).total_seconds()))
        yield newest
        hb = schema.worker_heartbeats
        rows = conn.execute(
            sa.select(hb.c.worker_id, hb.c.is_leader, hb.c.last_tick_at, hb.c.last_tick_ms).where(
                hb.c.last_tick_at >= now - WORKERS_SHOWN_FOR
            )
        ).all()
        age = GaugeMetricFamily("obs_worker_heartbeat_age_seconds", "Seconds since each worker's last tick",
                                labels=["worker_id", "leader"])  # fmt: skip
        tick = GaugeMetricFamily("obs_worker_tick_duration_seconds", "Duration of each worker's last tick",
                                 labels=["worker_id"])  # fmt: skip
        leader_age = None
        for wid, is_leader, last, ms in rows:
            a = max(0.0, (now - as_datetime(last)).total_seconds())
            age.add_metric([wid, "true" if is_leader else "false"], a)
            if ms is not None:
                tick.add_metric([wid], float(ms) / 1000.0)
            if is_leader:
                leader_age = a if leader_age is None else min(leader_age, a)
        yield age
        yield tick
        lead = GaugeMetricFamily("obs_leader_heartbeat_age_seconds",
                                 "Seconds since the leading worker's last tick (+Inf: no leader in the last hour)")  # fmt: skip
        lead.add_metric([], math.inf if leader_age is None else leader_age)
        yield lead
        d = schema.rollup_dirty
        dirty = GaugeMetricFamily("obs_rollup_backlog_minutes", "Minutes waiting to be rolled up")
        dirty.add_metric([], float(conn.execute(sa.select(sa.func.count()).select_from(d)).scalar() or 0))
        yield dirty

    # -- Redis and the receiver
    def _redis_families(self) -> Iterator[Any]:
        if self.redis is None:
            return
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("obs_redis_up", "1 when Redis answered this scrape")
        try:
            self.redis.ping()
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        yield up
        depth = GaugeMetricFamily("obs_ingest_queue_depth", "Ingest stream entries: in the stream, "
                                  "and delivered to a worker but not yet stored", labels=["state"])  # fmt: skip
        length = self.consumer.stream_length()
        if length is not None:
            depth.add_metric(["stream"], length)
        pending = self.consumer.pending_count()
        if pending is not None:
            depth.add_metric(["pending"], pending)
        yield depth

    def _receiver_families(self) -> Iterator[Any]:
        if self.receiver is None:
            return
        from prometheus_client.core import CounterMetricFamily

        with self.receiver._lock:
            requests = dict(self.receiver.requests)
            spans = dict(self.receiver.spans)
        req = CounterMetricFamily("obs_otlp_requests", "OTLP export requests by HTTP status", labels=["code"])
        for code, n in sorted(requests.items()):
            req.add_metric([code], n)
        sp = CounterMetricFamily("obs_otlp_spans", "OTLP spans: received, stored as LLM calls (llm), "
                                 "ignored (not GenAI model calls), rejected", labels=["outcome"])  # fmt: skip
        for outcome in ("received", "llm", "ignored", "rejected"):
            sp.add_metric([outcome], spans.get(outcome, 0))
        yield req
        yield sp


# ---- /healthz -----------------------------------------------------------------------------


class HealthChecker:
    """Store ping, Redis ping (when configured) and worker lag; each check bounded in time."""

    TIMEOUT_S = 3.0

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        redis: Any = None,
        worker_id: str | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.redis = redis
        self.worker_id = worker_id
        self.now = now
        self.started_at = now()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")

    @property
    def max_lag_s(self) -> float:
        s = self.settings
        return s.health_max_worker_lag_s if s.health_max_worker_lag_s > 0 else max(60.0, 4 * s.worker_tick_s)

    def _bounded(self, fn: Callable[[], dict]) -> dict:
        t0 = time.perf_counter()
        try:
            out = self._pool.submit(fn).result(timeout=self.TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            out = {"ok": False, "error": f"no answer within {self.TIMEOUT_S:.0f}s"}
        except Exception as exc:  # noqa: BLE001
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    def _store(self) -> dict:
        now = self.now()
        with self.store.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            hb = schema.worker_heartbeats
            rows = conn.execute(sa.select(hb.c.worker_id, hb.c.is_leader, hb.c.last_tick_at)).all()
        return {
            "ok": True,
            "heartbeats": [(w, bool(lead), as_datetime(t)) for w, lead, t in rows],
            "now": now,
        }

    def _redis(self) -> dict:
        self.redis.ping()
        return {"ok": True}

    def check(self) -> tuple[bool, dict]:
        reasons: list[str] = []
        checks: dict[str, Any] = {}
        store = self._bounded(self._store)
        heartbeats = store.pop("heartbeats", None)
        now = store.pop("now", None) or self.now()
        checks["store"] = store
        if not store["ok"]:
            reasons.append(f"store unreachable: {store.get('error')}")
        if self.redis is not None:
            checks["redis"] = self._bounded(self._redis)
            if not checks["redis"]["ok"]:
                reasons.append(f"redis unreachable: {checks['redis'].get('error')}")
        limit = self.max_lag_s
        worker: dict[str, Any] = {"max_lag_s": limit}
        if heartbeats is None:
            worker.update(ok=False, error="unknown: the store cannot be read")
        else:
            in_grace = (now - self.started_at).total_seconds() < limit
            own = [t for w, _, t in heartbeats if self.worker_id is not None and w == self.worker_id]
            leaders = [t for _, lead, t in heartbeats if lead]
            newest = max((t for _, _, t in heartbeats), default=None)
            lag_of = lambda t: round((now - t).total_seconds(), 1) if t is not None else None  # noqa: E731
            worker["lag_s"] = lag_of(max(own) if own else newest)
            worker["leader_lag_s"] = lag_of(max(leaders) if leaders else None)
            ok = True
            if self.worker_id is not None and not own:
                if not in_grace:
                    ok = False
                    reasons.append(f"this worker has not ticked within {limit:.0f}s of starting")
            elif worker["lag_s"] is None:
                if not in_grace:
                    ok = False
                    reasons.append("no worker heartbeat in the store")
            elif worker["lag_s"] > limit:
                ok = False
                reasons.append(f"worker lag {worker['lag_s']:.0f}s exceeds {limit:.0f}s")
            if worker["leader_lag_s"] is None:
                if not in_grace:
                    ok = False
                    reasons.append("no leading worker heartbeat")
            elif worker["leader_lag_s"] > limit:
                ok = False
                reasons.append(f"leader lag {worker['leader_lag_s']:.0f}s exceeds {limit:.0f}s")
            worker["ok"] = ok
        checks["worker"] = worker
        healthy = not reasons
        return healthy, {
            "status": "ok" if healthy else "unhealthy",
            "reasons": reasons,
            "checks": checks,
            "worker_id": self.worker_id,
            "time": now.isoformat() + "Z",
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---- the server -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "observability-worker"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, resp: Response) -> None:
        body = resp.body
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += n
                if size > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes", 413)
                chunks.append(self.rfile.read(n))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            self.close_connection = True
            raise BadRequest("invalid Content-Length") from exc
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes", 413)
        return self.rfile.read(length) if length > 0 else b""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        app = self.server.app
        if self._path() != "/v1/traces":
            self._send(Response(404, b"not found\n"))
            return
        try:
            body = self._read_body()
        except (BadRequest, ValueError) as exc:
            status = exc.status if isinstance(exc, BadRequest) else 400
            self._send(Response(status, f"{exc}\n".encode()))
            return
        resp = app.receiver.export(
            body,
            self.headers.get("Content-Type"),
            self.headers.get("Content-Encoding"),
            self.headers.get("Authorization"),
        )
        self._send(resp)

    def do_GET(self) -> None:  # noqa: N802
        app = self.server.app
        path = self._path()
        if path == "/metrics":
            from prometheus_client.exposition import choose_encoder

            encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
            body = encoder(app.registry)
            headers = {}
            if "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 1024:
                body = gzip.compress(body, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
            self._send(Response(200, body, content_type, headers))
        elif path == "/healthz":
            healthy, doc = app.health.check()
            self._send(
                Response(200 if healthy else 503, json.dumps(doc, default=str).encode(), "application/json")
            )
        elif path == "/v1/traces":
            self._send(Response(405, b"POST OTLP trace data here\n", headers={"Allow": "POST"}))
        else:
            self._send(Response(404, b"not found: /healthz, /metrics, /v1/traces\n"))

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: WorkerHTTP


@dataclass
class WorkerHTTP:
    """The three endpoints over one store; `serve` runs them on a port."""

    store: Store
    settings: Settings
    redis: Any = None
    worker_id: str | None = None
    consumer: Any = None

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.receiver = OTLPReceiver(self.store, self.settings)
        self.collector = StoreCollector(self.store, self.settings, redis=self.redis, consumer=self.consumer,
                                        receiver=self.receiver)  # fmt: skip
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.health = HealthChecker(self.store, self.settings, redis=self.redis, worker_id=self.worker_id)


class RunningServer:
    """A server running in a daemon thread; call it (or `stop()`) to shut it down."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = server.server_address[:2]
        self.app = server.app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.app.health.close()

    __call__ = stop


def serve(
    store: Store,
    settings: Settings | None = None,
    *,
    redis: Any = None,
    worker_id: str | None = None,
    consumer: Any = None,
    host: str | None = None,
    port: int | None = None,
) -> RunningServer:
    """Serve /v1/traces, /metrics and /healthz in a daemon thread (port 0: any free port)."""
    settings = settings or get_settings()
    host = settings.worker_http_host if host is None else host
    port = settings.worker_http_port if port is None else port
    server = _Server((host, port), _Handler)
    server.app = WorkerHTTP(store, settings, redis=redis, worker_id=worker_id, consumer=consumer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="worker-http", daemon=True)  # fmt: skip
    thread.start()
    running = RunningServer(server, thread)
    log.info("worker HTTP on %s (/v1/traces, /metrics, /healthz)", running.url)
    return running


def start(worker: Any) -> Callable[[], None] | None:
    """Start the HTTP server of a running `observability.worker.runner.Worker`; returns its stop callable.

    When the port is taken (another worker on this host) the worker runs on without it.
    """
    try:
        return serve(worker.store, worker.settings, redis=worker.redis, worker_id=worker.worker_id,
                     consumer=worker.consumer)  # fmt: skip
    except OSError as exc:
        s = worker.settings
        log.error("cannot serve HTTP on %s:%s (%s); /healthz, /metrics and /v1/traces are off in this worker",
                  s.worker_http_host, s.worker_http_port, exc)  # fmt: skip
        return None


__all__ = [
    "HealthChecker",
    "OTLPReceiver",
    "RunningServer",
    "StoreCollector",
    "WorkerHTTP",
    "llm_event",
    "serve",
    "start",
]
