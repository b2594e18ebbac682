"""The project's own OpenTelemetry spans and counters, and their absence without OpenTelemetry.

With the SDK: SDK flushes, worker steps and anything decorated with `trace_operation` produce spans
with obs.service / obs.operation / obs.success / obs.duration_ms; interactions and handoffs are
counted. Without the `opentelemetry` packages every part of it is a transparent no-op.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from support import TcpProxy, subprocess_env, wait_for

from observability import telemetry
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store
from observability.worker.runner import Worker
from observability.worker.steps import Step


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self, name: str | None = None) -> list:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def counter(self, name: str) -> dict[tuple, float]:
        """Counter points by sorted attribute items."""
        out: dict[tuple, float] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        for p in m.data.data_points:
                            out[tuple(sorted(p.attributes.items()))] = p.value
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    telemetry.reset(Settings())
    telemetry.use_providers(o.tracer_provider, o.meter_provider)
    yield o
    telemetry.reset()
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


def test_the_decorator_traces_sync_and_async_functions(otel: Otel) -> None:
    @telemetry.trace_operation("observability.alerting", "check_alerts")
    def check(n: int) -> int:
        return n * 2

    @telemetry.trace_operation("observability.metrics", "record_interaction")
    async def record(n: int) -> int:
        await asyncio.sleep(0.01)
        return n + 1

    assert check(21) == 42
    assert asyncio.run(record(1)) == 2
    [sync_span] = otel.finished("observability.alerting.check_alerts")
    [async_span] = otel.finished("observability.metrics.record_interaction")
    assert sync_span.attributes["obs.service"] == "observability.alerting"
    assert sync_span.attributes["obs.operation"] == "check_alerts"
    assert sync_span.attributes["obs.success"] is True
    assert async_span.attributes["obs.duration_ms"] >= 10.0
    assert check.__name__ == "check" and asyncio.iscoroutinefunction(record)


def test_a_failure_is_recorded_and_still_raised(otel: Otel) -> None:
    @telemetry.trace_operation("observability.alerting", "check_alerts")
    def broken() -> None:
        raise ValueError("rule table unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        broken()
    [span] = otel.finished()
    assert span.attributes["obs.success"] is False
    assert span.attributes["error.type"] == "ValueError"
    assert span.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)


def test_the_context_manager_takes_attributes_and_a_soft_failure(otel: Otel) -> None:
    with telemetry.optional_span("observability.alerting", "check_alerts", rules=7) as span:
        span.set_attribute("alert_count", 3)
    with telemetry.optional_span("observability.sdk", "flush") as span:
        span.mark_failed("spooled")
    ok, failed = otel.finished()
    assert ok.attributes["alert_count"] == 3 and ok.attributes["rules"] == 7
    assert ok.attributes["obs.success"] is True
    assert failed.attributes["obs.success"] is False and failed.attributes["error.type"] == "spooled"


def test_counters(otel: Otel) -> None:
    telemetry.increment_counter("obs.interaction.total", bot_type="lead")
    telemetry.increment_counter("obs.interaction.total", bot_type="lead")
    telemetry.increment_counter("obs.alert.triggered", rule="high_error_rate", severity="critical", note=None)
    assert otel.counter("obs.interaction.total") == {(("bot_type", "lead"),): 2}
    assert otel.counter("obs.alert.triggered") == {(("rule", "high_error_rate"), ("severity", "critical")): 1}


def test_sdk_flushes_are_traced_and_count_interactions_and_handoffs(
    otel: Otel, sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    client = ObservabilityClient(settings=make_settings(sqlite_store.url))
    try:
        for _ in range(3):
            client.record_bot_interaction("lead", 800.0)
        client.record_bot_interaction("buyer", 500.0)
        client.record_handoff("lead", "buyer", duration_ms=30.0)
        client.track_operation("lead", "qualify", 12.0)
        assert client.flush(10.0)
    finally:
        client.close()
    flushes = otel.finished("observability.sdk.flush")
    assert flushes and all(s.attributes["obs.success"] for s in flushes)
    assert sum(s.attributes["obs.batch_size"] for s in flushes) == 6
    assert otel.counter("obs.interaction.total") == {(("bot", "buyer"),): 1, (("bot", "lead"),): 3}
    assert otel.counter("obs.handoff.total") == {
        (("source", "lead"), ("success", True), ("target", "buyer")): 1
    }


def test_batches_spooled_while_redis_is_down_are_traced_and_counted_once_when_replayed(
    otel: Otel, redis_url: str, sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    """A batch that waited in the spool is traced and counted when it reaches the stream, not
    before (it was not delivered) and not twice."""
    proxy = TcpProxy.for_url(redis_url)  # not started: Redis is "down" for the client
    client = ObservabilityClient(settings=make_settings(sqlite_store.url, proxy.url))
    try:
        for _ in range(2):
            client.record_bot_interaction("lead", 800.0)
        client.record_handoff("lead", "buyer", duration_ms=30.0)
        wait_for(lambda: client.stats()["spilled"] == 3, timeout=10)
        assert not [s for s in otel.finished("observability.sdk.flush") if s.attributes["obs.success"]]
        assert otel.counter("obs.interaction.total") == {}
        proxy.start()
        assert client.flush(10.0)
    finally:
        client.close()
        proxy.stop()
    assert client.stats()["replayed"] == 3
    replays = [s for s in otel.finished("observability.sdk.flush") if s.attributes.get("obs.replayed")]
    assert replays and all(s.attributes["obs.success"] for s in replays)
    assert sum(s.attributes["obs.batch_size"] for s in replays) == 3
    assert otel.counter("obs.interaction.total") == {(("bot", "lead"),): 2}
    assert otel.counter("obs.handoff.total") == {
        (("source", "lead"), ("success", True), ("target", "buyer")): 1
    }


def test_every_worker_step_is_a_span(
    otel: Otel, sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    def fine(ctx: object) -> None:
        pass

    def broken(ctx: object) -> None:
        raise RuntimeError("boom")

    worker = Worker(
        sqlite_store, make_settings(sqlite_store.url), steps=[Step("fine", fine), Step("broken", broken)]
    )
    try:
        outcomes = worker.tick()
    finally:
        worker.close()
    assert outcomes["fine"] == "ok" and outcomes["broken"].startswith("error")
    [fine_span] = otel.finished("observability.worker.fine")
    [broken_span] = otel.finished("observability.worker.broken")
    assert fine_span.attributes["obs.success"] is True
    assert (
        broken_span.attributes["obs.success"] is False
        and broken_span.attributes["error.type"] == "RuntimeError"
    )


def test_disabled_by_setting() -> None:
    telemetry.reset(Settings().replace(otel_enabled=False))
    try:
        assert not telemetry.enabled()
        with telemetry.optional_span("a", "b") as span:
            assert span is telemetry.NOOP_SPAN
    finally:
        telemetry.reset()


def test_without_opentelemetry_everything_is_a_transparent_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    telemetry.reset()
    try:
        assert not telemetry.enabled()

        @telemetry.trace_operation("svc", "op")
        def f(x: int) -> int:
            return x + 1

        @telemetry.trace_operation("svc", "op")
        async def g(x: int) -> int:
            return x + 2

        assert f(1) == 2 and asyncio.run(g(1)) == 3
        with telemetry.optional_span("svc", "op") as span:
            span.set_attribute("k", "v")
            span.mark_failed("x")
        with pytest.raises(KeyError):
            with telemetry.optional_span("svc", "op"):
                raise KeyError("passes through")
        telemetry.increment_counter("obs.handoff.total", source="lead")
        telemetry.count_events([["interaction", "id", 0.0, "lead", 1.0, True, False, None]])
        assert telemetry.configure(Settings().replace(otel_exporter_endpoint="http://127.0.0.1:9")) is None
    finally:
        monkeypatch.undo()
        telemetry.reset()


def test_a_bot_without_opentelemetry_installed_records_and_flushes(tmp_path: Path) -> None:
    """A fresh interpreter where `import opentelemetry` fails: the SDK and the worker still work."""
    code = textwrap.dedent(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("opentelemetry is not installed here")
                return None

        sys.meta_path.insert(0, Block())
        from observability import telemetry
        from observability.sdk import ObservabilityClient
        from observability.settings import Settings
        from observability.store import Store
        from observability.worker.runner import Worker

        s = Settings().replace(database_url="sqlite:///{tmp_path / "s.db"}", spool_dir="{tmp_path / "spool"}",
                               worker_lock_file="{tmp_path / "lock"}", sdk_flush_interval_s=0.05)
        Store.from_url(s.database_url).migrate()  # the bootstrap's job: a bot never migrates
        c = ObservabilityClient(settings=s)
        c.record_bot_interaction("lead", 10.0)
        c.record_handoff("lead", "buyer")
        assert c.flush(10.0), c.stats()
        c.close()
        w = Worker(settings=s, steps=[])
        w.tick()
        w.close()
        assert not telemetry.enabled()
        assert not any(m.startswith("opentelemetry") for m in sys.modules), "imported anyway"
        print("ok", c.stats()["written"])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok 2"
