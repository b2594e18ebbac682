"""Bad input never hurts the bot and never blocks good data.

A malformed `record_*` call raises nothing into the caller: the event is rejected, counted in
`stats()["rejected"]` and named in one clear log line, and the valid events around it (same batch)
are stored. The one exception, a `usage=` that `record_llm_call` cannot read, is in
`test_sdk_usage.py`. Whatever the SDK lets through but the database would refuse (a name longer than its
column, a NUL character, a number out of range) is rejected alone at ingest, never turning its batch
into a poison pill. Events written straight onto the Redis stream by another producer are
re-validated by the worker the same way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis as redis_lib
import sqlalchemy as sa
from support import PIPELINE_KINDS, Pipeline

from observability import keys
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.stream import GROUP
from observability.worker.runner import Worker

TEN_MB = "x" * (10 * 1024 * 1024)


@pytest.fixture(params=PIPELINE_KINDS)
def pipeline(request: pytest.FixtureRequest, make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline(request.param, worker_steps=[])  # the worker only drains the stream


def llm(c: ObservabilityClient, **kw) -> None:
    args = {"model": "claude-sonnet-4-5", "provider": "anthropic", "input_tokens": 100, "output_tokens": 10,
            "latency_ms": 50.0}  # fmt: skip
    args.update(kw)
    c.record_llm_call(**args)


# (method, field the log line must name, the call)
BAD_CALLS: list[tuple[str, str, Callable[[ObservabilityClient], object]]] = [
    ("record_llm_call", "input_tokens", lambda c: llm(c, input_tokens=-5)),
    ("record_llm_call", "output_tokens", lambda c: llm(c, output_tokens=-1)),
    ("record_llm_call", "latency_ms", lambda c: llm(c, latency_ms=math.nan)),
    ("record_llm_call", "latency_ms", lambda c: llm(c, latency_ms=-3.0)),
    ("record_llm_call", "latency_ms", lambda c: llm(c, latency_ms=math.inf)),
    ("record_llm_call", "model", lambda c: llm(c, model="")),
    ("record_llm_call", "model", lambda c: llm(c, model="   ")),
    ("record_llm_call", "model", lambda c: llm(c, model=None)),
    ("record_llm_call", "model", lambda c: llm(c, model=42)),
    ("record_llm_call", "input_tokens", lambda c: llm(c, input_tokens="100")),
    ("record_llm_call", "input_tokens", lambda c: llm(c, input_tokens=10.5)),
    ("record_llm_call", "input_tokens", lambda c: llm(c, input_tokens=True)),
    ("record_llm_call", "input_tokens", lambda c: llm(c, input_tokens=10**12)),
    ("record_llm_call", "latency_ms", lambda c: llm(c, latency_ms="fast")),
    ("record_llm_call", "cache_hit", lambda c: llm(c, cache_hit="yes")),
    ("record_llm_call", "cost_usd", lambda c: llm(c, cost_usd=-1.0)),
    ("record_llm_call", "cache_read_tokens", lambda c: llm(c, input_tokens=10, cache_read_tokens=20)),
    ("record_llm_call", "timestamp", lambda c: llm(c, timestamp="2026-01-01T00:00:00")),
    ("record_llm_call", "timestamp", lambda c: llm(c, timestamp=datetime(1, 1, 1, tzinfo=UTC))),
    ("record_llm_call", "bot", lambda c: llm(c, bot=["lead"])),
    ("record_llm_call", "bot", lambda c: llm(c, bot="b" * 65)),  # longer than its column
    ("record_llm_call", "error_type", lambda c: llm(c, error_type="E" * 101)),
    ("record_llm_call", "trace_id", lambda c: llm(c, trace_id="t" * 65)),
    ("record_llm_call", "agent", lambda c: llm(c, agent="a" * 101)),
    ("record_llm_call", "decision_type", lambda c: llm(c, decision_type=7)),
    ("record_llm_call", "conversation_id", lambda c: llm(c, conversation_id="c" * 101)),
    ("record_llm_call", "provider", lambda c: llm(c, provider="")),
    ("record_llm_call", "success", lambda c: llm(c, success=1)),
    ("record_llm_call", "cache_write_tokens", lambda c: llm(c, cache_write_tokens=-1)),
    ("track_operation", "duration_ms", lambda c: c.track_operation("lead", "qualify", -1.0)),
    ("track_operation", "duration_ms", lambda c: c.track_operation("lead", "qualify", math.nan)),
    ("track_operation", "bot_name", lambda c: c.track_operation(None, "qualify", 1.0)),
    ("track_operation", "operation", lambda c: c.track_operation("lead", "", 1.0)),
    ("track_operation", "operation", lambda c: c.track_operation("lead", "o" * 101, 1.0)),
    ("record_bot_interaction", "duration_ms", lambda c: c.record_bot_interaction("lead", "5")),
    ("record_bot_interaction", "bot_type", lambda c: c.record_bot_interaction("", 5.0)),
    ("record_handoff", "source", lambda c: c.record_handoff(None, "buyer")),
    ("record_handoff", "duration_ms", lambda c: c.record_handoff("lead", "buyer", duration_ms=-2.0)),
    ("record_handoff", "blocked", lambda c: c.record_handoff("lead", "buyer", blocked="no")),
    (
        "record_handoff",
        "conversation_id",
        lambda c: c.record_handoff("lead", "buyer", conversation_id="c" * 101),
    ),
    ("record_message", "text", lambda c: c.record_message("conv-1", "user", TEN_MB)),
    ("record_message", "text", lambda c: c.record_message("conv-1", "user", 12345)),
    ("record_message", "text", lambda c: c.record_message("conv-1", "user", "nul \x00 inside")),
    ("record_message", "role", lambda c: c.record_message("conv-1", "admin", "hi")),
    ("record_message", "conversation_id", lambda c: c.record_message(None, "user", "hi")),
    ("set_account", "account_id", lambda c: c.set_account(None, name="x")),
    ("set_account", "vip", lambda c: c.set_account("acct-1", vip="yes")),
    ("record_metric", "value", lambda c: c.record_metric("ai_confidence", math.nan)),
    ("record_metric", "value", lambda c: c.record_metric("ai_confidence", "0.5")),
    ("record_metric", "metric_name", lambda c: c.record_metric("", 0.5)),
    ("record_metric", "metadata", lambda c: c.record_metric("m", 1.0, metadata="not a dict")),
    ("record_metric", "metadata", lambda c: c.record_metric("m", 1.0, metadata={"at": datetime.now()})),
    ("record_metric", "metadata", lambda c: c.record_metric("m", 1.0, metadata={"x": math.nan})),
    ("log_activity", "severity", lambda c: c.log_activity("note", "t", severity="urgent")),
    ("log_activity", "title", lambda c: c.log_activity("note", None)),
    ("log_activity", "title", lambda c: c.log_activity("note", "T" * 201)),
    ("log_activity", "metadata", lambda c: c.log_activity("note", "t", metadata={"s": {1, 2}})),
    ("log_activity", "description", lambda c: c.log_activity("note", "t", description=TEN_MB)),
]


def test_bad_input_is_rejected_counted_and_logged_without_raising(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    c = pipeline.client
    caplog.set_level(logging.WARNING, logger="observability")
    for i, (method, field_name, call) in enumerate(BAD_CALLS):
        llm(c, trace_id=f"good-before-{i}")  # valid neighbours in the same batch
        caplog.clear()
        call(c)  # must not raise
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1, (method, field_name, lines)
        assert method in lines[0] and field_name in lines[0], lines[0]
        assert len(lines[0]) < 300, "the log line stays readable, even for 10 MB of text"
        assert c.stats()["rejected"] == i + 1, (method, field_name)
        llm(c, trace_id=f"good-after-{i}")
    pipeline.deliver()
    stats = c.stats()
    assert stats["rejected"] == len(BAD_CALLS)
    assert stats["queued"] == stats["written"] == 2 * len(BAD_CALLS)
    assert pipeline.count(schema.llm_calls) == 2 * len(BAD_CALLS)
    for table in (schema.bot_operations, schema.bot_interactions, schema.handoffs, schema.messages,
                  schema.accounts, schema.system_metrics, schema.activity_events):  # fmt: skip
        assert pipeline.count(table) == 0, table.name


def test_the_flush_thread_survives_bad_input_and_keeps_delivering(pipeline: Pipeline) -> None:
    c = pipeline.client
    for i, (_m, _f, call) in enumerate(BAD_CALLS * 3):
        call(c)
        c.record_metric("ok", float(i), metadata={"i": i})
    pipeline.deliver()
    for i in range(100):
        c.log_activity("note", f"after {i}", metadata={"i": i})
    pipeline.deliver()
    assert pipeline.count(schema.system_metrics) == 3 * len(BAD_CALLS)
    assert pipeline.count(schema.activity_events) == 100
    assert c.stats()["dropped"] == 0 and c.stats()["spool_files"] == 0


# ---- what comes off the stream is checked again ----------------------------------------------------


def wire_llm(tid: str, **changes) -> list:
    e = {"trace_id": tid, "ts": 1_780_000_000.5, "bot": "lead", "agent": None, "decision_type": None,
         "model": "claude-sonnet-4-5", "provider": "anthropic", "input_tokens": 100, "output_tokens": 10,
         "cache_read_tokens": 0, "cache_write_tokens": 0, "latency_ms": 50.0, "cache_hit": False,
         "cost_usd": None, "conversation_id": None, "success": True, "error_type": None,
         "error_raw": None}  # fmt: skip
    e.update(changes)
    return ["llm", *e.values()]


def test_an_llm_event_of_an_older_sdk_without_error_raw_is_stored(store: Store) -> None:
    """Bots keep running an SDK from before the `error_raw` field: their events still store."""
    from observability.store.ingest import write_batch

    old = wire_llm("old-sdk", success=False, error_type="RateLimitError")[:-1]
    result = write_batch(store, [old])
    assert result.rejected == 0 and result.written["llm"] == 1
    with store.connect() as conn:
        row = conn.execute(sa.select(schema.llm_calls).where(schema.llm_calls.c.trace_id == "old-sdk")).one()
    assert (row.error_type, row.error_raw) == ("RateLimitError", None)


def test_a_handoff_of_an_older_sdk_without_its_conversation_is_stored(store: Store) -> None:
    """Handoffs from before `conversation_id` (a spool file, a stream entry, an old bot) still store."""
    from observability import events as ev
    from observability.store.ingest import write_batch

    new = ev.handoff("new-sdk", 1_780_000_000.5, source="lead", target="buyer", success=True, duration_ms=12.0,
                     blocked=False, reason=None, conversation_id="conv-1")  # fmt: skip
    old = ev.handoff("old-sdk", 1_780_000_000.5, source="lead", target="buyer", success=False, duration_ms=9.0,
                     blocked=False, reason="timeout")[:-1]  # fmt: skip
    result = write_batch(store, [new, old, [*old[:-2], "too", "many", "fields"]])
    assert result.rejected == 1 and result.written["handoff"] == 2
    h = schema.handoffs
    with store.connect() as conn:
        rows = dict(conn.execute(sa.select(h.c.id, h.c.conversation_id)).all())
    assert rows == {"new-sdk": "conv-1", "old-sdk": None}


MALFORMED_WIRE = [
    ["llm", "too-short"],
    ["nonsense", "x", 1.0],
    "not a list",
    [],
    wire_llm("neg", input_tokens=-5),
    wire_llm("nan", latency_ms="NaN"),
    wire_llm("ts-text", ts="yesterday"),
    wire_llm("ts-far", ts=1e15),
    wire_llm("ts-neg", ts=-1e12),
    wire_llm("model-empty", model=""),
    wire_llm("bot-dict", bot={"a": 1}),
    wire_llm("bot-long", bot="b" * 65),
    wire_llm("tokens-huge", output_tokens=2**40),
    wire_llm("nul", error_type="bad\x00"),
    wire_llm("surrogate", agent="\ud800"),
    ["op", "op-bad", 1_780_000_000.0, "lead", None, 5.0, True, False, None],
    ["message", "m-bad", 1_780_000_000.0, "conv", "user", ["text"], None, None, None],
    ["metric", "mt-bad", 1_780_000_000.0, "m", "gauge", 1.0, None, None, None, [1, 2]],
    ["account", None, 1_780_000_000.0, "x", True],
    ["handoff", "h-bad", 1_780_000_000.0, "lead", "buyer", "yes", 1.0, False, None],
]


def test_malformed_events_on_the_stream_are_rejected_and_the_rest_stored(
    pg_store: Store, redis_url: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(pg_store.url, redis_url)
    r = redis_lib.Redis.from_url(redis_url)
    key = keys.ingest_stream(settings.redis_prefix)
    good = [wire_llm(f"good-{i}") for i in range(10)]
    mixed = []
    for i, bad in enumerate(MALFORMED_WIRE):
        mixed += [good[i % 10], bad]
    op_ok = ["op", "op-ok", 1_780_000_000.0, "lead", "qualify", 5.0, True, False, None]
    r.xadd(key, {"v": "1", "e": json.dumps(mixed + [op_ok])})
    r.xadd(key, {"v": "1", "e": "{not json"})  # a broken entry does not block its neighbours
    r.xadd(key, {"v": "1", "x": "no events field"})
    r.xadd(key, {"v": "1", "e": json.dumps({"not": "a list"})})
    r.xadd(key, {"v": "1", "e": json.dumps([wire_llm("good-last")])})

    caplog.set_level(logging.WARNING)
    worker = Worker(pg_store, settings, steps=[])
    worker.drain()
    with pg_store.connect() as conn:
        ids = set(conn.execute(sa.select(schema.llm_calls.c.trace_id)).scalars())
        ops = set(conn.execute(sa.select(schema.bot_operations.c.id)).scalars())
    assert ids == {f"good-{i}" for i in range(10)} | {"good-last"}
    assert ops == {"op-ok"}
    assert worker.consumer.rejected == len(MALFORMED_WIRE)
    assert worker.consumer.malformed == 3
    assert r.xlen(key) == 0 and r.xpending(key, GROUP)["pending"] == 0, "every entry is acknowledged"
    assert any("rejected" in rec.getMessage() for rec in caplog.records)
    worker.close()


def test_an_event_the_store_refuses_despite_validation_is_rejected_alone(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net behind `check_wire`: no batch becomes a poison pill retried forever."""
    from observability.store import ingest
    from observability.store.ingest import write_batch

    monkeypatch.setattr(ingest, "check_wire", lambda event, max_text_bytes=0: event)  # validation misses all
    good = [wire_llm(f"good-{i}") for i in range(50)]
    refused = [wire_llm("bot-long", bot="b" * 65), wire_llm("ts-far", ts=1e15),
               ["message", "m-nul", 1_780_000_000.0, "conv", "user", "nul\x00", None, None, None]]  # fmt: skip
    batch = good[:20] + refused[:1] + good[20:40] + refused[1:] + good[40:]
    caplog.set_level(logging.WARNING, logger="observability.store.ingest")
    result = write_batch(pg_store, batch)
    assert result.rejected == 3 and result.written["llm"] == 50 and result.written.get("message", 0) == 0
    with pg_store.connect() as conn:
        ids = set(conn.execute(sa.select(schema.llm_calls.c.trace_id)).scalars())
    assert ids == {f"good-{i}" for i in range(50)}
    assert sum("store refused" in r.getMessage() for r in caplog.records) == 3


def test_the_fast_llm_check_never_accepts_what_the_full_check_rejects() -> None:
    from observability import events as ev
    from observability.store.wire import check_event

    fast = ev.plain_llm_event
    candidates = [None, "", " ", "x" * 65, "x" * 201, "a\x00b", "é", "\ud800", "tab\there", -1, 0, 2**31,
                  2**31 - 1, 1.5, -0.5, math.nan, math.inf, True, False, [], {}, 1e15]  # fmt: skip

    def full_ok(e: list) -> bool:
        try:
            check_event(e)
            return True
        except ev.EventRejected:
            return False

    base = wire_llm("t-1", bot="lead", conversation_id="conv-1")
    assert fast(base) and full_ok(base)
    accepted = 0
    for pos in range(1, len(base)):
        for value in candidates:
            e = list(base)
            e[pos] = value
            if fast(e):
                accepted += 1
                assert full_ok(e), (ev.FIELDS["llm"][pos - 1], value)
    assert accepted > 20  # the fast path does accept the plain cases


def test_broken_entries_at_the_head_of_the_stream_do_not_stop_one_drain(
    pg_store: Store, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(pg_store.url, redis_url, worker_batch_entries=1)
    r = redis_lib.Redis.from_url(redis_url)
    key = keys.ingest_stream(settings.redis_prefix)
    for _ in range(3):
        r.xadd(key, {"v": "1", "e": "garbage"})
    r.xadd(key, {"v": "1", "e": json.dumps([["nonsense"]])})
    r.xadd(key, {"v": "1", "e": json.dumps([wire_llm(f"good-{i}") for i in range(5)])})
    worker = Worker(pg_store, settings, steps=[])
    assert worker.drain() == 5  # one call (as in a tick) gets past the broken entries
    worker.close()
    assert r.xlen(key) == 0
