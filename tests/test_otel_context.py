"""A call's context from its trace, when the spans come in separate export requests.

A bot's span ends after the model calls made inside it, so a batching exporter often sends the
calls first and the bot's span (naming the conversation, the bot, the agent and the account) in a
later request. The real OpenTelemetry SDK makes the spans and its OTLP/HTTP exporter sends them to a
running worker server, one request per group: the call is stored at once, then completed when its
ancestors arrive, and re-delivering everything stores nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import pytest
import sqlalchemy as sa
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from streamlit.testing.v1 import AppTest
from support import ROOT, wait_for
from test_worker_http import scrape

from observability.settings import Settings, reset_settings_cache
from observability.store import Store, otlp_counts, schema
from observability.ui.common import md_escape
from observability.worker.server import serve

CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 80,
}
BOT = {"gen_ai.conversation.id": "conv-late", "obs.bot": "buyer_bot", "gen_ai.agent.name": "negotiator",
       "obs.account_id": "acct-7"}  # fmt: skip


def make_spans(
    bot: dict, call: dict, *, resource: dict | None = None, middle: bool = False
) -> tuple[ReadableSpan, ...]:
    """The bot's span (and a plain span under it when `middle`) with one model call inside; the
    spans in the order they end: the call, the middle span, the bot's span."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc_from_resource", **(resource or {})})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lead_bot")
    with tracer.start_as_current_span("handle_message", attributes=bot):
        if middle:
            with tracer.start_as_current_span("retrieve_and_answer"):
                with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes=call):
                    pass
        else:
            with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes=call) as span:
                if call.get("error.type"):
                    span.set_status(Status(StatusCode.ERROR, "Error code: 500"))
    provider.shutdown()
    return tuple(memory.get_finished_spans())


def calls(store: Store) -> list[dict]:
    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(schema.llm_calls))]


def conversation(store: Store, conv: str) -> dict | None:
    with store.connect() as conn:
        row = conn.execute(sa.select(schema.conversations).where(schema.conversations.c.id == conv)).first()
    return dict(row._mapping) if row else None


@pytest.fixture
def worker(store: Store, make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Callable]]:
    """`worker(**settings)` serves a worker on the store and returns its `send(spans)`."""
    servers = []

    def start(**overrides: object) -> Callable[[Sequence[ReadableSpan]], None]:
        srv = serve(store, make_settings(store.url, **overrides), port=0)
        servers.append(srv)
        exporter = OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces", timeout=10)

        def send(spans: Sequence[ReadableSpan]) -> None:
            assert exporter.export(list(spans)) == SpanExportResult.SUCCESS

        send.url = srv.url  # type: ignore[attr-defined]
        return send

    yield start
    for s in servers:
        s.stop()


def test_bot_span_in_a_later_request_completes_the_stored_call(store: Store, worker: Callable) -> None:
    send = worker()
    call, bot = make_spans(BOT, {**CALL, "gen_ai.response.id": "msg_late_1"})
    send([call])
    (row,) = calls(store)  # stored at once, with what the call's span and the resource say
    assert (row["conversation_id"], row["bot"], row["agent"]) == (None, "svc_from_resource", None)
    send([bot])
    (row,) = calls(store)
    assert (row["conversation_id"], row["bot"], row["agent"]) == ("conv-late", "buyer_bot", "negotiator")
    assert (row["input_tokens"], row["output_tokens"]) == (1200, 80) and row["cost_usd"] > 0
    assert conversation(store, "conv-late")["account_id"] == "acct-7"
    send([call])  # re-delivered, each request again and both at once: nothing stored twice
    send([bot])
    send([call, bot])
    assert calls(store) == [row]


def test_failed_call_without_response_id_gets_its_context_through_a_middle_span(
    store: Store, worker: Callable
) -> None:
    send = worker()
    failed = {**CALL, "error.type": "InternalServerError"}
    del failed["gen_ai.usage.input_tokens"], failed["gen_ai.usage.output_tokens"]
    call, middle, bot = make_spans(BOT, failed, middle=True)
    send([call])
    send([middle])  # no context on it: the call still waits for the bot's span
    assert calls(store)[0]["conversation_id"] is None
    send([bot])
    (row,) = calls(store)
    assert (row["conversation_id"], row["bot"], row["success"], row["error_type"]) == (
        "conv-late", "buyer_bot", False, "server_error")  # fmt: skip
    send([call, middle, bot])
    assert calls(store) == [row]


def test_call_span_beats_ancestors_beat_resource(store: Store, worker: Callable) -> None:
    send = worker()
    own = {**CALL, "gen_ai.response.id": "msg_own_1", "obs.bot": "call_bot"}
    call, bot = make_spans({"gen_ai.conversation.id": "conv-anc", "obs.bot": "ancestor_bot"}, own,
                           resource={"obs.account_id": "acct-res", "gen_ai.agent.name": "res_agent"})  # fmt: skip
    send([bot, call])
    (row,) = calls(store)
    assert (row["bot"], row["conversation_id"], row["agent"]) == ("call_bot", "conv-anc", "res_agent")
    assert conversation(store, "conv-anc")["account_id"] == "acct-res"
    call2, bot2 = make_spans({"obs.bot": "ancestor_bot"}, {**CALL, "gen_ai.response.id": "msg_anc_2"})
    send([call2, bot2])
    assert {r["bot"] for r in calls(store)} == {"call_bot", "ancestor_bot"}


def test_the_wait_for_ancestors_is_bounded_by_the_setting(store: Store, worker: Callable) -> None:
    send = worker(otlp_context_window_s=0.0)
    call, bot = make_spans(BOT, {**CALL, "gen_ai.response.id": "msg_window_1"})
    send([call])
    send([bot])  # too late: the call keeps what it had
    (row,) = calls(store)
    assert (row["conversation_id"], row["bot"]) == (None, "svc_from_resource")


def test_a_stored_call_survives_a_worker_restart_and_is_not_stored_again(
    store: Store, worker: Callable
) -> None:
    call, bot = make_spans(BOT, {**CALL, "gen_ai.response.id": "msg_restart_1"})
    worker()([call])  # answered 200: the call is in the store, not only in the worker's memory
    again = worker()  # a new worker process's receiver: nothing remembered
    again([call])
    again([bot])
    (row,) = calls(store)
    assert (row["input_tokens"], row["output_tokens"]) == (1200, 80)


def test_a_request_after_a_restart_with_stored_and_new_calls_stores_only_the_new(
    store: Store, worker: Callable
) -> None:
    # the receiver writes without a savepoint; a row already stored makes it run the transaction again
    old, _ = make_spans(BOT, {**CALL, "gen_ai.response.id": "msg_restart_2"})
    new, _ = make_spans(BOT, {**CALL, "gen_ai.response.id": "msg_restart_3", "gen_ai.usage.output_tokens": 7})
    worker()([old])
    worker()([old, new])  # a new receiver remembers nothing: one of the two rows is in the store already
    rows = sorted(calls(store), key=lambda r: r["output_tokens"])
    assert [(r["trace_id"], r["output_tokens"]) for r in rows] == [
        ("resp-msg_restart_3", 7),
        ("resp-msg_restart_2", 80),
    ]


def test_each_instrumentation_scope_is_counted_on_metrics_and_the_admin_page(
    store: Store, worker: Callable, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Received, stored, merged, ignored and rejected per scope; one log line for a scope whose
    GenAI-looking spans are ignored; the same figures on /metrics and on the Admin page."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "scoped_bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    sdk, wrapper, unread = (provider.get_tracer(n) for n in ("acme.sdk", "acme.wrapper", "acme.unread"))
    with sdk.start_as_current_span("chat", attributes={**CALL, "gen_ai.response.id": "msg_scopes_1"}):
        pass
    with wrapper.start_as_current_span("chat", attributes={**CALL, "gen_ai.response.id": "msg_scopes_1"}):
        pass
    with wrapper.start_as_current_span("chat", attributes={**CALL, "gen_ai.usage.input_tokens": -5}):
        pass
    for _ in range(3):  # usage but no model: a convention this receiver does not read
        with unread.start_as_current_span("generate", attributes={"gen_ai.usage.input_tokens": 10}):
            pass
    provider.shutdown()
    caplog.set_level(logging.WARNING, logger="observability.worker")
    send = worker()
    send(memory.get_finished_spans())
    send(memory.get_finished_spans()[-2:])
    expected = {"acme.sdk": (1, 1, 0, 0, 0), "acme.wrapper": (2, 0, 1, 0, 1), "acme.unread": (5, 0, 0, 5, 0)}
    assert len(calls(store)) == 1

    def admin_counts() -> dict:
        return {
            s.scope: (s.received, s.stored, s.merged, s.ignored, s.rejected)
            for s in otlp_counts.by_scope(store)
        }

    wait_for(lambda: admin_counts() == expected, timeout=10, message="scope counts in the store")
    warned = [r.getMessage() for r in caplog.records if "acme.unread" in r.getMessage()]
    assert len(warned) == 1 and "name no model" in warned[0]
    m = scrape(send.url)
    for scope, figures in expected.items():
        for outcome, n in zip(otlp_counts.OUTCOMES, figures, strict=True):
            got = m.get(
                ("obs_otlp_scope_spans_total", frozenset({("scope", scope), ("outcome", outcome)})), 0
            )
            assert got == n, (scope, outcome)

    monkeypatch.setenv("DATABASE_URL", store.url)
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    try:
        at = AppTest.from_file(str(ROOT / "pages" / "admin.py"), default_timeout=60).run()
        assert not at.exception
        (frame,) = [df.value for df in at.dataframe if "stored as calls" in df.value.columns]
        shown = {r["scope"]: (r["received"], r["stored as calls"], r["merged"], r["ignored"], r["rejected"])
                 for r in frame.to_dict("records")}  # fmt: skip
        assert shown == expected
        assert any(md_escape("acme.unread") in w.value and "name no model" in w.value for w in at.warning)
    finally:
        reset_settings_cache()
