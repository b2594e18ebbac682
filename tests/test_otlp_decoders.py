"""OTLP bodies read in decoder processes (`OTLP_DECODE_PROCESSES`) are stored exactly as the
receiver would store them itself, and a decoder is never a point of failure.

A real worker HTTP server with one decoder process takes protobuf, JSON and gzip bodies, a body
with a bad span, and garbage: the rows, the partial-success answer and the 400 are what the
receiver gives when it reads bodies itself, and the decoder did read them. A decoder killed with
SIGKILL costs no request (the next body is read in the receiver and stored) and is replaced; a
stopped server leaves no decoder behind.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from support import wait_for
from test_worker_http import json_span, otlp_json, post_json, request, rows, scrape

from observability.settings import Settings
from observability.store import Store
from observability.timeutil import utcnow
from observability.worker.server import RunningServer, serve

CALL = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80,
        "gen_ai.usage.cache_read_input_tokens": 300, "gen_ai.conversation.id": "conv-decoded"}  # fmt: skip


def started(srv: RunningServer) -> list[int]:
    """Start the receiver's decoders now (they start on the first large body otherwise) and wait."""
    pool = srv.app.receiver.decoders
    pool.start()
    wait_for(lambda: len(pool.pids()) == pool.processes, 60.0, message="the decoder never started")
    return pool.pids()


@pytest.fixture
def decoding(sqlite_store: Store, make_settings: Callable[..., Settings]) -> Iterator[RunningServer]:
    settings = make_settings(sqlite_store.url, otlp_decode_processes=1, otlp_decode_min_bytes=0)
    srv = serve(sqlite_store, settings, port=0)
    yield srv
    srv.stop()


def proto_body(*trace_ids: bytes) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add(key="service.name")
    kv.value.string_value = "seller_bot"
    scope = rs.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.anthropic"
    for tid in trace_ids:
        now = time.time_ns() - 60 * 10**9
        sp = scope.spans.add(trace_id=tid, span_id=b"\x07" * 8, name="chat claude-sonnet-4-5",
                             start_time_unix_nano=now, end_time_unix_nano=now + 250 * 10**6)  # fmt: skip
        for key, value in CALL.items():
            a = sp.attributes.add(key=key)
            if isinstance(value, int):
                a.value.int_value = value
            else:
                a.value.string_value = value
    return req.SerializeToString()


def test_bodies_read_by_a_decoder_are_stored_as_the_receiver_reads_them(
    sqlite_store: Store, decoding: RunningServer
) -> None:
    started(decoding)
    pool = decoding.app.receiver.decoders
    now = utcnow()
    spans = [json_span(CALL, start=now, ms=250) for _ in range(3)]
    assert post_json(decoding.url, otlp_json(spans[:2]))[0] == 200
    assert post_json(decoding.url, otlp_json(spans[2:]), gz=True)[0] == 200

    # protobuf, one span with a 3-byte trace id: refused alone, its neighbour stored
    status, headers, raw = request(f"{decoding.url}/v1/traces", proto_body(b"\x01" * 16, b"\x02" * 3),
                                   {"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert status == 200
    answer = ExportTraceServiceResponse.FromString(raw)
    assert answer.partial_success.rejected_spans == 1 and "traceId" in answer.partial_success.error_message

    # a call naming no conversation, inside a bot span that does: the conversation comes from the trace
    req = ExportTraceServiceRequest.FromString(proto_body(b"\x05" * 16))
    call = req.resource_spans[0].scope_spans[0].spans[0]
    call.parent_span_id = b"\x0a" * 8
    del call.attributes[[a.key for a in call.attributes].index("gen_ai.conversation.id")]
    bot = req.resource_spans[0].scope_spans.add()
    bot.scope.name = "seller_bot"
    parent = bot.spans.add(trace_id=b"\x05" * 16, span_id=b"\x0a" * 8, name="handle_message",
                           start_time_unix_nano=call.start_time_unix_nano - 10**6,
                           end_time_unix_nano=call.end_time_unix_nano + 10**6)  # fmt: skip
    kv = parent.attributes.add(key="gen_ai.conversation.id")
    kv.value.string_value = "conv-from-parent"
    status, _, _ = request(f"{decoding.url}/v1/traces", req.SerializeToString(),
                           {"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert status == 200

    # garbage: the decoder's reason reaches the client, nothing is stored
    status, _, raw = request(f"{decoding.url}/v1/traces", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in json.loads(raw)["message"]

    stored = rows(sqlite_store)
    assert stored.pop(f"{'05' * 16}-{'07' * 8}")["conversation_id"] == "conv-from-parent"
    expected = {f"{s['traceId']}-{s['spanId']}" for s in spans} | {f"{'01' * 16}-{'07' * 8}"}
    assert set(stored) == expected
    for r in stored.values():
        assert (r["model"], r["provider"], r["bot"], r["conversation_id"]) == (
            "claude-sonnet-4-5", "anthropic", "seller_bot", "conv-decoded")  # fmt: skip
        assert (r["input_tokens"], r["output_tokens"], r["cache_read_tokens"]) == (1200, 80, 300)
        assert r["cost_usd"] > 0
    assert pool.decoded_outside == 5  # every body above went through the decoder process


def test_a_killed_decoder_costs_no_request_and_is_replaced(
    sqlite_store: Store, decoding: RunningServer
) -> None:
    pool = decoding.app.receiver.decoders
    (first,) = started(decoding)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{first}/status").exists() or "zombie" in Path(f"/proc/{first}/status").read_text(),
             10.0, message="the decoder did not die")  # fmt: skip
    now = utcnow()
    span = json_span(CALL, start=now, ms=250)
    assert post_json(decoding.url, otlp_json([span]))[0] == 200  # read in the receiver meanwhile
    assert f"{span['traceId']}-{span['spanId']}" in rows(sqlite_store)

    wait_for(lambda: pool.pids() and pool.pids() != [first], 60.0, message="no decoder took its place")
    assert pool.restarts == 1
    outside = pool.decoded_outside
    later = json_span(CALL, start=now, ms=250)
    assert post_json(decoding.url, otlp_json([later]))[0] == 200
    assert pool.decoded_outside == outside + 1  # the new decoder reads bodies again
    assert f"{later['traceId']}-{later['spanId']}" in rows(sqlite_store)
    m = scrape(decoding.url)  # what an operator sees
    assert m[("obs_otlp_decoder_restarts_total", frozenset())] == 1
    assert m[("obs_otlp_decoder_processes", frozenset())] == 1
    assert m[("obs_otlp_decoded_requests_total", frozenset({("where", "receiver")}))] == 1
    assert m[("obs_otlp_decoded_requests_total", frozenset({("where", "decoder")}))] == outside + 1


def test_a_stuck_decoder_is_replaced_and_its_body_read_in_the_receiver(
    sqlite_store: Store, decoding: RunningServer
) -> None:
    pool = decoding.app.receiver.decoders
    (first,) = started(decoding)
    pool.answer_timeout_s = 1.0  # (30 s in service)
    os.kill(first, signal.SIGSTOP)  # alive, holding its pipe, answering nothing
    span = json_span(CALL, start=utcnow(), ms=250)
    assert post_json(decoding.url, otlp_json([span]))[0] == 200
    assert f"{span['traceId']}-{span['spanId']}" in rows(sqlite_store)
    assert pool.restarts == 1
    assert not Path(f"/proc/{first}").exists(), "the stuck decoder was left behind"
    wait_for(lambda: pool.pids() and pool.pids() != [first], 60.0, message="no decoder took its place")


def test_small_bodies_start_no_decoder_and_a_stopped_server_leaves_none(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sqlite_store.url, otlp_decode_processes=1, otlp_decode_min_bytes=50_000)
    srv = serve(sqlite_store, settings, port=0)
    pool = srv.app.receiver.decoders
    try:
        assert post_json(srv.url, otlp_json([json_span(CALL, start=utcnow(), ms=5)]))[0] == 200
        assert pool.pids() == [] and pool.decoded_outside == 0
        pids = started(srv)
    finally:
        srv.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), "a decoder outlived its server"
