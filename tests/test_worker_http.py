"""The worker's HTTP face: an OTLP/HTTP receiver, Prometheus /metrics and /healthz.

A bot instrumented with the real OpenTelemetry SDK and its OTLP HTTP exporter sends GenAI spans to a
running server; they become priced `llm_calls` rows. JSON and gzip bodies work too, a bearer token is
enforced when configured, garbage gets a 400 with a reason and a bad span never costs the rest of
its batch. A scrape of /metrics parses with prometheus_client and agrees with the store; /healthz
turns 503 when the store goes away.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families
from requests.structures import CaseInsensitiveDict
from support import TcpProxy, free_port, subprocess_env, wait_for

from observability import keys
from observability.analytics.llm_observability import LLMObservabilityService
from observability.settings import Settings
from observability.store import Store, rollups, schema
from observability.store.ingest import write_batch
from observability.store.pricing import cost_of
from observability.store.stream import StreamConsumer
from observability.timeutil import to_epoch, utcnow
from observability.ui.frames import unknown_models
from observability.worker.ingest_token import ensure_ingest_token
from observability.worker.metrics import LATENCY_BUCKETS_S
from observability.worker.receiver import MAX_BODY_BYTES, MAX_DECODED_BYTES
from observability.worker.runner import Worker
from observability.worker.server import RunningServer, serve, start
from observability.worker.steps import Step, step_heartbeat

# ---- helpers ----------------------------------------------------------------------------------


def request(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, CaseInsensitiveDict, bytes]:
    """(status, headers (names in any case, as HTTP has them), body)."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, CaseInsensitiveDict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, CaseInsensitiveDict(exc.headers), exc.read()


def post_json(
    url: str, doc: object, *, gz: bool = False, token: str | None = None, timeout: float = 10.0
) -> tuple[int, dict]:
    body = json.dumps(doc).encode()
    headers = {"Content-Type": "application/json"}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, _, raw = request(f"{url}/v1/traces", body, headers, timeout=timeout)
    return status, json.loads(raw) if raw else {}


def rows(store: Store) -> dict[str, dict]:
    with store.connect() as conn:
        return {r.trace_id: dict(r._mapping) for r in conn.execute(sa.select(schema.llm_calls))}


def any_value(v: object) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def json_span(
    attrs: dict, *, start: datetime, ms: float, error: str | None = None, name: str = "chat"
) -> dict:
    start_ns = int(to_epoch(start) * 1e9)
    span = {
        "traceId": uuid.uuid4().hex,
        "spanId": uuid.uuid4().hex[:16],
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + int(ms * 1e6)),
        "attributes": [{"key": k, "value": any_value(v)} for k, v in attrs.items()],
    }
    if error:
        span["status"] = {"code": 2, "message": error}
    return span


def otlp_json(spans: list[dict], service: str = "seller_bot") -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}],
            }
        ]
    }


def priced(provider: str, model: str, it: int, ot: int, cr: int = 0, cw: int = 0) -> float:
    return cost_of(provider, model, it, ot, cr, cw, response_cache_hit=False).usd


@pytest.fixture
def server(store: Store, make_settings: Callable[..., Settings]) -> Iterator[RunningServer]:
    srv = serve(store, make_settings(store.url), port=0)
    yield srv
    srv.stop()


# ---- the OTLP receiver ------------------------------------------------------------------------


def test_genai_spans_from_the_opentelemetry_sdk_become_priced_llm_calls(
    store: Store, server: RunningServer
) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", compression=Compression.Gzip)
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "lead_bot"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("bot")
    t0 = time.time_ns() - 5_000_000_000

    chat = tracer.start_span("chat claude-sonnet-4-5", start_time=t0)
    chat.set_attributes({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 320,
        "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.cache_creation.input_tokens": 200,
        "gen_ai.conversation.id": "conv-otel-1", "gen_ai.agent.name": "qualifier",
    })  # fmt: skip
    chat.end(end_time=t0 + 1_234_000_000)

    legacy = tracer.start_span("chat gpt-4o-mini", start_time=t0)
    legacy.set_attributes({
        "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 800, "gen_ai.usage.output_tokens": 40,
        "gen_ai.usage.cache_read_input_tokens": 300, "error.type": "RateLimitError",
        "gen_ai.conversation.id": "conv-otel-2",
    })  # fmt: skip
    legacy.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
    legacy.end(end_time=t0 + 250_000_000)

    with tracer.start_as_current_span("GET /leads"):  # not GenAI: ignored
        pass
    with tracer.start_as_current_span("execute_tool lookup") as tool:  # GenAI, but no model call
        tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"})
    assert provider.force_flush(10_000)

    stored = rows(store)
    assert len(stored) == 2
    c, g = (stored[f"{s.context.trace_id:032x}-{s.context.span_id:016x}"] for s in (chat, legacy))
    assert (c["model"], c["provider"], c["bot"], c["agent"]) == (  # the model asked for, as its failures'
        "claude-sonnet-4-5", "anthropic", "lead_bot", "qualifier")  # fmt: skip
    assert (c["input_tokens"], c["output_tokens"], c["cache_read_tokens"], c["cache_write_tokens"]) == (
        1500, 320, 1000, 200)  # fmt: skip
    assert c["conversation_id"] == "conv-otel-1" and c["success"] and c["error_type"] is None
    assert c["latency_ms"] == pytest.approx(1234.0)
    assert abs((c["ts"] - datetime(1970, 1, 1)).total_seconds() - t0 / 1e9) < 1e-3
    assert c["cost_usd"] == pytest.approx(priced("anthropic", "claude-sonnet-4-5", 1500, 320, 1000, 200))
    assert c["cost_usd"] > 0 and c["price_known"]
    assert (g["model"], g["provider"], g["cache_read_tokens"]) == ("gpt-4o-mini", "openai", 300)
    assert not g["success"] and g["error_type"] == "rate_limit"  # one vocabulary (genai.ERROR_KINDS)
    assert g["cost_usd"] == pytest.approx(priced("openai", "gpt-4o-mini", 800, 40, 300))

    # an exporter retrying the same spans stores nothing twice
    again = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces")
    assert again.export(kept.get_finished_spans()) is SpanExportResult.SUCCESS
    assert len(rows(store)) == 2
    m = scrape(server.url)
    spans = {
        o: m[("obs_otlp_spans_total", frozenset({("outcome", o)}))] for o in ("llm", "ignored", "rejected")
    }
    assert spans == {"llm": 4, "ignored": 4, "rejected": 0}
    provider.shutdown()


def test_json_and_gzip_bodies(store: Store, server: RunningServer) -> None:
    now = utcnow() - timedelta(seconds=30)
    attrs = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
             "gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 90,
             "gen_ai.conversation.id": "conv-json", "obs.bot": "buyer_bot"}  # fmt: skip
    plain = json_span(attrs, start=now, ms=420.5)
    zipped = json_span({**attrs, "gen_ai.conversation.id": "conv-gzip"}, start=now, ms=99.0)
    assert post_json(server.url, otlp_json([plain])) == (200, {})
    assert post_json(server.url, otlp_json([zipped]), gz=True) == (200, {})
    stored = rows(store)
    a = stored[f"{plain['traceId']}-{plain['spanId']}"]
    b = stored[f"{zipped['traceId']}-{zipped['spanId']}"]
    assert (a["bot"], a["conversation_id"], a["latency_ms"]) == (
        "buyer_bot",
        "conv-json",
        pytest.approx(420.5),
    )
    assert (b["conversation_id"], b["latency_ms"]) == ("conv-gzip", pytest.approx(99.0))
    assert (
        a["cost_usd"] == pytest.approx(priced("anthropic", "claude-haiku-4-5", 400, 90)) and a["cost_usd"] > 0
    )


def test_a_bad_span_is_rejected_alone(store: Store, server: RunningServer) -> None:
    now = utcnow()
    good = json_span({"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.provider.name": "anthropic",
                      "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}, start=now, ms=5)  # fmt: skip
    negative = json_span({"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": -3},
                         start=now, ms=5)  # fmt: skip
    bad_id = {**good, "traceId": "not-hex"}
    status, body = post_json(server.url, otlp_json([good, negative, bad_id]))
    assert status == 200
    assert body["partialSuccess"]["rejectedSpans"] == "2"
    assert (
        "gen_ai.usage.input_tokens must be a non-negative integer" in body["partialSuccess"]["errorMessage"]
    )
    assert "traceId" in body["partialSuccess"]["errorMessage"]
    assert list(rows(store)) == [f"{good['traceId']}-{good['spanId']}"]

    # the same over protobuf: a span with a 3-byte trace id is refused, its neighbour stored
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    for tid in (b"\x01" * 16, b"\x02" * 3):
        sp = scope.spans.add(trace_id=tid, span_id=b"\x03" * 8, name="chat",
                             start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns() + 10**6)  # fmt: skip
        kv = sp.attributes.add(key="gen_ai.request.model")
        kv.value.string_value = "gpt-4o"
    status, headers, raw = request(f"{server.url}/v1/traces", req.SerializeToString(),
                                   {"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(raw)
    assert resp.partial_success.rejected_spans == 1 and "traceId" in resp.partial_success.error_message
    assert f"{'01' * 16}-{'03' * 8}" in rows(store)


def test_garbage_gets_a_400_with_a_reason_and_changes_nothing(store: Store, server: RunningServer) -> None:
    url = f"{server.url}/v1/traces"
    status, _, raw = request(url, b"\xff\xff\xff\xff garbage", {"Content-Type": "application/x-protobuf"})
    assert status == 400
    from google.rpc.status_pb2 import Status as RpcStatus

    assert "not a protobuf ExportTraceServiceRequest" in RpcStatus.FromString(raw).message
    for body, reason in ((b"{not json", "not valid JSON"), (b"[1, 2]", "must be a JSON object"),
                         (b'{"resourceSpans": 7}', "resourceSpans must be an array")):  # fmt: skip
        status, _, raw = request(url, body, {"Content-Type": "application/json"})
        assert status == 400 and reason in json.loads(raw)["message"], raw
    status, _, raw = request(
        url, b"\x1f\x8b not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert status == 400 and "gzip" in json.loads(raw)["message"]
    status, _, _ = request(url, b"x", {"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = request(url)  # GET
    assert status == 405
    assert rows(store) == {}
    assert scrape(server.url)[("obs_otlp_requests_total", frozenset({("code", "400")}))] == 5


def test_the_ingest_token_is_required_when_set(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sqlite_store.url, otlp_ingest_token="s3cret-token")
    srv = serve(sqlite_store, settings, port=0)
    try:
        doc = otlp_json([json_span({"gen_ai.request.model": "gpt-4o"}, start=utcnow(), ms=3)])
        assert post_json(srv.url, doc)[0] == 401
        assert post_json(srv.url, doc, token="wrong")[0] == 401
        assert rows(sqlite_store) == {}
        assert post_json(srv.url, doc, token="s3cret-token") == (200, {})
        assert len(rows(sqlite_store)) == 1

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        with provider.get_tracer("t").start_as_current_span("chat") as sp:
            sp.set_attribute("gen_ai.request.model", "gpt-4o")
        without = OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces")
        with_token = OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces",
                                      headers={"Authorization": "Bearer s3cret-token"})  # fmt: skip
        assert without.export(spans.get_finished_spans()) is SpanExportResult.FAILURE
        assert with_token.export(spans.get_finished_spans()) is SpanExportResult.SUCCESS
        assert len(rows(sqlite_store)) == 2
        # /metrics and /healthz stay open (the server binds to localhost by default)
        assert request(f"{srv.url}/metrics")[0] == 200
    finally:
        srv.stop()


def test_agent_spans_do_not_count_the_tokens_of_their_model_calls_twice(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    srv = serve(sqlite_store, make_settings(sqlite_store.url), port=0)
    try:
        now = utcnow()
        call = json_span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                          "gen_ai.usage.input_tokens": 100}, start=now, ms=10)  # fmt: skip
        agent = json_span({"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o",
                           "gen_ai.usage.input_tokens": 100}, start=now, ms=20)  # fmt: skip
        agent["traceId"] = call["traceId"]
        lone_agent = json_span({"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o",
                                "gen_ai.usage.input_tokens": 70}, start=now, ms=20)  # fmt: skip
        assert post_json(srv.url, otlp_json([agent, call, lone_agent]))[0] == 200
        stored = rows(sqlite_store)
        assert sorted(r["input_tokens"] for r in stored.values()) == [70, 100]
    finally:
        srv.stop()


# ---- the HTTP layer: limits before work -------------------------------------------------------


def exchange(
    url: str, data: bytes, *, more: Callable[[], bytes | None] | None = None
) -> tuple[int, bytes, int]:
    """Send raw bytes (then `more()` chunks from a thread until it returns None or the server stops
    reading) and read until the server closes; (status, response, bytes sent). A server that keeps
    the connection open fails the test at the socket timeout."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sent = [0]

    def pump() -> None:
        try:
            sock.sendall(data)
            sent[0] += len(data)
            while more is not None and (chunk := more()) is not None:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the server stopped reading and closed: what these tests want
            pass

    writer = threading.Thread(target=pump, daemon=True)
    writer.start()
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.join(timeout=15)
        sock.close()
    assert got.startswith(b"HTTP/1.1 "), got[:200]
    return int(got[9:12]), got, sent[0]


def head(method: str, path: str, **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def guarded(sqlite_store: Store, make_settings: Callable[..., Settings]) -> Iterator[RunningServer]:
    srv = serve(sqlite_store, make_settings(sqlite_store.url, otlp_ingest_token="tok-1"), port=0)
    yield srv
    srv.stop()


def test_an_anonymous_client_is_answered_401_before_it_sends_a_body(
    sqlite_store: Store, guarded: RunningServer
) -> None:
    # a gigabyte announced, nothing sent: the answer comes at once and the connection is closed
    status, resp, _ = exchange(guarded.url, head("POST", "/v1/traces", Content_Type="application/json",
                                                 Content_Length=str(1 << 30)))  # fmt: skip
    assert status == 401 and b"connection: close" in resp.lower()
    status, _, _ = exchange(guarded.url, head("POST", "/v1/traces", Content_Type="application/x-protobuf",
                                              Transfer_Encoding="chunked", Authorization="Bearer nope"))  # fmt: skip
    assert status == 401
    assert rows(sqlite_store) == {}


def test_bodies_are_bounded_in_every_transfer_encoding(sqlite_store: Store, guarded: RunningServer) -> None:
    auth = {"Authorization": "Bearer tok-1", "Content_Type": "application/json"}
    # a declared length over the limit: refused before a byte is read
    status, _, _ = exchange(
        guarded.url, head("POST", "/v1/traces", Content_Length=str(MAX_BODY_BYTES + 1), **auth)
    )
    assert status == 413
    # a chunk size of -1 (the old server read on until the client stopped)
    status, _, _ = exchange(
        guarded.url, head("POST", "/v1/traces", Transfer_Encoding="chunked", **auth) + b"-1\r\n" + b"x" * 4096
    )
    assert status == 400
    # chunks adding up past the limit: reading stops there, long before the client is done
    mib = b"%x\r\n" % (1 << 20) + b"{" * (1 << 20) + b"\r\n"
    left = [64]

    def more() -> bytes | None:
        left[0] -= 1
        return mib if left[0] >= 0 else None

    status, _, sent = exchange(
        guarded.url, head("POST", "/v1/traces", Transfer_Encoding="chunked", **auth), more=more
    )
    assert status == 413 and sent < 64 * len(mib)
    # a gzip body that inflates past the decoded limit
    z = zlib.compressobj(wbits=31)
    bomb = (
        b"".join(z.compress(b" " * (1 << 20)) for _ in range(MAX_DECODED_BYTES // (1 << 20) + 2)) + z.flush()
    )
    status, _, _ = request(
        f"{guarded.url}/v1/traces",
        bomb,
        {"Authorization": "Bearer tok-1", "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 413
    assert rows(sqlite_store) == {}
    # and the server still answers
    doc = otlp_json([json_span({"gen_ai.request.model": "gpt-4o"}, start=utcnow(), ms=3)])
    assert post_json(guarded.url, doc, token="tok-1") == (200, {})


def test_traces_need_a_protobuf_or_json_content_type(sqlite_store: Store, guarded: RunningServer) -> None:
    body = json.dumps(
        otlp_json([json_span({"gen_ai.request.model": "gpt-4o"}, start=utcnow(), ms=3)])
    ).encode()
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        headers = {"Authorization": "Bearer tok-1", **({"Content-Type": ctype} if ctype else {})}
        status, _, raw = request(f"{guarded.url}/v1/traces", body, headers)
        assert status == 415, (ctype, raw)
        assert b"application/x-protobuf or application/json" in raw
    assert rows(sqlite_store) == {}


def test_deeply_nested_json_gets_a_400_answer(sqlite_store: Store, guarded: RunningServer) -> None:
    depth = 200_000
    body = b'{"resourceSpans":' + b"[" * depth + b"]" * depth + b"}"
    status, _, raw = request(
        f"{guarded.url}/v1/traces",
        body,
        {"Authorization": "Bearer tok-1", "Content-Type": "application/json"},
    )
    assert status == 400 and b"nested" in raw
    assert rows(sqlite_store) == {}


def test_connections_are_capped_and_a_dropped_one_logs_no_traceback(
    sqlite_store: Store, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(sqlite_store.url, otlp_ingest_token="tok-1", worker_http_max_connections=4)
    srv = serve(sqlite_store, settings, port=0)
    idle: list[socket.socket] = []
    try:
        for _ in range(4):
            idle.append(socket.create_connection((srv.host, srv.port), timeout=10))
        # beyond the cap the server answers 503 at once instead of taking on more work
        wait_for(lambda: request(f"{srv.url}/healthz")[0] == 503, 10.0, message="no 503 beyond the cap")
        for s in idle:
            s.close()
        idle.clear()
        wait_for(lambda: request(f"{srv.url}/healthz")[0] == 200, 10.0, message="no 200 once under the cap")
        # clients that go away mid-body or mid-head
        for partial in (head("POST", "/v1/traces", Authorization="Bearer tok-1", Content_Type="application/json",
                             Content_Length="1000") + b'{"resourceSpans": [',
                        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"):  # fmt: skip
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            s.sendall(partial)
            s.close()
        doc = otlp_json([json_span({"gen_ai.request.model": "gpt-4o"}, start=utcnow(), ms=3)])
        assert post_json(srv.url, doc, token="tok-1") == (200, {})
    finally:
        for s in idle:
            s.close()
        srv.stop()  # waits for every request in flight, so all they logged is in caplog
    noisy = [
        r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
    ]
    assert noisy == []
    assert len(rows(sqlite_store)) == 1


def test_the_token_bootstrap_kept_protects_the_receiver(
    sqlite_store: Store, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(sqlite_store.url, otlp_ingest_token_file=tmp_path / "local" / "otlp.token")
    token, created = ensure_ingest_token(settings)
    assert created
    srv = serve(sqlite_store, settings, port=0)
    try:
        doc = otlp_json([json_span({"gen_ai.request.model": "gpt-4o"}, start=utcnow(), ms=3)])
        assert post_json(srv.url, doc)[0] == 401
        assert post_json(srv.url, doc, token=token) == (200, {})
    finally:
        srv.stop()


def test_a_call_priced_above_the_ceiling_is_flagged_not_summed_into_spend(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    srv = serve(sqlite_store, make_settings(sqlite_store.url, otlp_cost_ceiling_usd=50.0), port=0)
    try:
        now = utcnow()
        normal = {"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.provider.name": "anthropic",
                  "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}  # fmt: skip
        huge = {**normal, "gen_ai.usage.input_tokens": 2_000_000_000}  # $6,000 for one call
        assert post_json(
            srv.url, otlp_json([json_span(normal, start=now, ms=5), json_span(huge, start=now, ms=5)])
        ) == (200, {})
    finally:
        srv.stop()
    stored = sorted(rows(sqlite_store).values(), key=lambda r: r["input_tokens"])
    ok, flagged = stored
    assert (
        ok["cost_usd"] == pytest.approx(priced("anthropic", "claude-sonnet-4-5", 1000, 100))
        and ok["price_known"]
    )
    withheld = priced("anthropic", "claude-sonnet-4-5", 2_000_000_000, 100)
    assert withheld > 50.0
    assert (flagged["cost_usd"], flagged["price_known"]) == (0.0, False)
    assert flagged["cost_flagged_usd"] == pytest.approx(withheld)
    svc = LLMObservabilityService(sqlite_store)
    assert svc.cost_by_model() == {
        "claude-sonnet-4-5": pytest.approx(ok["cost_usd"])
    }  # spend: the normal call only
    # the console's list of flagged calls (cost page) shows it with the price it withheld
    listed = unknown_models(sqlite_store, "24h")
    assert listed["calls"].tolist() == [1] and listed["withheld_usd"].tolist() == [pytest.approx(withheld)]


# ---- /metrics ---------------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    status, headers, raw = request(f"{url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(raw.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def seed_store(store: Store, now: datetime) -> None:
    t = to_epoch(now - timedelta(seconds=20))
    llm = [
        ("lead", "claude-sonnet-4-5", "anthropic", 2000, 300, 1200, 0, 850.0, True),
        ("lead", "claude-sonnet-4-5", "anthropic", 900, 100, 0, 400, 2300.0, True),
        ("lead", "claude-sonnet-4-5", "anthropic", 50, 0, 0, 0, 12000.0, False),
        ("buyer", "gpt-4o-mini", "openai", 700, 90, 0, 0, 300.0, True),
        ("buyer", "gpt-4o-mini", "openai", 1100, 120, 500, 0, 640.0, True),
        (None, "claude-haiku-4-5", "anthropic", 100, 20, 0, 0, 40.0, True),
    ]
    events = [["llm", uuid.uuid4().hex, t + i, bot, None, None, m, p, it, ot, cr, cw, lat, False, None, None, ok,
               None if ok else "Timeout"] for i, (bot, m, p, it, ot, cr, cw, lat, ok) in enumerate(llm)]  # fmt: skip
    ops = [("lead", "qualify", d, d != 6000) for d in (20, 80, 300, 1500, 6000)] + [
        ("buyer", "search", d, True) for d in (40, 2500)
    ]
    events += [
        ["op", uuid.uuid4().hex, t, b, o, float(d), ok, False, None if ok else "Timeout"]
        for b, o, d, ok in ops
    ]
    events += [["interaction", uuid.uuid4().hex, t, b, float(d), True, False, None]
               for b, d in (("lead", 900), ("lead", 2100), ("buyer", 400))]  # fmt: skip
    events.append(["op", uuid.uuid4().hex, to_epoch(now - timedelta(hours=2)), "lead", "qualify", 99999.0, True,
                   False, None])  # counted, but outside the histogram window  # fmt: skip
    write_batch(store, events)
    rollups.run(store)
    alerts = [
        ("critical", "firing"),
        ("critical", "firing"),
        ("warning", "acknowledged"),
        ("critical", "resolved"),
    ]
    with store.begin() as conn:
        conn.execute(sa.insert(schema.alerts), [
            {"rule_name": f"r{i}", "dedup_key": f"k{i}", "labels": {}, "state": st, "severity": sev,
             "created_at": now} for i, (sev, st) in enumerate(alerts)
        ])  # fmt: skip
        conn.execute(sa.insert(schema.worker_heartbeats).values(
            worker_id="w1", is_leader=True, last_tick_at=now - timedelta(seconds=5), last_tick_ms=120.0,
            started_at=now - timedelta(hours=1)))  # fmt: skip


def test_a_scrape_parses_and_agrees_with_the_store(store: Store, server: RunningServer) -> None:
    now = utcnow()
    seed_store(store, now)
    before = utcnow()  # the server reads its clock for the scrape between `before` and `after`
    m = scrape(server.url)
    after = utcnow()

    def v(name: str, **labels: str) -> float:
        return m[(name, frozenset(labels.items()))]

    def assert_age(got: float, since: datetime) -> None:
        """An age the scrape computed: seconds from `since` to the scrape's clock reading, however
        long the scrape took (a loaded machine made a fixed tolerance flaky)."""
        lo, hi = (before - since).total_seconds(), (after - since).total_seconds()
        assert lo - 1e-3 <= got <= hi + 1e-3, (got, lo, hi)

    assert v("obs_store_up") == 1
    c = schema.llm_calls
    with store.connect() as conn:
        llm = conn.execute(
            sa.select(c.c.bot, c.c.model, c.c.provider, sa.func.count(), sa.func.sum(sa.case((c.c.success, 0), else_=1)),
                      sa.func.sum(c.c.cost_usd), sa.func.sum(c.c.input_tokens), sa.func.sum(c.c.output_tokens),
                      sa.func.sum(c.c.cache_read_tokens), sa.func.sum(c.c.cache_write_tokens))
            .group_by(c.c.bot, c.c.model, c.c.provider)
        ).all()  # fmt: skip
        o = schema.bot_operations
        ops = conn.execute(
            sa.select(o.c.bot, o.c.operation, sa.func.count(), sa.func.sum(sa.case((o.c.success, 0), else_=1)))
            .group_by(o.c.bot, o.c.operation)
        ).all()  # fmt: skip
        durations = conn.execute(
            sa.select(o.c.bot, o.c.operation, o.c.duration_ms).where(o.c.ts >= now - timedelta(minutes=5))
        ).all()
        newest = conn.execute(sa.select(sa.func.max(c.c.ts))).scalar()
    assert len(llm) == 3
    for bot, model, provider, n, errors, cost, it, ot, cr, cw in llm:
        key = {"bot": bot or "", "model": model, "provider": provider}
        assert v("obs_llm_requests_total", **key) == n
        assert v("obs_llm_errors_total", **key) == errors
        assert v("obs_llm_cost_usd_total", **key) == pytest.approx(cost, rel=1e-9)
        for typ, value in (("input", it), ("output", ot), ("cache_read", cr), ("cache_write", cw)):
            assert v("obs_llm_tokens_total", **key, type=typ) == value
    assert v("obs_llm_cost_usd_total", bot="lead", model="claude-sonnet-4-5", provider="anthropic") > 0
    for bot, op, n, errors in ops:
        assert v("obs_bot_operations_total", bot=bot, operation=op) == n
        assert v("obs_bot_operation_errors_total", bot=bot, operation=op) == errors
    assert v("obs_bot_operations_total", bot="lead", operation="qualify") == 6  # the 2-hour-old one too

    for bot, op in {(b, o) for b, o, _ in durations}:
        ds = [d for b, o, d in durations if (b, o) == (bot, op)]
        for le in LATENCY_BUCKETS_S:
            got = v("obs_bot_operation_duration_seconds_bucket", bot=bot, operation=op, le=repr(float(le)))
            assert got == sum(d <= le * 1000 for d in ds), (bot, op, le)
        assert v("obs_bot_operation_duration_seconds_bucket", bot=bot, operation=op, le="+Inf") == len(ds)
        assert v("obs_bot_operation_duration_seconds_gsum", bot=bot, operation=op) == pytest.approx(
            sum(ds) / 1000
        )
    assert v("obs_bot_operation_duration_seconds_bucket", bot="lead", operation="qualify", le="+Inf") == 5
    assert v("obs_bot_response_duration_seconds_bucket", bot="lead", le="2.0") == 1
    assert v("obs_bot_response_duration_seconds_bucket", bot="lead", le="+Inf") == 2
    assert v("obs_llm_latency_seconds_bucket", bot="lead", model="claude-sonnet-4-5", le="10.0") == 2

    assert v("obs_alerts_open", severity="critical", state="firing") == 2
    assert v("obs_alerts_open", severity="warning", state="acknowledged") == 1
    assert v("obs_alerts_open", severity="warning", state="firing") == 0
    assert_age(v("obs_ingest_newest_event_age_seconds", table="llm_calls"), newest)
    beat = now - timedelta(seconds=5)  # seed_store's heartbeat of the leader w1
    assert_age(v("obs_worker_heartbeat_age_seconds", worker_id="w1", leader="true"), beat)
    assert_age(v("obs_leader_heartbeat_age_seconds"), beat)
    assert v("obs_rollup_backlog_minutes") == 0

    # every series the shipped Grafana dashboard queries exists (the queue depth needs Redis)
    dashboard = (Path(__file__).parent.parent / "deploy/grafana/observability-dashboard.json").read_text()
    used = set(re.findall(r"\bobs_[a-z_]+", dashboard)) - {"obs_bot_console"}
    exported = {name for name, _ in m} | {"obs_ingest_queue_depth"}
    assert used and used <= exported, used - exported

    # OpenMetrics clients get the proper gauge histogram type
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    status, _, raw = request(f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    types = {f.name: f.type for f in om_parse(raw.decode())}
    assert status == 200 and types["obs_bot_operation_duration_seconds"] == "gaugehistogram"
    assert types["obs_llm_requests"] == "counter"


def test_counters_never_go_down_when_retention_purges_rollups(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    from observability.store import retention

    now = utcnow()
    write_batch(sqlite_store, [
        ["llm", f"x{i}", to_epoch(now - timedelta(days=d)), "lead", None, None, "claude-sonnet-4-5", "anthropic",
         1000, 100, 0, 0, 500.0, False, None, None, True, None] for i, d in enumerate((500, 450, 1))
    ] + [["op", f"o{i}", to_epoch(now - timedelta(days=d)), "lead", "qualify", 5.0, i != 0, False, None]
         for i, d in enumerate((500, 1))])  # fmt: skip
    rollups.run(sqlite_store)
    srv = serve(sqlite_store, make_settings(sqlite_store.url), port=0)
    try:
        before = scrape(srv.url)
        report = retention.purge(sqlite_store, Settings(), now)
        assert report.deleted["rollup_llm_hour"] == 2
        after = scrape(srv.url)
    finally:
        srv.stop()
    for name in ("obs_llm_requests_total", "obs_llm_cost_usd_total", "obs_llm_tokens_total",
                 "obs_bot_operations_total", "obs_bot_operation_errors_total"):  # fmt: skip
        b = {k: x for k, x in before.items() if k[0] == name}
        a = {k: x for k, x in after.items() if k[0] == name}
        assert b and a.keys() == b.keys(), name
        for k in b:
            assert a[k] == pytest.approx(b[k]), k
    assert after[("obs_llm_requests_total", frozenset({"bot": "lead", "model": "claude-sonnet-4-5",
                                                       "provider": "anthropic"}.items()))] == 3  # fmt: skip


def test_queue_depth_comes_from_the_redis_stream(
    pg_store: Store, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    import redis as redis_lib

    settings = make_settings(pg_store.url, redis_url)
    r = redis_lib.Redis.from_url(redis_url)
    key = keys.ingest_stream(settings.redis_prefix)
    consumer = StreamConsumer(pg_store, r, settings, "w-test")
    consumer.ensure_group()
    for _ in range(3):
        r.xadd(key, {"v": "1", "e": json.dumps([])})
    r.xreadgroup(keys.INGEST_GROUP, "w-test", {key: ">"}, count=1)  # delivered, not yet acknowledged
    srv = serve(pg_store, settings, redis=r, consumer=consumer, port=0)
    try:
        m = scrape(srv.url)
        assert m[("obs_redis_up", frozenset())] == 1
        assert m[("obs_ingest_queue_depth", frozenset({("state", "stream")}))] == r.xlen(key) == 3
        assert m[("obs_ingest_queue_depth", frozenset({("state", "pending")}))] == 1
    finally:
        srv.stop()
        r.close()


# ---- /healthz ---------------------------------------------------------------------------------


def health(url: str) -> tuple[int, dict]:
    status, _, raw = request(f"{url}/healthz")
    return status, json.loads(raw)


def test_healthz_turns_503_when_the_store_goes_down_and_back_to_200(
    pg_url: str, make_settings: Callable[..., Settings]
) -> None:
    proxy = TcpProxy.for_url(pg_url).start()
    store = Store.from_url(proxy.url)
    store.migrate()
    settings = make_settings(store.url, worker_http_port=0)
    worker = Worker(store, settings, steps=[Step("heartbeat", step_heartbeat, leader_only=False)])
    assert worker.tick() == {"heartbeat": "ok"}
    srv = start(worker)
    assert srv is not None
    try:
        status, doc = health(srv.url)
        assert status == 200 and doc["status"] == "ok", doc
        assert doc["checks"]["store"]["ok"] and doc["checks"]["worker"]["ok"]

        proxy.stop()
        status, doc = health(srv.url)
        assert status == 503, doc
        assert any(r.startswith("store unreachable") for r in doc["reasons"]), doc
        assert scrape(srv.url)[("obs_store_up", frozenset())] == 0
        status, body = post_json(srv.url, otlp_json([json_span({"gen_ai.request.model": "gpt-4o"},
                                                               start=utcnow(), ms=1)]))  # fmt: skip
        assert status == 503  # OTLP exporters retry a 503: the spans are not lost

        proxy.start()
        wait_for(lambda: health(srv.url)[0] == 200, 10.0, message=lambda: health(srv.url))
    finally:
        srv.stop()
        worker.close()
        proxy.stop()
        store.dispose()


def test_healthz_reports_a_closed_port_a_lagging_worker_and_a_dead_redis(
    pg_store: Store, make_settings: Callable[..., Settings]
) -> None:
    closed = free_port()
    down = Store.from_url(f"postgresql+psycopg://postgres@127.0.0.1:{closed}/nowhere")
    settings = make_settings(pg_store.url, health_max_worker_lag_s=30.0)
    srv = serve(down, settings, port=0)
    try:
        status, doc = health(srv.url)
        assert status == 503 and doc["checks"]["store"]["ok"] is False
        assert "unknown" in doc["checks"]["worker"]["error"]
    finally:
        srv.stop()
        down.dispose()

    with pg_store.begin() as conn:
        conn.execute(sa.insert(schema.worker_heartbeats).values(
            worker_id="old", is_leader=True, last_tick_at=utcnow() - timedelta(seconds=120),
            started_at=utcnow() - timedelta(hours=1)))  # fmt: skip
    import redis as redis_lib
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead_redis = redis_lib.Redis(
        host="127.0.0.1", port=closed, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    srv = serve(pg_store, settings, redis=dead_redis, port=0)
    try:
        status, doc = health(srv.url)
        assert status == 503
        assert any("worker lag 120s exceeds 30s" in r for r in doc["reasons"]), doc
        assert any(r.startswith("redis unreachable") for r in doc["reasons"]), doc
        assert doc["checks"]["store"]["ok"]
    finally:
        srv.stop()


def test_the_worker_process_serves_all_three_endpoints(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "w.db"
    env = subprocess_env(DATABASE_URL=f"sqlite:///{db}", WORKER_HTTP_PORT=str(port), WORKER_TICK_S="0.5",
                         SPOOL_DIR=str(tmp_path / "spool"), WORKER_LOCK_FILE=str(tmp_path / "lock"),
                         REDIS_URL="", OTLP_INGEST_TOKEN="", OTLP_INGEST_TOKEN_FILE=str(tmp_path / "none"))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "observability.worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the worker exited: {proc.stderr.read().decode()[-3000:]}")
            try:
                status, doc = health(url)
            except OSError:  # not listening yet
                return False
            return status == 200 and doc["checks"]["worker"]["lag_s"] is not None

        wait_for(ready, 30.0, interval=0.2, message="/healthz never answered 200 with a worker heartbeat")
        attrs = {"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.provider.name": "anthropic",
                 "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}  # fmt: skip
        assert post_json(url, otlp_json([json_span(attrs, start=utcnow(), ms=7)])) == (200, {})
        store = Store.from_url(f"sqlite:///{db}")
        try:
            assert len(rows(store)) == 1
        finally:
            store.dispose()
        assert scrape(url)[("obs_store_up", frozenset())] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
