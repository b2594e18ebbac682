"""Real OpenTelemetry instrumentations, real clients, the real worker: each call stored once and right.

The real `openai` and `anthropic` clients call a fake LLM API on 127.0.0.1 (`support.fake_llm`):
a plain answer, a prompt-cached one, a streamed one, an HTTP 500 and an HTTP 429. The anthropic
SDK's own tracing is on (as it is whenever a tracer provider is set), with OpenLLMetry,
OpenInference, the official openai-v2 instrumentation, OpenLIT or Pydantic Logfire on top, and the
spans go by OTLP/HTTP protobuf to a running worker HTTP server. Each call is made inside the bot's own
span, which names the conversation. Every client runs in a process of its own (`support.otel_clients`), all at once.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import subprocess_env
from support.fake_llm import OPENAI_MODEL, STREAM_WAIT_S, USAGE, FakeLLMServer
from support.otel_clients import CALLS, INSTRUMENTATIONS, STREAMED, calls_of
from test_worker_http import scrape

from observability.analytics.llm_observability import LLMObservabilityService
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.pricing import cost_of
from observability.worker.server import serve

pytestmark = pytest.mark.timeout(600)

ERRORS = {"fail500": "server_error", "fail429": "rate_limit"}
RAW_ERRORS = {"fail500": ("500", "InternalServerError"), "fail429": ("429", "RateLimitError")}
# the model a call is stored under: the one the bot asked for, its failures' as its successes'
REQUESTED = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}
N_CALLS = len(CALLS) + 1  # each client's calls (`calls_of`)
NO_CACHED_READS = {"openai-v2"}  # its spans carry no cached-token count (see the README)
COUNTS_STREAMS = {"openlit-openai"}  # counts a stream's tokens itself when the API sends no usage
SEPARATE = ("openllmetry-anthropic", "openinference-anthropic")  # also run with one request per span
# also run with no span of the bot around the calls, in one batch and one request per span: the
# anthropic SDK's span and the instrumentation's span of a failed call then share nothing but time
BARE = tuple((n, mode) for n in SEPARATE for mode in ("batch", "simple"))
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict]]:
    """Every client's six calls, stored by one running worker; yields (store, /metrics scrape)."""
    tmp = tmp_path_factory.mktemp("interop")
    store = Store.from_url(f"sqlite:///{tmp / 'store.db'}")
    store.migrate()
    settings = Settings().replace(database_url=store.url, redis_url=None, spool_dir=tmp / "spool",
                                  worker_lock_file=tmp / "lock", auth_mode="none")  # fmt: skip
    worker = serve(store, settings, port=0)
    runs: dict[str, list[str]] = {n: [n, "batch"] for n in INSTRUMENTATIONS}  # name -> tag, mode, ...
    for n in SEPARATE:
        runs[n] += [f"{n}-separate", "simple"]
    for n, mode in BARE:
        runs[n] += [f"{n}-bare-{mode}", f"{mode}-bare"]
    env = subprocess_env(PYTHONPATH=f"{TESTS}:{TESTS.parent}", OTEL_SDK_DISABLED="false")
    try:
        with FakeLLMServer() as llm:
            # one process per instrumentation (its imports are most of the time), its runs in turn;
            # the longest first, two at a time: the machine's two cores
            pending = sorted(runs.items(), key=lambda kv: -len(kv[1]))
            running: list[tuple[str, subprocess.Popen]] = []
            while pending or running:
                while pending and len(running) < 2:
                    tag, args = pending.pop(0)
                    cmd = [sys.executable, "-m", "support.otel_clients", tag, llm.url, worker.url, *args]
                    running.append((tag, subprocess.Popen(cmd, env=env, cwd=TESTS, stdout=subprocess.PIPE,
                                                          stderr=subprocess.STDOUT)))  # fmt: skip
                tag, p = running.pop(0)
                out, _ = p.communicate(timeout=300)
                assert p.returncode == 0, f"{tag}: {out.decode()[-3000:]}"
        yield store, scrape(worker.url)
    finally:
        worker.stop()
        store.dispose()


def stored_calls(store: Store) -> list[dict]:
    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(schema.llm_calls))]


def check_rows(name: str, tag: str, rows: list[dict]) -> None:
    client_kind = INSTRUMENTATIONS[name][0]
    by_conv: dict = {}
    for r in rows:
        assert r["conversation_id"] not in by_conv, f"{name}: {r['conversation_id']} stored twice"
        by_conv[r["conversation_id"]] = r
    assert sorted(by_conv, key=str) == sorted(f"conv-{tag}-{w}" for w in calls_of(client_kind)), rows
    model = REQUESTED[client_kind]
    # one model, one name: a failure is stored under the model its successes are (AI performance's
    # error rate per model, the model filters and the cost tables count them together)
    assert {r["model"] for r in rows} == {model}, rows
    for what in calls_of(client_kind):
        r = by_conv[f"conv-{tag}-{what}"]
        assert r["provider"] == client_kind and r["bot"] == tag
        if what in STREAMED:  # the whole call: the wait for the first chunk included (Logfire's too)
            assert r["latency_ms"] >= STREAM_WAIT_S * 1000, (what, r)
        if what in ERRORS:
            assert not r["success"] and r["error_type"] == ERRORS[what], (what, r)
            status, err = RAW_ERRORS[what]  # the raw value beside the normalised one: its status or name
            assert status in r["error_raw"] or err in r["error_raw"].replace(" ", ""), (what, r)
            continue
        if what == "stream_nousage" and name in COUNTS_STREAMS:
            assert r["success"] and r["input_tokens"] > 0 and r["price_known"], r
            continue
        if what == "stream_nousage":  # no usage sent: unpriced (its cost unknown), not a free call
            assert (r["success"], r["input_tokens"], r["output_tokens"]) == (True, 0, 0), r
            assert not r["price_known"] and r["cost_usd"] == 0, r
            continue
        u = dict(USAGE[client_kind]["stream" if what in STREAMED else what])
        if name in NO_CACHED_READS:
            u["read"] = 0
        got = (
            r["model"],
            r["input_tokens"],
            r["output_tokens"],
            r["cache_read_tokens"],
            r["cache_write_tokens"],
        )
        assert got == (model, u["input"], u["output"], u["read"], u["write"]), (what, r)
        assert r["success"] and r["error_type"] is None
        assert r["latency_ms"] > 0 and r["price_known"], (what, r)
        expected = cost_of(client_kind, model, u["input"], u["output"], u["read"], u["write"]).usd
        assert r["cost_usd"] == pytest.approx(expected, rel=0.02) and r["cost_usd"] > 0


def rows_of(store: Store, tag: str) -> list[dict]:
    """The rows of one run (its service name is the run's tag)."""
    return [r for r in stored_calls(store) if r["bot"] == tag]


@pytest.mark.parametrize("name", list(INSTRUMENTATIONS))
def test_every_call_of_every_instrumentation_is_stored_once_and_right(
    name: str, interop: tuple[Store, dict]
) -> None:
    store, _ = interop
    check_rows(name, name, rows_of(store, name))


@pytest.mark.parametrize("name", SEPARATE)
def test_spans_of_one_call_in_separate_export_requests_are_stored_once(
    name: str, interop: tuple[Store, dict]
) -> None:
    """Each span exported on its own (SimpleSpanProcessor): the SDK's span, then the
    instrumentation's, then the bot's, each in a request of its own."""
    store, _ = interop
    rows = rows_of(store, f"{name}-separate")
    assert len(rows) == N_CALLS, rows
    assert sorted(r["error_type"] or "" for r in rows) == ["", "", "", "", "rate_limit", "server_error"]
    u = [*USAGE["anthropic"].values(), USAGE["anthropic"]["stream"]]  # two streamed calls
    assert (sum(r["input_tokens"] for r in rows), sum(r["cache_read_tokens"] for r in rows),
            sum(r["cache_write_tokens"] for r in rows)) == (
        sum(x["input"] for x in u), sum(x["read"] for x in u), sum(x["write"] for x in u))  # fmt: skip


@pytest.mark.parametrize(("name", "mode"), BARE)
def test_calls_outside_any_bot_span_are_stored_once_failed_ones_too(
    name: str, mode: str, interop: tuple[Store, dict]
) -> None:
    """No enclosing span: each call's SDK span and instrumentation span may be roots of two traces;
    a failed call has no response id, so only the process, provider, model and time tie them."""
    store, _ = interop
    rows = rows_of(store, f"{name}-bare-{mode}")
    assert len(rows) == N_CALLS, rows
    assert sorted(r["error_type"] or "" for r in rows) == ["", "", "", "", "rate_limit", "server_error"]
    assert all(r["model"] == "claude-sonnet-4-5" and r["conversation_id"] is None for r in rows)
    u = [*USAGE["anthropic"].values(), USAGE["anthropic"]["stream"]]
    assert sorted((r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"])
                  for r in rows if r["success"]) == sorted(
        (x["input"], x["output"], x["read"], x["write"]) for x in u)  # fmt: skip


def test_streams_that_report_no_usage_are_counted_where_unpriced_calls_are(
    interop: tuple[Store, dict],
) -> None:
    """An OpenAI stream without `stream_options={"include_usage": True}` sends no usage: its calls
    are listed and counted with the unpriced calls (Cost tracking), as calls without usage."""
    store, _ = interop
    missing = [
        r
        for r in stored_calls(store)
        if r["conversation_id"] and r["conversation_id"].endswith("-stream_nousage")
    ]
    missing = [r for r in missing if r["bot"] not in COUNTS_STREAMS]
    assert len(missing) == sum(
        kind == "openai" and n not in COUNTS_STREAMS for n, (kind, _) in INSTRUMENTATIONS.items()
    )
    listed = {
        (r["model"], r["provider"]): r for r in LLMObservabilityService(store).unknown_model_calls(86_400)
    }
    assert listed[("gpt-4o-mini", "openai")]["usage_missing_calls"] == len(missing)
    assert sum(r["calls"] for r in listed.values()) == len(missing)  # every other call is priced


def test_metrics_count_spans_per_instrumentation_scope(interop: tuple[Store, dict]) -> None:
    store, m = interop

    def count(scope: str, outcome: str) -> float:
        return m.get(("obs_otlp_scope_spans_total", frozenset({("scope", scope), ("outcome", outcome)})), 0)

    n_calls = len(INSTRUMENTATIONS) + len(SEPARATE) + len(BARE)
    assert count("lead_bot", "received") == (n_calls - len(BARE)) * N_CALLS  # the bot's spans: not GenAI
    assert m[("obs_otlp_ignored_spans_total", frozenset({("scope", "lead_bot"), ("reason", "not_genai")}))] == (
        (n_calls - len(BARE)) * N_CALLS)  # fmt: skip
    # the anthropic SDK's spans: stored alone, merged under another instrumentation; none under
    # Logfire, which suppresses other instrumentation inside its spans (suppress_other_instrumentation)
    sdk = "com.anthropic.sdk.python"
    anthropic_runs = [
        n for n, (kind, target) in INSTRUMENTATIONS.items() if kind == "anthropic" and target != "logfire"
    ]
    assert count(sdk, "received") == (len(anthropic_runs) + len(SEPARATE) + len(BARE)) * N_CALLS
    # Logfire's span around a streamed request is no call of its own: the log after it is (two each)
    for scope in ("logfire.openai", "logfire.anthropic"):
        assert (
            m[("obs_otlp_ignored_spans_total", frozenset({("scope", scope), ("reason", "not_a_call")}))] == 2
        )
    stored = sum(v for (n, labels), v in m.items() if n == "obs_otlp_scope_spans_total"
                 and ("outcome", "stored") in labels)  # fmt: skip
    assert stored == len(stored_calls(store)) == n_calls * N_CALLS


def test_the_langfuse_sdk_exports_to_the_worker_by_changing_its_url(tmp_path: Path) -> None:
    """A team on Langfuse points the SDK's own exporter at the worker (base URL, export path; the
    secret key is the worker's ingest token, sent as basic auth) and names the bot with
    OTEL_SERVICE_NAME: its calls are stored right."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    settings = Settings().replace(database_url=store.url, redis_url=None, spool_dir=tmp_path / "spool",
                                  worker_lock_file=tmp_path / "lock", auth_mode="none",
                                  otlp_ingest_token="lf-secret-token")  # fmt: skip
    worker = serve(store, settings, port=0)
    try:
        with FakeLLMServer() as llm:
            env = subprocess_env(PYTHONPATH=f"{TESTS}:{TESTS.parent}", OTEL_SDK_DISABLED="false",
                                 LANGFUSE_BASE_URL=worker.url,  # its default path: one URL to change
                                 LANGFUSE_PUBLIC_KEY="pk-lf-bot", LANGFUSE_SECRET_KEY="lf-secret-token",
                                 LANGFUSE_TRACING_ENVIRONMENT="test", OTEL_SERVICE_NAME="lf_bot")  # fmt: skip
            out = subprocess.run([sys.executable, "-m", "support.langfuse_client", "langfuse", llm.url], env=env,
                                 cwd=TESTS, capture_output=True, timeout=120)  # fmt: skip
            assert out.returncode == 0, out.stderr.decode()[-3000:]
        rows = sorted(stored_calls(store), key=lambda r: r["ts"])
    finally:
        worker.stop()
        store.dispose()
    assert [(r["conversation_id"], r["bot"]) for r in rows] == [("conv-langfuse", "lf_bot")] * 4
    u = USAGE["openai"]
    for r, what in zip(rows[:2], ("plain", "cached"), strict=True):
        got = (r["model"], r["provider"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"])
        assert got == (OPENAI_MODEL, "openai", u[what]["input"], u[what]["output"], u[what]["read"]), r
        expected = cost_of(
            "openai", OPENAI_MODEL, u[what]["input"], u[what]["output"], u[what]["read"], 0
        ).usd
        assert r["cost_usd"] == pytest.approx(expected, rel=0.02) and r["success"]
    assert (rows[2]["success"], rows[2]["error_type"], rows[2]["model"]) == (
        False,
        "server_error",
        "gpt-4o-mini",
    )
    streamed = rows[3]  # no stream_options: no usage sent, so no cost known
    assert (streamed["success"], streamed["input_tokens"], streamed["output_tokens"]) == (True, 0, 0), (
        streamed
    )
    assert not streamed["price_known"] and streamed["latency_ms"] >= STREAM_WAIT_S * 1000, streamed
