"""The Langfuse Python SDK (built on OpenTelemetry) sending to the worker instead of Langfuse.

Run as `python -m support.langfuse_client TAG LLM_URL` in a process of its own (the SDK keeps one
client per process), with LANGFUSE_BASE_URL set to the worker, LANGFUSE_OTEL_TRACES_EXPORT_PATH to
`v1/traces` and LANGFUSE_SECRET_KEY to the worker's OTLP_INGEST_TOKEN: the SDK's own exporter, as
a team using Langfuse has it. Langfuse's OpenAI drop-in makes the calls of `fake_llm` (plain, cached,
an HTTP 500, a stream without `stream_options`) inside the bot's observation, whose session names the conversation `conv-<TAG>`.
"""

from __future__ import annotations

import sys


def run(tag: str, llm_url: str) -> None:
    from langfuse import get_client, propagate_attributes
    from langfuse.openai import OpenAI

    langfuse = get_client()
    oc = OpenAI(base_url=f"{llm_url}/v1", api_key="test", max_retries=0, timeout=10)
    with langfuse.start_as_current_observation(as_type="span", name="handle_message"):
        with propagate_attributes(session_id=f"conv-{tag}"):
            for what in ("plain", "cached", "fail500", "stream_nousage"):
                try:
                    messages = [{"role": "user", "content": what}]
                    if what.startswith("stream"):  # with no stream_options: no usage is sent
                        for _ in oc.chat.completions.create(
                            model="gpt-4o-mini", messages=messages, stream=True
                        ):
                            pass
                    else:
                        oc.chat.completions.create(model="gpt-4o-mini", messages=messages)
                except Exception as exc:  # noqa: BLE001
                    assert what.startswith("fail"), exc
    langfuse.flush()
    langfuse.shutdown()


if __name__ == "__main__":
    run(*sys.argv[1:3])
