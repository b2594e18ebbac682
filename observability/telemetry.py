"""Optional OpenTelemetry instrumentation of the project itself.

Spans around SDK flushes, worker steps and alert evaluation, each with the attributes
`obs.service`, `obs.operation`, `obs.success` and `obs.duration_ms` (a failed block also gets
`error.type` and an ERROR status), and three counters: `obs.interaction.total`,
`obs.handoff.total`, `obs.alert.triggered`.

```python
@trace_operation("observability.alerting", "check_and_send_alerts")   # sync or async
def check_and_send_alerts(self, stats): ...

with optional_span("observability.worker", "rollups") as span:
    span.set_attribute("obs.minutes", 12)

increment_counter("obs.alert.triggered", rule="high_error_rate", severity="critical")
```

Spans and counters go to whatever tracer and meter providers the host process configured (the
global ones of the OpenTelemetry API; the worker sets them up itself when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set, see `configure`). Without the `opentelemetry` packages, or
with `OTEL_ENABLED=false`, everything here is a transparent no-op: the decorator calls the function,
the context manager yields an object whose methods do nothing, counters are not counted.
Instrumentation never raises into the instrumented code.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from observability.settings import Settings, get_settings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

INSTRUMENTATION_NAME = "observability"
ATTR_SERVICE = "obs.service"
ATTR_OPERATION = "obs.operation"
ATTR_SUCCESS = "obs.success"
ATTR_DURATION_MS = "obs.duration_ms"

COUNTERS: dict[str, str] = {
    "obs.interaction.total": "Bot interactions processed",
    "obs.handoff.total": "Handoffs between bots",
    "obs.alert.triggered": "Alerts triggered",
}


class NoopSpan:
    """What `optional_span` yields when telemetry is off: every method does nothing."""

    is_recording = False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        pass

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        pass

    def mark_failed(self, error_type: str | None = None) -> None:
        pass


NOOP_SPAN = NoopSpan()


class SpanHandle:
    """A live span: set attributes, or mark the block failed without raising."""

    __slots__ = ("span", "error_type")
    is_recording = True

    def __init__(self, span: Any) -> None:
        self.span = span
        self.error_type: str | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        try:
            self.span.set_attribute(key, value)
        except Exception:  # noqa: BLE001 - telemetry never breaks the caller
            pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        try:
            self.span.add_event(name, attributes or {})
        except Exception:  # noqa: BLE001
            pass

    def mark_failed(self, error_type: str | None = None) -> None:
        """The block failed although nothing was raised (e.g. a batch had to be spooled)."""
        self.error_type = error_type or "error"


class _Otel:
    """The OpenTelemetry API, imported once; tracer, meter and counters cached."""

    def __init__(self, trace: Any, metrics: Any, status_cls: Any, status_code: Any) -> None:
        self.trace = trace
        self.metrics = metrics
        self.Status = status_cls
        self.StatusCode = status_code
        self.tracer_provider: Any = None  # None: the global provider
        self.meter_provider: Any = None
        self._tracer: Any = None
        self._meter: Any = None
        self.counters: dict[str, Any] = {}
        self.lock = threading.Lock()

    @property
    def tracer(self) -> Any:
        if self._tracer is None:
            self._tracer = self.trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=self.tracer_provider)
        return self._tracer

    def counter(self, name: str) -> Any:
        c = self.counters.get(name)
        if c is None:
            with self.lock:
                c = self.counters.get(name)
                if c is None:
                    if self._meter is None:
                        self._meter = self.metrics.get_meter(
                            INSTRUMENTATION_NAME, meter_provider=self.meter_provider
                        )
                    c = self._meter.create_counter(name, unit="1", description=COUNTERS.get(name, name))
                    self.counters[name] = c
        return c


_UNSET: Any = object()
_otel: Any = _UNSET
_probe_lock = threading.Lock()


def _probe(settings: Settings | None = None) -> _Otel | None:
    s = settings or get_settings()
    if not s.otel_enabled:
        return None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import Status, StatusCode
    except ImportError:
        return None
    return _Otel(trace, metrics, Status, StatusCode)


def _get() -> _Otel | None:
    global _otel
    o = _otel
    if o is _UNSET:
        with _probe_lock:
            if _otel is _UNSET:
                try:
                    _otel = _probe()
                except Exception as exc:  # noqa: BLE001
                    log.warning("OpenTelemetry unavailable: %s", exc)
                    _otel = None
            o = _otel
    return o


def enabled() -> bool:
    """True when spans and counters go to OpenTelemetry (the API is importable and not disabled)."""
    return _get() is not None


def reset(settings: Settings | None = None) -> None:
    """Probe for OpenTelemetry again (tests; after changing OTEL_ENABLED)."""
    global _otel
    with _probe_lock:
        _otel = _probe(settings) if settings is not None else _UNSET


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Send spans / counters to these providers instead of the global ones (tests, embedding)."""
    o = _get()
    if o is None:
        return
    with o.lock:
        o.tracer_provider = tracer_provider
        o.meter_provider = meter_provider
        o._tracer = None
        o._meter = None
        o.counters = {}


# ---- spans ------------------------------------------------------------------------------


@contextmanager
def optional_span(service: str, operation: str, **attributes: Any) -> Iterator[SpanHandle | NoopSpan]:
    """A span named `<service>.<operation>` around the block (a no-op without OpenTelemetry).

    The block's exception is recorded (obs.success false, error.type, ERROR status) and re-raised.
    """
    o = _get()
    if o is None:
        yield NOOP_SPAN
        return
    try:
        cm = o.tracer.start_as_current_span(
            f"{service}.{operation}", record_exception=False, set_status_on_exception=False
        )
        span = cm.__enter__()
        span.set_attribute(ATTR_SERVICE, service)
        span.set_attribute(ATTR_OPERATION, operation)
        for k, v in attributes.items():
            if v is not None:
                span.set_attribute(k, v)
    except Exception as exc:  # noqa: BLE001
        log.debug("cannot start span %s.%s: %s", service, operation, exc)
        yield NOOP_SPAN
        return
    handle = SpanHandle(span)
    start = time.perf_counter()
    exc_info: tuple = (None, None, None)
    try:
        yield handle
    except BaseException as exc:
        handle.error_type = type(exc).__name__
        exc_info = (type(exc), exc, exc.__traceback__)
        try:
            span.record_exception(exc)
        except Exception:  # noqa: BLE001
            pass
        raise
    finally:
        try:
            span.set_attribute(ATTR_DURATION_MS, (time.perf_counter() - start) * 1000.0)
            span.set_attribute(ATTR_SUCCESS, handle.error_type is None)
            if handle.error_type is not None:
                span.set_attribute("error.type", handle.error_type)
                span.set_status(o.Status(o.StatusCode.ERROR, handle.error_type))
            cm.__exit__(*exc_info)
        except Exception as exc:  # noqa: BLE001
            log.debug("cannot end span %s.%s: %s", service, operation, exc)


def trace_operation(service: str, operation: str) -> Callable[[F], F]:
    """Decorator: run the function (sync or async) inside `optional_span(service, operation)`."""

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                if _get() is None:
                    return await fn(*args, **kwargs)
                with optional_span(service, operation):
                    return await fn(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _get() is None:
                return fn(*args, **kwargs)
            with optional_span(service, operation):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# ---- counters -----------------------------------------------------------------------------


def increment_counter(name: str, value: int | float = 1, **attributes: Any) -> None:
    """Add `value` to the OpenTelemetry counter `name` with these attributes (None ones dropped)."""
    o = _get()
    if o is None:
        return
    try:
        o.counter(name).add(value, {k: v for k, v in attributes.items() if v is not None})
    except Exception as exc:  # noqa: BLE001
        log.debug("cannot increment %s: %s", name, exc)


def count_events(batch: list) -> None:
    """Count the interactions and handoffs of an SDK batch (called on the flush thread)."""
    if _get() is None:
        return
    try:
        interactions: Counter = Counter()
        handoffs: Counter = Counter()
        for e in batch:
            kind = e[0]
            if kind == "interaction":  # [kind, id, ts, bot, ...]
                interactions[e[3]] += 1
            elif kind == "handoff":  # [kind, id, ts, source, target, success, ...]
                handoffs[(e[3], e[4], bool(e[5]))] += 1
        for bot, n in interactions.items():
            increment_counter("obs.interaction.total", n, bot=bot)
        for (source, target, ok), n in handoffs.items():
            increment_counter("obs.handoff.total", n, source=source, target=target, success=ok)
    except Exception as exc:  # noqa: BLE001
        log.debug("cannot count batch: %s", exc)


# ---- exporting the project's own telemetry ----------------------------------------------


def configure(
    settings: Settings | None = None, service_name: str = "observability-worker"
) -> Callable[[], None] | None:
    """Export this process's spans and counters over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    Installs OpenTelemetry SDK tracer and meter providers as the global ones (once per process).
    Returns a shutdown callable, or None when nothing was configured (no endpoint, OpenTelemetry
    disabled, or the SDK or exporter not installed).
    """
    s = settings or get_settings()
    endpoint = s.otel_exporter_endpoint
    if not endpoint or not s.otel_enabled:
        return None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is missing: %s", exc)
        return None
    base = endpoint.rstrip("/")
    resource = Resource.create({"service.name": s.otel_service_name or service_name})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(mp)
    reset()
    log.info("exporting own telemetry to %s", base)

    def shutdown() -> None:
        for provider in (tp, mp):
            try:
                provider.shutdown()
            except Exception:  # noqa: BLE001
                pass

    return shutdown
