"""`record_llm_call(usage=response.usage)` with the real `openai` and `anthropic` clients' usage.

The clients call the fake API on 127.0.0.1 (`support.fake_llm`); what they return is handed to the
SDK as a bot would: the usage object itself, or its `model_dump()`. OpenAI's usage (Chat Completions'
`prompt_tokens`, Responses' `input_tokens`, cached tokens included in both) and Anthropic's (cached
parts reported apart) are stored with the same tokens and cost. A usage the SDK cannot read is
rejected like any bad argument (the SDK never raises into the bot): logged naming the field,
counted as rejected, nothing recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import anthropic
import openai
import pytest
from openai.types.responses import ResponseUsage
from support import Pipeline
from support.fake_llm import ANTHROPIC_MODEL, OPENAI_MODEL, USAGE, FakeLLMServer

from observability.store import schema
from observability.store.pricing import cost_of


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline("sqlite", worker_steps=[])


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def stored(p: Pipeline) -> dict[str, tuple]:
    p.deliver()
    cols = ("trace_id", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
            "price_known")  # fmt: skip
    return {r[0]: r[1:] for r in p.rows(schema.llm_calls, *cols)}


def test_openai_and_anthropic_usage_objects_and_dicts_are_stored_with_their_tokens_and_cost(
    pipeline: Pipeline, llm: FakeLLMServer
) -> None:
    oc = openai.OpenAI(base_url=f"{llm.url}/v1", api_key="test", max_retries=0, timeout=10)
    ac = anthropic.Anthropic(base_url=llm.url, api_key="test", max_retries=0, timeout=10)
    chat = oc.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "cached"}])
    msg = ac.messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "cached"}]
    )
    responses = ResponseUsage(input_tokens=2000, output_tokens=50, total_tokens=2050,
                              input_tokens_details={"cached_tokens": 1536, "cache_write_tokens": 0},
                              output_tokens_details={"reasoning_tokens": 0})  # fmt: skip
    c = pipeline.client
    for tid, model, provider, usage in (
        ("oa-object", chat.model, "openai", chat.usage),
        ("oa-dict", chat.model, "openai", chat.usage.model_dump()),
        ("oa-responses", OPENAI_MODEL, "openai", responses),
        ("oa-responses-dict", OPENAI_MODEL, "openai", responses.model_dump()),
        ("an-object", msg.model, "anthropic", msg.usage),
        ("an-dict", msg.model, "anthropic", msg.usage.model_dump()),
    ):
        c.record_llm_call(model, provider, latency_ms=250.0, usage=usage, trace_id=tid)
    rows = stored(pipeline)
    assert c.stats()["rejected"] == 0
    for tid, model, provider in (("oa-object", OPENAI_MODEL, "openai"), ("oa-dict", OPENAI_MODEL, "openai"),
                                 ("oa-responses", OPENAI_MODEL, "openai"),
                                 ("oa-responses-dict", OPENAI_MODEL, "openai"),
                                 ("an-object", ANTHROPIC_MODEL, "anthropic"),
                                 ("an-dict", ANTHROPIC_MODEL, "anthropic")):  # fmt: skip
        u = USAGE[provider]["cached"]
        cost = cost_of(provider, model, u["input"], u["output"], u["read"], u["write"]).usd
        assert rows[tid][:4] == (u["input"], u["output"], u["read"], u["write"]), tid
        assert rows[tid][4] == pytest.approx(cost) and cost > 0 and rows[tid][5], tid


@pytest.mark.parametrize(
    ("usage", "said"),
    [
        ({"tokens": 120}, "prompt_tokens"),  # a dict of no known shape: not read as zero tokens
        (42, "int"),
        ({"prompt_tokens": "many", "completion_tokens": 3}, "usage.prompt_tokens"),
        ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": -1}}, "cached_tokens"),
        ({"input_tokens": 10, "output_tokens": 2.5}, "usage.output_tokens"),
    ],
)
def test_a_usage_the_sdk_cannot_read_is_rejected_logged_and_changes_nothing(
    pipeline: Pipeline, usage: object, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = pipeline.client
    before = c.stats()
    with caplog.at_level(logging.WARNING):
        c.record_llm_call("gpt-4o-mini", "openai", latency_ms=10.0, usage=usage, trace_id="bad")
    assert any("record_llm_call" in r.getMessage() and said in r.getMessage() for r in caplog.records)
    after = c.stats()
    assert after["rejected"] == before["rejected"] + 1 and after["queued"] == before["queued"]
    assert "bad" not in stored(pipeline)
