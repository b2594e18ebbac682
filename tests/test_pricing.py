"""Pricing: the cost of a call through genai-prices, cache tokens counted once, unknown models
flagged, the caller's cost first, and cost fixed at ingest."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa
from genai_prices import Usage, calc_price

from observability.analytics.llm_observability import LLMObservabilityService
from observability.events import usage_tokens
from observability.store import Store, pricing, rollups, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch

CLAUDE_MODELS = ["claude-sonnet-4-5", "claude-opus-4-6", "claude-haiku-4-5", "claude-3-5-haiku", "claude-opus-4-1",
                 "claude-sonnet-4"]  # fmt: skip
NOW = datetime(2026, 3, 10, 12, 0, 0)


@pytest.fixture(autouse=True)
def _fresh_prices():
    pricing.clear_cache()
    yield
    pricing.clear_cache()


def reference(model: str, inp: int, out: int, read: int = 0, write: int = 0) -> float:
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=read, cache_write_tokens=write)
    return float(calc_price(usage, model_ref=model, provider_id="anthropic").total_price)


def llm_event(model: str, provider: str, inp: int, out: int, *, read: int = 0, write: int = 0, cost: float | None = None,
              hit: bool = False, ts: datetime = NOW - timedelta(minutes=5)) -> list:  # fmt: skip
    return ["llm", uuid.uuid4().hex, to_epoch(ts), "lead_bot", "qualifier", "qualify", model, provider, inp, out,
            read, write, 500.0, hit, cost, "conv-1", True, None]  # fmt: skip


@pytest.mark.parametrize("model", CLAUDE_MODELS)
def test_claude_cost_matches_genai_prices_without_cache_tokens(model: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        inp, out = int(rng.integers(0, 150_000)), int(rng.integers(0, 8_000))
        cost = pricing.cost_of("anthropic", model, inp, out)
        assert cost.known
        assert cost.usd == pytest.approx(reference(model, inp, out), rel=1e-12, abs=1e-15)
        assert cost.saved_usd == 0.0


@pytest.mark.parametrize("model", CLAUDE_MODELS)
def test_claude_cost_matches_genai_prices_with_cache_tokens(model: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        inp = int(rng.integers(1, 150_000))
        read = int(rng.integers(0, inp + 1))
        write = int(rng.integers(0, inp - read + 1))
        out = int(rng.integers(0, 8_000))
        cost = pricing.cost_of("anthropic", model, inp, out, read, write)
        assert cost.usd == pytest.approx(reference(model, inp, out, read, write), rel=1e-12, abs=1e-15)


def test_cache_tokens_are_counted_once_by_hand() -> None:
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output per MTok.
    # 10,000 input tokens of which 6,000 are cache reads and 1,000 cache writes: 3,000 uncached.
    cost = pricing.cost_of("anthropic", "claude-sonnet-4-5", 10_000, 500, 6_000, 1_000)
    expected = (3_000 * 3 + 6_000 * 0.30 + 1_000 * 3.75 + 500 * 15) / 1e6
    assert cost.usd == pytest.approx(expected, rel=1e-12)  # 0.02205
    assert cost.usd == pytest.approx(reference("claude-sonnet-4-5", 10_000, 500, 6_000, 1_000), rel=1e-12)
    double_counted = (10_000 * 3 + 6_000 * 0.30 + 1_000 * 3.75 + 500 * 15) / 1e6
    assert cost.usd < double_counted
    # the reads saved $2.70 per MTok against plain input; writes are a premium, not a saving
    assert cost.saved_usd == pytest.approx(6_000 * (3 - 0.30) / 1e6, rel=1e-12)


def test_long_context_tier_is_priced_by_genai_prices() -> None:
    # above 200k input tokens sonnet 4.5 costs $6 / $22.50 per MTok: the fast path must not apply
    cost = pricing.cost_of("anthropic", "claude-sonnet-4-5", 250_000, 1_000, 50_000, 10_000)
    assert cost.usd == pytest.approx(
        reference("claude-sonnet-4-5", 250_000, 1_000, 50_000, 10_000), rel=1e-12
    )
    assert (
        cost.usd > pricing.cost_of("anthropic", "claude-sonnet-4-5", 199_000, 1_000, 50_000, 10_000).usd * 1.2
    )
    assert cost.saved_usd > 0


def test_provider_names_are_normalised() -> None:
    base = pricing.cost_of("anthropic", "claude-haiku-4-5", 1000, 100)
    for provider in ("Anthropic", "claude", None, "some-gateway"):
        assert pricing.cost_of(provider, "claude-haiku-4-5", 1000, 100).usd == pytest.approx(base.usd)


def test_unknown_model_costs_zero_and_is_flagged() -> None:
    cost = pricing.cost_of("acme", "acme-llm-9000", 5_000, 500, 100, 0)
    assert cost == pricing.Cost(0.0, 0.0, False)
    assert not pricing.is_known("acme", "acme-llm-9000")
    assert pricing.price_per_mtok("acme", "acme-llm-9000") is None
    assert pricing.is_known("anthropic", "claude-sonnet-4-5")


def test_response_cache_hit_costs_nothing_and_saves_the_full_price() -> None:
    full = pricing.cost_of("anthropic", "claude-sonnet-4-5", 2_000, 300, 500, 0)
    hit = pricing.cost_of("anthropic", "claude-sonnet-4-5", 2_000, 300, 500, 0, response_cache_hit=True)
    assert hit.usd == 0.0 and hit.known
    assert hit.saved_usd == pytest.approx(full.usd)


def test_override_file_prices_private_models_and_wins(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({
        "_comment": "ignored",
        "internal/re-assistant": {"input_mtok": 1.0, "output_mtok": 4.0, "cache_read_mtok": 0.1},
        "claude-haiku-4-5": {"input_mtok": 0.5, "output_mtok": 2.5},
        "broken": "not an object",
    }))  # fmt: skip
    pricing.load_overrides(path)
    cost = pricing.cost_of("internal", "re-assistant", 10_000, 1_000, 4_000, 0)
    assert cost.known
    assert cost.usd == pytest.approx((6_000 * 1.0 + 4_000 * 0.1 + 1_000 * 4.0) / 1e6)
    assert pricing.cost_of("anthropic", "claude-haiku-4-5", 1_000_000, 0).usd == pytest.approx(0.5)
    assert pricing.price_per_mtok("internal", "re-assistant")["source"] == "override"
    pricing.load_overrides(tmp_path / "missing.json")  # no file: genai-prices again
    assert pricing.cost_of("anthropic", "claude-haiku-4-5", 1_000_000, 0).usd == pytest.approx(1.0)
    assert not pricing.is_known("internal", "re-assistant")


def test_shipped_override_file_is_valid() -> None:
    pricing.load_overrides(pricing.OVERRIDES_FILE)
    assert pricing.is_known("internal", "re-assistant-ft-1")


def test_anthropic_usage_is_added_up_to_the_genai_convention() -> None:
    usage = {"input_tokens": 1_200, "output_tokens": 300, "cache_read_input_tokens": 8_000,
             "cache_creation_input_tokens": 500}  # fmt: skip
    as_object = SimpleNamespace(**usage)
    assert usage_tokens(usage) == usage_tokens(as_object) == (9_700, 300, 8_000, 500)
    inp, out, read, write = usage_tokens(usage)
    cost = pricing.cost_of("anthropic", "claude-sonnet-4-5", inp, out, read, write)
    # Anthropic's own arithmetic: uncached input, reads, writes and output each once
    by_hand = Decimal(1_200 * 3 + 8_000 * 0.3 + 500 * 3.75 + 300 * 15) / Decimal(1e6)
    assert cost.usd == pytest.approx(float(by_hand), rel=1e-12)


def test_ingest_fixes_cost_caller_cost_wins_and_unknown_models_are_listed(
    store: Store, tmp_path: Path
) -> None:
    events = [
        llm_event("claude-sonnet-4-5", "anthropic", 10_000, 500, read=6_000, write=1_000),
        llm_event("claude-sonnet-4-5", "anthropic", 10_000, 500, cost=0.5),
        llm_event("mystery-model", "acme", 4_000, 400),
        llm_event("mystery-model", "acme", 1_000, 100, cost=0.25),
    ]
    result = write_batch(store, events)
    assert result.rejected == 0
    t = schema.llm_calls
    with store.connect() as conn:
        rows = {r.trace_id: r for r in conn.execute(sa.select(t))}
    priced, caller, unknown, unknown_paid = (rows[e[1]] for e in events)
    assert priced.cost_usd == pytest.approx(0.02205) and priced.price_known
    assert priced.cost_saved_usd == pytest.approx(0.0162)
    assert caller.cost_usd == pytest.approx(0.5)
    assert unknown.cost_usd == 0.0 and not unknown.price_known
    assert unknown_paid.cost_usd == pytest.approx(0.25) and not unknown_paid.price_known

    # a later price for the unknown model does not rewrite history
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"acme/mystery-model": {"input_mtok": 100.0, "output_mtok": 100.0}}))
    pricing.load_overrides(path)
    later = llm_event("mystery-model", "acme", 1_000, 0, ts=NOW - timedelta(minutes=1))
    write_batch(store, [later])
    rollups.run(store)
    with store.connect() as conn:
        assert conn.execute(sa.select(t.c.cost_usd).where(t.c.trace_id == events[2][1])).scalar() == 0.0
        assert conn.execute(
            sa.select(t.c.cost_usd).where(t.c.trace_id == later[1])
        ).scalar() == pytest.approx(0.1)
    svc = LLMObservabilityService(store)
    costs = svc.cost_by_model(now=NOW)
    assert costs["claude-sonnet-4-5"] == pytest.approx(0.52205)
    assert costs["mystery-model"] == pytest.approx(0.35)
    listed = svc.unknown_model_calls(now=NOW)
    assert [(r["model"], r["provider"], r["calls"]) for r in listed] == [("mystery-model", "acme", 2)]
    assert listed[0]["caller_cost_usd"] == pytest.approx(0.25)
    assert listed[0]["input_tokens"] == 5_000
    assert svc.dashboard(3600, now=NOW).unknown_model_calls == 2
    assert not math.isnan(svc.dashboard(3600, now=NOW).total_cost_usd)
