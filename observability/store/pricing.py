"""Cost of an LLM call, fixed at ingest, from the maintained `genai-prices` data.

Conventions (the OpenTelemetry GenAI ones, which genai-prices shares): `input_tokens` counts every
input token, cached reads and writes included; `cache_read_tokens` / `cache_write_tokens` say how
many of them were cached. Uncached input is therefore `input - cache_read - cache_write`, and each
token is priced exactly once.

genai-prices computes in Decimal and takes ~100 µs a call, too slow for 50k events/s, so the
model's price is looked up once and applied as per-token floats while the call stays under the
model's first price tier; calls that cross a tier go through genai-prices itself.

Overrides for negotiated or private models live in `data/model_prices.json`:
`{"provider/model": {"input_mtok": 3.0, "output_mtok": 15.0, "cache_read_mtok": 0.3,
"cache_write_mtok": 3.75}}` (USD per million tokens). An unknown model costs 0 and is flagged
(`known=False`) so the cost page can list it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from genai_prices import Usage, calc_price

from observability.settings import DATA_DIR

log = logging.getLogger(__name__)

OVERRIDES_FILE = DATA_DIR / "model_prices.json"

PROVIDER_ALIASES = {
    "claude": "anthropic",
    "gemini": "google",
    "vertex": "google-vertex",
    "vertex_ai": "google-vertex",
    "google_genai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google-vertex",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
}


class Cost(NamedTuple):  # a NamedTuple: built once per LLM call at ingest, twice as fast as a dataclass
    usd: float
    # what caching saved: prompt-cache reads against the plain input price, or the whole call when
    # a response cache answered it (cache writes cost extra and are not counted as savings)
    saved_usd: float
    known: bool  # False: no price for this model; cost is 0 and the call is flagged


@dataclass(frozen=True)
class _Rates:
    input: float  # USD per token
    output: float
    cache_read: float
    cache_write: float
    tier_start: int | None  # input token count from which genai-prices must be asked
    model_price: Any  # genai_prices ModelPrice, or None for overrides


@lru_cache(maxsize=1024)  # ingest prices every LLM call: keep the per-call work to arithmetic
def _norm_provider(provider: str | None) -> str | None:
    if not provider:
        return None
    p = provider.strip().lower()
    return PROVIDER_ALIASES.get(p, p)


def _per_token(value: Any) -> tuple[float, int | None]:
    if value is None:
        return 0.0, None
    base = getattr(value, "base", value)
    tiers = getattr(value, "tiers", None) or []
    start = min((t.start for t in tiers), default=None)
    return float(Decimal(base) / Decimal(1_000_000)), start


_overrides_lock = threading.Lock()
_overrides: dict[str, dict[str, float]] | None = None


def load_overrides(path: Path | None = None) -> dict[str, dict[str, float]]:
    """The override table; `path` replaces it with another file (and forgets looked-up prices).

    A malformed file or entry is logged and ignored: pricing then falls back to genai-prices.
    """
    global _overrides
    with _overrides_lock:
        if _overrides is None or path is not None:
            p = path or OVERRIDES_FILE
            try:
                raw = json.loads(p.read_text()) if p.exists() else {}
                if not isinstance(raw, dict):
                    raise ValueError("the file must hold a JSON object")
            except (OSError, ValueError) as exc:
                log.error("cannot read model price overrides %s: %s", p, exc)
                raw = {}
            table: dict[str, dict[str, float]] = {}
            for key, value in raw.items():
                if key.startswith("_"):
                    continue
                try:
                    table[key.lower()] = {k: float(v) for k, v in value.items() if k.endswith("_mtok")}
                except (AttributeError, TypeError, ValueError):
                    log.error("ignoring malformed price override %r in %s", key, p)
            _overrides = table
            if path is not None:
                _rates.cache_clear()
        return _overrides


@lru_cache(maxsize=4096)
def _rates(provider: str | None, model: str) -> _Rates | None:
    overrides = load_overrides()
    for key in (f"{provider}/{model}".lower(), model.lower()):
        if key in overrides:
            o = overrides[key]
            m = 1 / 1_000_000
            return _Rates(
                input=float(o.get("input_mtok", 0)) * m,
                output=float(o.get("output_mtok", 0)) * m,
                cache_read=float(o.get("cache_read_mtok", o.get("input_mtok", 0))) * m,
                cache_write=float(o.get("cache_write_mtok", o.get("input_mtok", 0))) * m,
                tier_start=None,
                model_price=None,
            )
    try:
        calc = calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model, provider_id=provider)
    except LookupError:
        if provider is not None:
            try:  # the provider name may be unusual; let genai-prices match on the model alone
                calc = calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model)
            except LookupError:
                return None
        else:
            return None
    mp = calc.model_price
    inp, t1 = _per_token(mp.input_mtok)
    out, t2 = _per_token(mp.output_mtok)
    cr, t3 = _per_token(mp.cache_read_mtok if mp.cache_read_mtok is not None else mp.input_mtok)
    cw, t4 = _per_token(mp.cache_write_mtok if mp.cache_write_mtok is not None else mp.input_mtok)
    starts = [t for t in (t1, t2, t3, t4) if t is not None]
    return _Rates(inp, out, cr, cw, min(starts) if starts else None, mp)


def is_known(provider: str | None, model: str) -> bool:
    """Whether `model` has a price (an override or genai-prices' bundled data)."""
    return _rates(_norm_provider(provider), model) is not None


def price_per_mtok(provider: str | None, model: str) -> dict[str, float | str] | None:
    """USD per million tokens (base tier) and where the price comes from; None when unknown."""
    rates = _rates(_norm_provider(provider), model)
    if rates is None:
        return None
    m = 1_000_000
    return {
        "input_mtok": rates.input * m,
        "output_mtok": rates.output * m,
        "cache_read_mtok": rates.cache_read * m,
        "cache_write_mtok": rates.cache_write * m,
        "source": "override" if rates.model_price is None else "genai-prices",
        "tiered_from_input_tokens": rates.tier_start,
    }


def cost_of(
    provider: str | None,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    *,
    response_cache_hit: bool = False,
) -> Cost:
    """Price one call. `input_tokens` includes the cached ones (see module docstring).

    A response-cache hit (`response_cache_hit`, the SDK's `cache_hit`) means no model was billed:
    the call costs 0 and saves what it would have cost.
    """
    rates = _rates(_norm_provider(provider), model)
    if rates is None:
        return Cost(0.0, 0.0, False)
    cache_read = min(cache_read_tokens, input_tokens)
    cache_write = min(cache_write_tokens, input_tokens - cache_read)
    uncached = input_tokens - cache_read - cache_write
    if rates.tier_start is not None and input_tokens > rates.tier_start and rates.model_price:
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
        full = float(rates.model_price.calc_price(usage)["total_price"])
        reads_as_input = Usage(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_write_tokens=cache_write
        )
        without_reads = float(rates.model_price.calc_price(reads_as_input)["total_price"])
    else:
        full = (
            uncached * rates.input
            + cache_read * rates.cache_read
            + cache_write * rates.cache_write
            + output_tokens * rates.output
        )
        # the same call with its cache reads billed as plain input (writes stay as they were)
        without_reads = full + cache_read * (rates.input - rates.cache_read)
    if response_cache_hit:
        return Cost(0.0, full, True)
    return Cost(full, max(without_reads - full, 0.0), True)


_UNKNOWN = Cost(0.0, 0.0, False)


def pricer(provider: str | None, model: str) -> Callable[[int, int, int, int, bool], Cost]:
    """`cost_of` for one (provider, model), as a function of (input, output, cache read, cache
    write, response cache hit): ingest looks the price up once per model and batch, then each call
    is the same arithmetic as `cost_of` (tiers beyond the base price still go through it)."""
    rates = _rates(_norm_provider(provider), model)
    if rates is None:
        return lambda it, ot, cr, cw, hit: _UNKNOWN
    r_in, r_out, r_read, r_write = rates.input, rates.output, rates.cache_read, rates.cache_write
    tier = rates.tier_start if rates.model_price else None

    def price(it: int, ot: int, cr: int, cw: int, hit: bool) -> Cost:
        if tier is not None and it > tier:
            return cost_of(provider, model, it, ot, cr, cw, response_cache_hit=hit)
        read = cr if cr < it else it
        rest = it - read
        write = cw if cw < rest else rest
        full = (it - read - write) * r_in + read * r_read + write * r_write + ot * r_out
        if hit:
            return Cost(0.0, full, True)
        saved = full + read * (r_in - r_read) - full
        return Cost(full, 0.0 if 0.0 > saved else saved, True)  # max(saved, 0.0), as cost_of

    return price


def clear_cache() -> None:
    """Forget looked-up prices and overrides (tests that change the overrides file)."""
    global _overrides
    _rates.cache_clear()
    with _overrides_lock:
        _overrides = None
