"""Round trips: what a bot records is what the store holds, field for field.

Three paths, the same promises: SDK → SQLite, SDK → PostgreSQL (no Redis), and SDK → Redis stream →
worker → PostgreSQL. N events in, N rows out, for every `record_*` method; `timestamp=` is honoured
(aware values converted to UTC), message text is stored with its PII redacted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from support import PIPELINE_KINDS, Pipeline

from observability.store import schema
from observability.store.pricing import cost_of

N = 40  # events per record method
BERLIN = ZoneInfo("Europe/Berlin")
BASE = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=BERLIN)


def at(i: int) -> datetime:
    """The i-th event's time: aware (Berlin), with microseconds, one second apart."""
    return BASE + timedelta(seconds=i, microseconds=7 * i)


def utc(dt: datetime) -> datetime:
    """How the store keeps a time: naive UTC."""
    return dt.astimezone(UTC).replace(tzinfo=None)


@pytest.fixture(params=PIPELINE_KINDS)
def pipeline(request: pytest.FixtureRequest, make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline(request.param)


# ---- LLM calls -----------------------------------------------------------------------------------

MODELS = [
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-flash", "google"),
]


def test_every_llm_call_is_stored_field_for_field(pipeline: Pipeline) -> None:
    c = pipeline.client
    expected = {}
    for i in range(N):
        model, provider = MODELS[i % len(MODELS)]
        explicit_cost = 0.0123 * i if i % 4 == 0 else None
        tid = f"trace-{i:04d}"
        kwargs = dict(
            cache_hit=i % 5 == 0,
            conversation_id=f"conv-{i % 3}" if i % 2 else None,
            bot=["lead", "buyer", "seller"][i % 3],
            agent=f"agent-{i % 2}" if i % 3 else None,
            decision_type="qualify" if i % 2 else None,
            success=i % 7 != 0,
            error_type="RateLimitError" if i % 7 == 0 else None,
            cost_usd=explicit_cost,
            trace_id=tid,
            timestamp=at(i),
        )
        if i % 2:  # an Anthropic `usage` as a dict: uncached input apart from cache reads/writes
            usage = {"input_tokens": 100 + i, "output_tokens": 50 + i,
                     "cache_read_input_tokens": 1000 + i, "cache_creation_input_tokens": 10 * i}  # fmt: skip
            returned = c.record_llm_call(model, provider, latency_ms=200.0 + i, usage=usage, **kwargs)
            it, ot, cr, cw = 100 + i + 1000 + i + 10 * i, 50 + i, 1000 + i, 10 * i
        else:
            it, ot, cr, cw = 500 + i, 80 + i, 0, 0
            returned = c.record_llm_call(model, provider, it, ot, 200.0 + i, **kwargs)
        assert returned == tid
        price = cost_of(provider, model, it, ot, cr, cw, response_cache_hit=kwargs["cache_hit"])
        expected[tid] = (
            tid, utc(at(i)), kwargs["bot"], kwargs["agent"], kwargs["decision_type"], model, provider,
            it, ot, cr, cw, 200.0 + i, kwargs["cache_hit"],
            explicit_cost if explicit_cost is not None else price.usd,
            kwargs["conversation_id"], kwargs["success"], kwargs["error_type"],
        )  # fmt: skip
    pipeline.deliver()

    cols = ("trace_id", "ts", "bot", "agent", "decision_type", "model", "provider", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms", "cache_hit",
            "cost_usd", "conversation_id", "success", "error_type")  # fmt: skip
    rows = pipeline.rows(schema.llm_calls, *cols)
    assert len(rows) == N
    for row in rows:
        want = expected[row[0]]
        assert row[:13] == want[:13]
        assert row[13] == pytest.approx(want[13], rel=1e-9, abs=1e-12)
        assert row[14:] == want[14:]
    # every model here has a price: none is flagged, and the priced ones cost something
    assert all(k for (k,) in pipeline.rows(schema.llm_calls, "price_known"))
    assert c.stats()["rejected"] == 0


def test_a_call_without_trace_id_gets_a_fresh_one_and_the_current_time(pipeline: Pipeline) -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    ids = {pipeline.client.record_llm_call("claude-sonnet-4-5", "anthropic", 10, 5, 12.5) for _ in range(N)}
    pipeline.deliver()
    after = datetime.now(UTC).replace(tzinfo=None)
    rows = pipeline.rows(schema.llm_calls, "trace_id", "ts")
    assert {r[0] for r in rows} == ids and len(ids) == N
    assert all(before - timedelta(seconds=1) <= r[1] <= after for r in rows)


# ---- operations, interactions, handoffs ----------------------------------------------------------


def test_every_tracked_operation_is_stored_with_its_time(pipeline: Pipeline) -> None:
    c = pipeline.client
    expected = set()
    for i in range(N):
        ok = i % 6 != 0
        c.track_operation("buyer", f"op-{i}", 10.5 + i, success=ok, cache_hit=i % 4 == 0,
                          error_type=None if ok else "Timeout", timestamp=at(i))  # fmt: skip
        expected.add(("buyer", f"op-{i}", 10.5 + i, ok, i % 4 == 0, None if ok else "Timeout", utc(at(i))))
    pipeline.deliver()
    rows = pipeline.rows(schema.bot_operations, "bot", "operation", "duration_ms", "success",
                         "cache_hit", "error_type", "ts")  # fmt: skip
    assert len(rows) == N and set(rows) == expected
    ids = [r[0] for r in pipeline.rows(schema.bot_operations, "id")]
    assert len(set(ids)) == N


def test_async_and_decorated_operations_are_timed_and_failures_recorded(pipeline: Pipeline) -> None:
    c = pipeline.client

    @c.track_performance("seller", "sync_ok")
    def sync_ok(x: int) -> int:
        time.sleep(0.005)
        return x * 2

    @c.track_performance("seller", "sync_fail")
    def sync_fail() -> None:
        raise KeyError("missing")

    @c.track_performance("seller", "async_ok")
    async def async_ok(x: int) -> int:
        await asyncio.sleep(0.005)
        return x + 1

    @c.track_performance("seller", "async_fail")
    async def async_fail() -> None:
        await asyncio.sleep(0)
        raise TimeoutError

    async def block_ok() -> None:
        async with c.track_async_operation("seller", "block_ok"):
            await asyncio.sleep(0.005)

    async def block_fail() -> None:
        async with c.track_async_operation("seller", "block_fail"):
            raise ValueError("bad")

    n = 5
    for i in range(n):
        assert sync_ok(i) == 2 * i
        with pytest.raises(KeyError):
            sync_fail()
        assert asyncio.run(async_ok(i)) == i + 1
        with pytest.raises(TimeoutError):
            asyncio.run(async_fail())
        asyncio.run(block_ok())
        with pytest.raises(ValueError):
            asyncio.run(block_fail())
    # the decorator keeps the function's name and doc
    assert sync_ok.__name__ == "sync_ok" and async_ok.__name__ == "async_ok"
    pipeline.deliver()

    rows = pipeline.rows(schema.bot_operations, "bot", "operation", "duration_ms", "success", "error_type")
    by_op: dict[str, list[tuple]] = {}
    for r in rows:
        assert r[0] == "seller"
        by_op.setdefault(r[1], []).append(r)
    assert {k: len(v) for k, v in by_op.items()} == {
        "sync_ok": n, "sync_fail": n, "async_ok": n, "async_fail": n, "block_ok": n, "block_fail": n,
    }  # fmt: skip
    for op in ("sync_ok", "async_ok", "block_ok"):
        assert all(r[3] is True and r[4] is None and r[2] >= 4.5 for r in by_op[op]), by_op[op]
    errors = {"sync_fail": "KeyError", "async_fail": "TimeoutError", "block_fail": "ValueError"}
    for op, err in errors.items():
        assert all(r[3] is False and r[4] == err and r[2] >= 0 for r in by_op[op]), by_op[op]


def test_every_interaction_and_handoff_is_stored(pipeline: Pipeline) -> None:
    c = pipeline.client
    inter, hand = set(), set()
    for i in range(N):
        ok = i % 5 != 0
        c.record_bot_interaction(["lead", "buyer"][i % 2], 100.0 + i, success=ok, cache_hit=i % 3 == 0,
                                 error_type=None if ok else "LLMError", timestamp=at(i))  # fmt: skip
        inter.add(
            (["lead", "buyer"][i % 2], 100.0 + i, ok, i % 3 == 0, None if ok else "LLMError", utc(at(i)))
        )
        blocked = i % 4 == 0
        c.record_handoff("lead", "buyer" if i % 2 else "seller", success=not blocked,
                         duration_ms=float(i), blocked=blocked,
                         reason="circular handoff" if blocked else None, timestamp=at(i),
                         conversation_id=f"conv-{i}" if i % 3 else None)  # fmt: skip
        hand.add(("lead", "buyer" if i % 2 else "seller", not blocked, float(i), blocked,
                  "circular handoff" if blocked else None, utc(at(i)), f"conv-{i}" if i % 3 else None))  # fmt: skip
    pipeline.deliver()
    got_i = pipeline.rows(schema.bot_interactions, "bot", "duration_ms", "success", "cache_hit",
                          "error_type", "ts")  # fmt: skip
    got_h = pipeline.rows(schema.handoffs, "source", "target", "success", "duration_ms", "blocked",
                          "reason", "ts", "conversation_id")  # fmt: skip
    assert len(got_i) == N and set(got_i) == inter
    assert len(got_h) == N and set(got_h) == hand


# ---- messages, conversations, accounts -------------------------------------------------------------


def test_every_message_is_stored_with_pii_redacted_and_its_conversation_tracked(pipeline: Pipeline) -> None:
    c = pipeline.client
    expected = set()
    for i in range(N):
        conv = f"conv-{i % 4}"
        role = ("user", "bot")[i % 2]  # operator replies go through the control service, not the SDK
        text = f"message {i}: write to jane.doe{i}@example.com or call +1 415 555 01{i:02d}, order 123456"
        redacted = f"message {i}: write to [email redacted] or call [phone redacted], order 123456"
        c.record_message(conv, role, text, bot="buyer" if role == "bot" else None, account_id=f"acct-{i % 4}",
                         timestamp=at(i), author="maria" if role == "user" else None)  # fmt: skip
        expected.add((conv, role, redacted, "buyer" if role == "bot" else None, f"acct-{i % 4}",
                      "maria" if role == "user" else None, utc(at(i))))  # fmt: skip
    pipeline.deliver()
    rows = pipeline.rows(
        schema.messages, "conversation_id", "role", "text", "bot", "account_id", "author", "ts"
    )
    assert len(rows) == N and set(rows) == expected
    convs = pipeline.rows(schema.conversations, "id", "account_id", "state", "started_at", "last_activity_at")
    assert sorted(convs) == [
        (f"conv-{k}", f"acct-{k}", "ai", utc(at(k)), utc(at(max(i for i in range(N) if i % 4 == k))))
        for k in range(4)
    ]


def test_accounts_are_stored_and_the_latest_setting_wins(pipeline: Pipeline) -> None:
    c = pipeline.client
    for i in range(N):
        c.set_account(f"acct-{i}", name=f"Account {i}", vip=i % 3 == 0)
    pipeline.deliver()
    c.set_account("acct-0", vip=False)  # the name is kept when not given again
    c.set_account("acct-1", name="Renamed", vip=True)
    pipeline.deliver()
    rows = dict((r[0], r[1:]) for r in pipeline.rows(schema.accounts, "id", "name", "vip"))
    assert len(rows) == N
    assert rows["acct-0"] == ("Account 0", False)
    assert rows["acct-1"] == ("Renamed", True)
    assert all(rows[f"acct-{i}"] == (f"Account {i}", i % 3 == 0) for i in range(2, N))


# ---- metrics and activity ----------------------------------------------------------------------------


def test_every_metric_is_stored_with_its_metadata(pipeline: Pipeline) -> None:
    c = pipeline.client
    expected = {}
    for i in range(N):
        meta = {"bot": "lead", "i": i, "tags": ["a", "b"], "nested": {"ok": i % 2 == 0}} if i % 2 else None
        c.record_metric("ai_confidence" if i % 2 else "safety_score", i / 10, metric_type="gauge" if i % 3 else "histogram",
                        account_id=f"acct-{i}", conversation_id=f"conv-{i}", metadata=meta,
                        timestamp=at(i), user_id="u1" if i == 3 else None)  # fmt: skip
        expected[f"conv-{i}"] = ("ai_confidence" if i % 2 else "safety_score", "gauge" if i % 3 else "histogram",
                                 i / 10, f"acct-{i}", "u1" if i == 3 else None, meta, utc(at(i)))  # fmt: skip
    pipeline.deliver()
    rows = pipeline.rows(schema.system_metrics, "conversation_id", "metric_name", "metric_type", "value",
                         "account_id", "user_id", "metadata", "ts")  # fmt: skip
    assert len(rows) == N
    assert {r[0]: r[1:] for r in rows} == expected


def test_every_activity_event_is_stored(pipeline: Pipeline) -> None:
    c = pipeline.client
    expected = {}
    for i in range(N):
        sev = ("low", "medium", "high", "critical")[i % 4]
        meta = {"n": i} if i % 2 else None
        c.log_activity("handoff", f"Title {i}", severity=sev, category="bots", description=f"desc {i}" if i % 3 else None,
                       account_id=f"acct-{i}", conversation_id=f"conv-{i}", metadata=meta, timestamp=at(i))  # fmt: skip
        expected[f"Title {i}"] = ("handoff", f"desc {i}" if i % 3 else None, sev, "bots", f"acct-{i}", f"conv-{i}",
                                  meta, utc(at(i)))  # fmt: skip
    pipeline.deliver()
    rows = pipeline.rows(schema.activity_events, "title", "event_type", "description", "severity", "category",
                         "account_id", "conversation_id", "metadata", "ts")  # fmt: skip
    assert len(rows) == N
    assert {r[0]: r[1:] for r in rows} == expected


# ---- the whole mix, and the counters -----------------------------------------------------------------


def test_a_mixed_stream_is_counted_and_stored_once(pipeline: Pipeline) -> None:
    c = pipeline.client
    for i in range(N):
        c.record_llm_call("claude-sonnet-4-5", "anthropic", 100, 10, 50.0, timestamp=at(i))
        c.track_operation("lead", "qualify", 5.0, timestamp=at(i))
        c.record_bot_interaction("lead", 30.0, timestamp=at(i))
        c.record_handoff("lead", "buyer", timestamp=at(i))
        c.record_message("conv-x", "user", "hello", timestamp=at(i))
        c.record_metric("system_load", 12.5, timestamp=at(i))
        c.log_activity("note", "hello", timestamp=at(i))
    pipeline.deliver()
    pipeline.deliver()  # a second flush sends nothing again
    stats = c.stats()
    assert stats["queued"] == 7 * N and stats["written"] == 7 * N
    assert stats["dropped"] == stats["rejected"] == stats["spilled"] == stats["pending"] == 0
    for table in (schema.llm_calls, schema.bot_operations, schema.bot_interactions, schema.handoffs,
                  schema.messages, schema.system_metrics, schema.activity_events):  # fmt: skip
        with pipeline.store.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == N, table.name
