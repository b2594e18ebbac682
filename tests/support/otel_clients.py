"""One client under one OpenTelemetry instrumentation making the six calls of `fake_llm` (`calls_of`).

Run as `python -m support.otel_clients NAME LLM_URL WORKER_URL TAG batch|simple[-bare] [TAG MODE ...]` in a
process of its own: instrumentations patch the client libraries process-wide and do not all undo it
cleanly (one instrumentation's runs share a process: it is uninstrumented and instrumented again). Each
call is made inside the bot's span (the service, so the stored bot, is TAG) naming the conversation `conv-<TAG>-<call>` (with
`gen_ai.conversation.id`, or `session.id` as OpenInference users do); spans go to the worker by
OTLP/HTTP protobuf, in one batch or each span in an export request of its own. OpenLIT and Pydantic
Logfire set up tracing themselves, as their users do: `openlit.init(otlp_endpoint=...)`, and
`logfire.configure(send_to_logfire=False)` with `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (batched only).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

CALLS = ("plain", "cached", "stream", "fail500", "fail429")
# and one more streamed call per client: OpenAI's without `stream_options={"include_usage": True}`
# (no usage is sent), Anthropic's `messages.create(stream=True)` (`stream` uses `messages.stream()`)
EXTRA_CALL = {"openai": "stream_nousage", "anthropic": "stream_create"}
STREAMED = ("stream", *EXTRA_CALL.values())


def calls_of(client_kind: str) -> tuple[str, ...]:
    """The calls made with one client, in order."""
    return (*CALLS, EXTRA_CALL[client_kind])


# name -> (client, instrumentor "module:Class", or None for the anthropic SDK's own spans alone, or
# "openlit" / "logfire": that package's own set-up, see `_openlit` and `_logfire`)
INSTRUMENTATIONS = {
    "anthropic-sdk": ("anthropic", None),
    "openllmetry-openai": ("openai", "opentelemetry.instrumentation.openai:OpenAIInstrumentor"),
    "openllmetry-anthropic": ("anthropic", "opentelemetry.instrumentation.anthropic:AnthropicInstrumentor"),
    "openinference-openai": ("openai", "openinference.instrumentation.openai:OpenAIInstrumentor"),
    "openinference-anthropic": ("anthropic", "openinference.instrumentation.anthropic:AnthropicInstrumentor"),
    "openai-v2": ("openai", "opentelemetry.instrumentation.openai_v2:OpenAIInstrumentor"),
    "openlit-openai": ("openai", "openlit"),
    "openlit-anthropic": ("anthropic", "openlit"),
    "logfire-openai": ("openai", "logfire"),
    "logfire-anthropic": ("anthropic", "logfire"),
}


def _openlit(tag: str, worker_url: str, *, batch: bool) -> TracerProvider:
    """`openlit.init` pointed at the worker: its own tracer provider and OTLP/HTTP exporter; traces only
    (the worker takes no metrics or logs), and a local (empty) price list: it prices nothing we read."""
    import openlit

    prices = os.path.join(tempfile.mkdtemp(), "prices.json")
    with open(prices, "w") as f:
        json.dump({}, f)
    openlit.init(otlp_endpoint=worker_url, application_name=tag, disable_batch=not batch,
                 disable_metrics=True, disable_events=True, pricing_json=prices)  # fmt: skip
    return trace.get_tracer_provider()


def _logfire(tag: str, worker_url: str, *, batch: bool) -> TracerProvider:
    """Logfire sending to another OTLP backend, as its docs say: not to Logfire, the traces' endpoint
    from the environment (it then exports in batches)."""
    import logfire

    assert batch, "logfire exports to another backend in batches only"
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{worker_url}/v1/traces"
    logfire.configure(send_to_logfire=False, service_name=tag, console=False)
    return trace.get_tracer_provider()


SETUPS: dict[str, Callable[..., TracerProvider]] = {"openlit": _openlit, "logfire": _logfire}


def run_calls(name: str, tag: str, llm_url: str, worker_url: str, *, batch: bool, bare: bool = False) -> None:
    """The six calls of one client under one instrumentation (`calls_of`), exported to the worker; `bare`: with no
    span of the bot around them (so no conversation)."""
    client_kind, target = INSTRUMENTATIONS[name]
    instrumentor = None
    if target in SETUPS:
        provider = SETUPS[target](tag, worker_url, batch=batch)
    else:
        exporter = OTLPSpanExporter(endpoint=f"{worker_url}/v1/traces", timeout=10)
        provider = TracerProvider(resource=Resource.create({"service.name": tag}))
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    if target and target not in SETUPS:
        module, cls = target.split(":")
        instrumentor = getattr(importlib.import_module(module), cls)()
        instrumentor.instrument(tracer_provider=provider)
    conv_key = "session.id" if name.startswith("openinference") else "gen_ai.conversation.id"
    bot = provider.get_tracer("lead_bot")
    try:
        if client_kind == "openai":
            import openai

            oc = openai.OpenAI(base_url=f"{llm_url}/v1", api_key="test", max_retries=0, timeout=10)
            if target == "logfire":
                import logfire

                logfire.instrument_openai(oc)
        else:
            import anthropic

            ac = anthropic.Anthropic(base_url=llm_url, api_key="test", max_retries=0, timeout=10,
                                     open_telemetry={"tracer_provider": provider})  # fmt: skip
            if target == "logfire":
                import logfire

                logfire.instrument_anthropic(ac)
        for what in calls_of(client_kind):
            messages = [{"role": "user", "content": what}]
            around = contextlib.nullcontext() if bare else bot.start_as_current_span(
                "handle_message", attributes={conv_key: f"conv-{tag}-{what}"})  # fmt: skip
            with around:
                try:
                    if client_kind == "openai" and what == "stream":
                        for _ in oc.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                                            stream_options={"include_usage": True}):  # fmt: skip
                            pass
                    elif client_kind == "openai" and what == "stream_nousage":
                        for _ in oc.chat.completions.create(
                            model="gpt-4o-mini", messages=messages, stream=True
                        ):
                            pass
                    elif client_kind == "openai":
                        oc.chat.completions.create(model="gpt-4o-mini", messages=messages)
                    elif what == "stream":
                        with ac.messages.stream(
                            model="claude-sonnet-4-5", max_tokens=50, messages=messages
                        ) as s:
                            for _ in s:
                                pass
                    elif what == "stream_create":
                        for _ in ac.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages,
                                                    stream=True):  # fmt: skip
                            pass
                    else:
                        ac.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages)
                except Exception as exc:  # noqa: BLE001
                    assert what.startswith("fail"), exc
                else:
                    assert not what.startswith("fail")
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
        assert provider.force_flush(10_000)
        provider.shutdown()


if __name__ == "__main__":
    # NAME LLM_URL WORKER_URL TAG MODE [TAG MODE ...]: one instrumentation's runs, one after the other
    # in one process (its imports are most of a run's time), each with its own tracer provider
    name, llm_url, worker_url, *runs = sys.argv[1:]
    for tag, mode in zip(runs[::2], runs[1::2], strict=True):
        run_calls(name, tag, llm_url, worker_url, batch=mode.startswith("batch"), bare=mode.endswith("-bare"))
