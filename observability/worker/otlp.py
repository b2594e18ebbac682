"""OTLP trace decoding: an `ExportTraceServiceRequest` body, protobuf or JSON, into `SpanView`s.

Protobuf is read with the `opentelemetry-proto` classes. JSON follows the OTLP JSON mapping (hex
trace and span ids, integer enums, lowerCamelCase names); the snake_case names and base64 ids of
protobuf's generic JSON mapping are accepted too. A body that cannot be read as a whole raises
`BadRequest`; a span with bad values is yielded as a `SpanRejected` in its place, so one bad span
never costs the rest of its batch. What a span means (GenAI or not) is `genai.py`'s job.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from observability.worker.response import BadRequest


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
    parent_span_id: str = ""  # 16 hex digits, "" for a root span
    scope: str = ""  # the instrumentation scope's name
    exception_types: tuple[str, ...] = ()  # `exception.type` of the span's exception events

    def __reduce__(self) -> tuple:
        # pickled by its fields, rebuilt by one constructor call: a decoder process sends a request's
        # views to the receiver, and the slots dataclass's own state protocol costs twice as much
        return (SpanView, (self.trace_id, self.span_id, self.name, self.start_ns, self.end_ns, self.attrs,
                           self.status_code, self.status_message, self.resource, self.parent_span_id,
                           self.scope, self.exception_types))  # fmt: skip


def decode_spans(body: bytes, *, as_json: bool) -> Iterator[SpanView | SpanRejected]:
    """Every span of the request, or the reason it was rejected; raises BadRequest for the body."""
    return _json_spans(body) if as_json else _proto_spans(body)


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


_SCALARS = frozenset({str, int, float, bool, bytes})
_KEYS: dict[str, str] = {}  # one str object per attribute name (pickled once a request, compared by identity)
_MAX_KEYS = 4096


def _proto_attrs(kvs: Any) -> dict[str, Any]:
    # the hottest loop of decoding: `ListFields` reads a set oneof in one call (about 40% less CPU
    # than `WhichOneof` then `getattr`); arrays and key-value lists take the general path
    out = {}
    keys = _KEYS
    for kv in kvs:
        v = kv.value
        f = v.ListFields()
        k = kv.key
        k = keys.get(k) or (keys.setdefault(k, k) if len(keys) < _MAX_KEYS else k)
        if not f:
            out[k] = None
            continue
        x = f[0][1]
        out[k] = x if type(x) in _SCALARS else _proto_value(v)
    return out


def _proto_exceptions(events: Any) -> tuple[str, ...]:
    out = []
    for e in events:
        if e.name == "exception":
            for kv in e.attributes:
                if kv.key == "exception.type":
                    out.append(str(_proto_value(kv.value)))
    return tuple(out)


_NO_TRACE = bytes(16)


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
            scope = ss.scope.name
            for sp in ss.spans:
                try:
                    trace_id, span_id = sp.trace_id, sp.span_id  # each read of a field is a new object
                    if len(trace_id) != 16 or trace_id == _NO_TRACE:
                        raise SpanRejected(f"span {sp.name!r:.60}: traceId must be 16 non-zero bytes")
                    if len(span_id) != 8:
                        raise SpanRejected(f"span {sp.name!r:.60}: spanId must be 8 bytes")
                    status, events = sp.status, sp.events
                    yield SpanView(trace_id.hex(), span_id.hex(), sp.name, sp.start_time_unix_nano,
                                   sp.end_time_unix_nano, _proto_attrs(sp.attributes), status.code,
                                   status.message, resource, sp.parent_span_id.hex(), scope,
                                   _proto_exceptions(events) if events else ())  # fmt: skip
                except SpanRejected as exc:
                    exc.scope = scope  # type: ignore[attr-defined]
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


def _json_exceptions(events: Any) -> tuple[str, ...]:
    if not isinstance(events, list):
        return ()
    out = []
    for e in events:
        if isinstance(e, dict) and e.get("name") == "exception":
            t = _json_attrs(e.get("attributes")).get("exception.type")
            if t is not None:
                out.append(str(t))
    return tuple(out)


def _json_span(sp: Any, resource: dict[str, Any], where: str, scope: str = "") -> SpanView:
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
        parent_span_id=_json_parent(_jget(sp, "parentSpanId", "parent_span_id"), where),
        scope=scope,
        exception_types=_json_exceptions(sp.get("events")),
    )


def _json_parent(value: Any, where: str) -> str:
    return _json_id(value, 8, f"{where}.parentSpanId") if value else ""


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
            scope_doc = ss.get("scope")
            scope = scope_doc.get("name") if isinstance(scope_doc, dict) else None
            scope = scope if isinstance(scope, str) else ""
            for k, sp in enumerate(spans):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                if resource_error is not None:
                    yield SpanRejected(f"{where}: resource: {resource_error}")
                    continue
                try:
                    yield _json_span(sp, resource, where, scope)
                except SpanRejected as exc:
                    exc.scope = scope  # type: ignore[attr-defined]
                    yield exc
