"""LLM call tracing over `llm_calls`: cost, latency, tokens, cache savings, errors and budget.

`LLMObservabilityService(store)` answers the questions of source document 000 (LLM Call Tracing)
from the store, aggregated in SQL: cost by model, bot, agent, conversation and day; latency
reports; SLA and alert checks; a one-call dashboard; and the series and tables the token-analytics
and cost pages chart.

Cost is fixed at ingest (`observability.store.pricing`), so every figure here sums stored `cost_usd`:
a later price change never rewrites history. Sums and counts over any window are exact (rollups
hold exact sums); latency percentiles are exact for windows under 24 hours and come from merged
sketches (within 1%) for longer windows and for series, which the results say (`approximate`,
`source`). Every window is `[now - window_seconds, now)`; `window_seconds=None` means all history.
A window is seconds or any `observability.timeutil.Window` ("1h", "24h", "7d", a timedelta).
"""

from __future__ import annotations

import json
import math
from calendar import monthrange
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability import auth, timeutil
from observability.analytics.window import (
    Aggregate,
    Stats,
    aggregate,
    dirty_minutes,
    filter_clause,
    plan_ranges,
    reads_rollups,
)
from observability.settings import get_settings
from observability.store import Store, pricing, schema
from observability.store.rollups import LLM, UNPRICED_SUMS, unpriced_select
from observability.store.sqlhelpers import GRANULARITIES, as_datetime, count_false, in_ranges
from observability.timeutil import Window, floor_day, resolve_now, window_bounds

MAX_MONTHLY_BUDGET_USD = 1_000_000_000  # a month's budget above this is refused as a typo
BUDGET_KEY = "monthly_budget"  # control_state key the cost page writes ({"usd": x})
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
BREAKDOWN_KEYS = ("model", "provider", "bot", "agent")
Bots = str | Sequence[str] | None  # one bot, several, or every bot


def _bot_filters(bot: Bots) -> dict[str, Any] | None:
    if bot is None or (not isinstance(bot, str) and not bot):
        return None
    return {"bot": bot if isinstance(bot, str) else list(bot)}


@dataclass
class LatencyReport:
    """Latency of LLM calls in a window (milliseconds; zeros with count 0 when there is no data)."""

    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float
    count: int
    model: str | None = None
    bot: str | None = None
    window_seconds: float | None = 3600
    approximate: bool = False  # True: percentiles from rollup sketches (within 1%)
    source: str = "raw"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ObservabilityDashboard:
    """The one-call summary of source document 000 for a window, plus tokens and cache savings."""

    total_cost_usd: float
    avg_cost_per_request: float
    cache_hit_rate: float
    requests_per_minute: float
    total_requests: int
    error_rate: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    cost_saved_usd: float  # money saved by cache hits (response cache) and prompt-cache reads
    prompt_cache_read_ratio: float  # share of input tokens read from the prompt cache
    latency: LatencyReport
    unknown_model_calls: int
    window_seconds: float | None
    generated_at: datetime
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds(window: Window | None) -> float | None:
    """A window's length in seconds (None: all history)."""
    return None if window is None else timeutil.window_seconds(window)


def _latency_report(s: Stats, agg: Aggregate, model: str | None, bot: str | None,
                    window: Window | None) -> LatencyReport:  # fmt: skip
    def f(v: float | None) -> float:
        return float(v) if v is not None else 0.0

    return LatencyReport(
        p50=f(s.p50), p95=f(s.p95), p99=f(s.p99), mean=f(s.mean_ms), min=f(s.min_ms), max=f(s.max_ms),
        count=s.count, model=model, bot=bot, window_seconds=_seconds(window), approximate=agg.approximate,
        source=agg.source,
    )  # fmt: skip


def _tokens(s: Stats) -> dict[str, int]:
    out = {k: int(s.sums.get(k, 0) or 0) for k in TOKEN_KINDS}
    out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    return out


def _row(s: Stats) -> dict[str, Any]:
    """The figures every cost/token row carries."""
    cost = float(s.sums.get("cost_usd", 0.0) or 0.0)
    tokens = _tokens(s)
    return {
        "requests": s.count,
        "errors": s.errors,
        "error_rate": s.error_rate,
        "cache_hits": s.cache_hits,
        "cache_hit_rate": s.cache_hit_rate,
        **tokens,
        "cost_usd": cost,
        "cost_saved_usd": float(s.sums.get("cost_saved_usd", 0.0) or 0.0),
        "cost_per_request": cost / s.count if s.count else 0.0,
        "avg_latency_ms": s.mean_ms or 0.0,
    }


def _top_conversations_stmt(
    raw_ranges: Sequence[tuple[datetime, datetime]], hour_ranges: Sequence[tuple[datetime, datetime]],
    by: str, bots: list[str] | None, limit: int | None,
) -> sa.Select:  # fmt: skip
    """Per-conversation totals over raw calls in `raw_ranges` plus `rollup_conversation_hour` rows
    in `hour_ranges` (disjoint), ordered by tokens or cost."""
    t, r = schema.llm_calls, schema.rollup_conversation_hour
    raw_where = [t.c.conversation_id.is_not(None)]
    if bots is not None:
        raw_where.append(t.c.bot.in_(bots))
    sums = [*TOKEN_KINDS, "cost_usd", "cost_saved_usd"]
    if not hour_ranges:  # raw only: one grouping of the raw rows
        src = t
        calls, errors, first, last, bot_col = (
            sa.func.count(),
            count_false(t.c.success),
            t.c.ts,
            t.c.ts,
            t.c.bot,
        )
        where = [in_ranges(t.c.ts, raw_ranges), *raw_where]
    else:  # raw edges grouped per (conversation, bot), then added to the rollup's full hours
        parts = []
        if raw_ranges:
            parts.append(
                sa.select(
                    t.c.conversation_id, t.c.bot.label("bot"), sa.func.count().label("calls"),
                    count_false(t.c.success).label("errors"), *[sa.func.sum(t.c[k]).label(k) for k in sums],
                    sa.func.min(t.c.ts).label("first_ts"), sa.func.max(t.c.ts).label("last_ts"),
                )
                .where(in_ranges(t.c.ts, raw_ranges), *raw_where)
                .group_by(t.c.conversation_id, t.c.bot)
            )  # fmt: skip
        roll_where = [in_ranges(r.c.bucket, hour_ranges)]
        if bots is not None:
            roll_where.append(r.c.bot.in_(bots))
        parts.append(
            sa.select(
                r.c.conversation_id, sa.func.nullif(r.c.bot, "").label("bot"), r.c.calls, r.c.errors,
                *[r.c[k] for k in sums], r.c.first_ts, r.c.last_ts,
            ).where(*roll_where)
        )  # fmt: skip
        src = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("u")
        calls, errors = sa.func.sum(src.c.calls), sa.func.sum(src.c.errors)
        first, last, bot_col = src.c.first_ts, src.c.last_ts, src.c.bot
        where = []
    total_tokens = sa.func.sum(src.c.input_tokens + src.c.output_tokens)
    cost = sa.func.sum(src.c.cost_usd)
    stmt = (
        sa.select(
            src.c.conversation_id, calls, *[sa.func.sum(src.c[k]) for k in TOKEN_KINDS], total_tokens, cost,
            sa.func.sum(src.c.cost_saved_usd), sa.func.min(first), sa.func.max(last), sa.func.max(bot_col),
            errors,
        )
        .where(*where)
        .group_by(src.c.conversation_id)
        .order_by((total_tokens if by == "tokens" else cost).desc(), src.c.conversation_id)
    )  # fmt: skip
    return stmt if limit is None else stmt.limit(limit)


class LLMObservabilityService:
    """Query object over the store's LLM calls; cheap to construct. The only state is the
    process-wide cache of parsed rollup sketches (`window.SKETCH_CACHE`), which every read
    checks against the rollups, so any number of instances and processes agree."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- internal -----------------------------------------------------------------------------
    def _agg(self, window_seconds: Window | None, now: datetime | None, *, percentiles: bool,
             rollups: bool | None = None, **kwargs: Any) -> Aggregate:  # fmt: skip
        start, end = window_bounds(window_seconds, now)
        return aggregate(self.store, LLM, start, end, percentiles=percentiles, rollups=rollups, **kwargs)

    # ---- cost ---------------------------------------------------------------------------------
    def cost_breakdown(
        self, by: str | Sequence[str] = "model", window_seconds: Window | None = None, *,
        now: datetime | None = None, bot: Bots = None, percentiles: bool = False,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Spend per model / provider / bot / agent (or a tuple of them), most expensive first.

        Each row: the key column(s), requests, errors, error rate, cache hits and hit rate, input /
        output / cache-read / cache-write / total tokens, cost_usd, cost_saved_usd, cost per
        request, share of the window's cost and mean latency. Exact (rollup sums); a missing bot
        or agent is None. `bot` is one bot or a list. With `percentiles`, also latency p50 / p95 /
        p99 (exact under 24 hours, from sketches above; `approximate` says which).
        """
        keys = (by,) if isinstance(by, str) else tuple(by)
        bad = [k for k in keys if k not in BREAKDOWN_KEYS]
        if bad or not keys:
            raise ValueError(f"by must name columns among {BREAKDOWN_KEYS}, got {by!r}")
        agg = self._agg(window_seconds, now, percentiles=percentiles, rollups=None if percentiles else True,
                        group_by=keys, filters=_bot_filters(bot))  # fmt: skip
        total = sum(float(s.sums.get("cost_usd", 0) or 0) for s in agg.groups.values())
        rows = []
        for key, s in agg.groups.items():
            row = dict(zip(keys, key, strict=True))
            row.update(_row(s))
            row["share_of_cost"] = row["cost_usd"] / total if total else 0.0
            if percentiles:
                row.update({"p50": s.p50, "p95": s.p95, "p99": s.p99, "approximate": agg.approximate})
            rows.append(row)
        rows.sort(key=lambda r: (-r["cost_usd"], -r["requests"], tuple(str(r[k]) for k in keys)))
        return rows

    def totals(
        self, window_seconds: Window | None = 86_400, *, bot: Bots = None, now: datetime | None = None
    ) -> dict[str, Any]:
        """The window's totals in one row: requests, errors, rates, the four token counts and their
        total, cost, cost saved, cost per request and mean latency (exact, rollup sums)."""
        return _row(
            self._agg(window_seconds, now, percentiles=False, rollups=True, filters=_bot_filters(bot)).one()
        )

    def _cost_map(
        self, by: str, window_seconds: Window | None, now: datetime | None
    ) -> dict[str | None, float]:
        return {r[by]: r["cost_usd"] for r in self.cost_breakdown(by, window_seconds, now=now)}

    def cost_by_model(
        self, window_seconds: Window | None = None, *, now: datetime | None = None
    ) -> dict[str, float]:
        """Total spend (USD) per model, most expensive first; all history unless a window is given."""
        return self._cost_map("model", window_seconds, now)  # type: ignore[return-value]

    def cost_by_bot(
        self, window_seconds: Window | None = None, *, now: datetime | None = None
    ) -> dict[str | None, float]:
        """Total spend per bot (None: calls recorded without a bot)."""
        return self._cost_map("bot", window_seconds, now)

    def cost_by_agent(
        self, window_seconds: Window | None = None, *, now: datetime | None = None
    ) -> dict[str | None, float]:
        """Total spend per agent (None: calls recorded without an agent)."""
        return self._cost_map("agent", window_seconds, now)

    def cost_by_provider(
        self, window_seconds: Window | None = None, *, now: datetime | None = None
    ) -> dict[str, float]:
        """Total spend per provider."""
        return self._cost_map("provider", window_seconds, now)  # type: ignore[return-value]

    def cost_by_conversation(
        self, window_seconds: Window | None = 86_400, *, limit: int | None = 100, now: datetime | None = None
    ) -> dict[str, float]:
        """Spend per conversation in the window, most expensive first (at most `limit`).

        Like `top_conversations`: a day and longer reads `rollup_conversation_hour` for full hours.
        """
        return {r["conversation_id"]: r["cost_usd"] for r in self.top_conversations(window_seconds, limit=limit,
                                                                                     by="cost", now=now)}  # fmt: skip

    def top_conversations(
        self, window_seconds: Window | None = 86_400, *, limit: int | None = 20, by: str = "tokens",
        bot: Bots = None, now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Conversations with the most tokens (`by="tokens"`) or spend (`by="cost"`) in the window,
        over the calls of `bot` (one or a list) when given.

        Rows: conversation_id, requests, input/output/cache-read/cache-write/total tokens, cost_usd,
        cost_saved_usd, first_ts, last_ts, bot (the greatest name among its calls' bots), errors.
        Windows of 24 hours and longer read their full, recomputed hours from
        `rollup_conversation_hour` and only the rest (partial edge hours, hours with a minute not
        rolled up yet) from the raw calls; the figures are the same either way.
        """
        if by not in ("tokens", "cost"):
            raise ValueError(f"by must be 'tokens' or 'cost', got {by!r}")
        start, end = window_bounds(window_seconds, now)
        bots = None if not bot else [bot] if isinstance(bot, str) else list(bot)
        with self.store.connect() as conn:
            raw_ranges: tuple[tuple[datetime, datetime], ...] = ((start, end),)
            hour_ranges: tuple[tuple[datetime, datetime], ...] = ()
            if reads_rollups(window_seconds):
                plan = plan_ranges(start, end, dirty_minutes(self.store, conn, "llm", start, end))
                raw_ranges, hour_ranges = tuple(sorted(plan.raw + plan.minute)), plan.hour
            rows = conn.execute(_top_conversations_stmt(raw_ranges, hour_ranges, by, bots, limit)).all()
        out = []
        for r in rows:
            out.append({
                "conversation_id": r[0], "requests": int(r[1]),
                **{k: int(r[2 + i] or 0) for i, k in enumerate(TOKEN_KINDS)},
                "total_tokens": int(r[6] or 0), "cost_usd": float(r[7] or 0), "cost_saved_usd": float(r[8] or 0),
                "first_ts": as_datetime(r[9]), "last_ts": as_datetime(r[10]), "bot": r[11], "errors": int(r[12] or 0),
            })  # fmt: skip
        return out

    def cost_by_day(
        self, days: int = 30, *, bot: Bots = None, now: datetime | None = None
    ) -> dict[date, float]:
        """Spend per UTC day for the last `days` days including today (days without calls are 0)."""
        if days < 1:
            raise ValueError("days must be at least 1")
        now = resolve_now(now)
        first = floor_day(now - timedelta(days=days - 1))
        out = {(first + timedelta(days=i)).date(): 0.0 for i in range(days)}
        for row in self.daily_spend(days, bot=bot, now=now):
            out[row["day"].date()] += row["cost_usd"]
        return out

    def daily_spend(
        self, days: int = 30, *, by: str | None = None, bot: Bots = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Rows per UTC day (and per model / provider / bot / agent with `by`) for the last `days`
        days including today, oldest first: day (its midnight), the key column, requests,
        cost_usd, cost_saved_usd and tokens. Days without calls have no row. Exact (rollup sums)."""
        if days < 1:
            raise ValueError("days must be at least 1")
        if by is not None and by not in BREAKDOWN_KEYS:
            raise ValueError(f"by must be one of {BREAKDOWN_KEYS}, got {by!r}")
        now = resolve_now(now)
        first = floor_day(now - timedelta(days=days - 1))
        keys = (by,) if by else ()
        agg = aggregate(self.store, LLM, first, now, group_by=keys, granularity="day", percentiles=False,
                        filters=_bot_filters(bot))  # fmt: skip
        rows = []
        for key, s in sorted(agg.groups.items(), key=lambda kv: (kv[0][0], *map(str, kv[0][1:]))):
            row: dict[str, Any] = {"day": key[0], **dict(zip(keys, key[1:], strict=True))}
            row.update(_row(s))
            rows.append(row)
        return rows

    # ---- series for charts --------------------------------------------------------------------
    def llm_timeseries(
        self, window_seconds: Window = 86_400, granularity: str = "hour", *, group_by: Sequence[str] = (),
        bot: Bots = None, model: str | None = None, percentiles: bool = False, now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Rows per (bucket[, group columns]) from the rollups: requests, errors, cache hits and hit
        rate, the four token counts and their total, cost, cost saved, cost per request, mean latency
        and (with `percentiles`) latency P50/P95/P99 from sketches (`approximate`).

        `granularity` is 'minute', 'hour' or 'day'; `bucket` is its start (naive UTC); `group_by`
        takes model, provider, bot and agent; `bot` is one bot or a list.
        """
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {sorted(GRANULARITIES)}")
        filters: dict[str, Any] = _bot_filters(bot) or {}
        if model is not None:
            filters["model"] = model
        agg = self._agg(window_seconds, now, percentiles=percentiles, group_by=tuple(group_by), filters=filters,
                        granularity=granularity)  # fmt: skip
        rows = []
        for key, s in sorted(agg.groups.items(), key=lambda kv: (kv[0][0], *map(str, kv[0][1:]))):
            row: dict[str, Any] = {"bucket": key[0], **dict(zip(group_by, key[1:], strict=True))}
            row.update(_row(s))
            if percentiles:
                row.update({"p50": s.p50, "p95": s.p95, "p99": s.p99})
            row["approximate"] = agg.approximate
            rows.append(row)
        return rows

    def token_usage_series(
        self, window_seconds: Window = 86_400, granularity: str = "hour", *, by: str | None = "model",
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Input / output / cache-read / cache-write tokens per bucket and model (or bot, agent, or
        nothing with `by=None`), with cost and requests."""
        return self.llm_timeseries(window_seconds, granularity, group_by=(by,) if by else (), now=now)

    def cache_hit_rate_series(
        self, window_seconds: Window = 86_400, granularity: str = "hour", *, by: str | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Per bucket: requests, cache hits, cache hit rate, cost saved, and the prompt-cache read
        ratio (cache-read tokens / input tokens)."""
        rows = self.llm_timeseries(window_seconds, granularity, group_by=(by,) if by else (), now=now)
        out = []
        for r in rows:
            keep = {k: r[k] for k in ("bucket", *((by,) if by else ()), "requests", "cache_hits", "cache_hit_rate",
                                      "cost_saved_usd", "approximate")}  # fmt: skip
            keep["prompt_cache_read_ratio"] = (
                r["cache_read_tokens"] / r["input_tokens"] if r["input_tokens"] else 0.0
            )
            out.append(keep)
        return out

    # ---- latency, SLA, errors, alerts -----------------------------------------------------------
    def latency_report(
        self, model: str | None = None, window_seconds: Window | None = 3600, *, bot: str | None = None,
        now: datetime | None = None,
    ) -> LatencyReport:  # fmt: skip
        """P50 / P95 / P99, mean, min, max and count of call latency (ms), optionally for one model
        and/or bot. Exact (linear interpolation over raw rows) under 24 hours; sketch-based above."""
        filters: dict[str, Any] = {}
        if model is not None:
            filters["model"] = model
        if bot is not None:
            filters["bot"] = bot
        agg = self._agg(window_seconds, now, percentiles=True, filters=filters)
        return _latency_report(agg.one(), agg, model, bot, window_seconds)

    def latency_by_model(
        self, window_seconds: Window | None = 3600, *, now: datetime | None = None
    ) -> dict[str, LatencyReport]:
        """`latency_report` for every model with calls in the window, in one query."""
        agg = self._agg(window_seconds, now, percentiles=True, group_by=("model",))
        return {
            k[0]: _latency_report(s, agg, k[0], None, window_seconds) for k, s in sorted(agg.groups.items())
        }

    def latency_by_bot(
        self,
        window_seconds: Window | None = 3600,
        *,
        bots: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> dict[str | None, LatencyReport]:
        """`latency_report` for every bot with calls in the window (or those of `bots`), in one query."""
        agg = self._agg(window_seconds, now, percentiles=True, group_by=("bot",), filters=_bot_filters(bots))
        return {k[0]: _latency_report(s, agg, None, k[0], window_seconds)
                for k, s in sorted(agg.groups.items(), key=lambda kv: str(kv[0][0]))}  # fmt: skip

    def sla_compliance(
        self, target_p95_ms: float = 2000.0, *, window_seconds: Window | None = 3600, model: str | None = None,
        now: datetime | None = None,
    ) -> bool:  # fmt: skip
        """True when the window's P95 latency is within `target_p95_ms` (or there were no calls)."""
        report = self.latency_report(model, window_seconds, now=now)
        return report.count == 0 or report.p95 <= target_p95_ms

    def error_rate(
        self, window_seconds: Window = 300, *, model: str | None = None, now: datetime | None = None
    ) -> float:
        """Share of failed calls in the window (rolling 5 minutes by default); 0.0 without calls."""
        agg = self._agg(window_seconds, now, percentiles=False,
                        filters={"model": model} if model is not None else None)  # fmt: skip
        return agg.one().error_rate

    def alert_check(
        self, error_rate_threshold: float = 0.1, p95_threshold_ms: float = 5000.0, *,
        error_window_seconds: Window = 300, latency_window_seconds: Window = 3600, now: datetime | None = None,
    ) -> list[str]:  # fmt: skip
        """Readable alert strings for breached thresholds: the rolling error rate, the overall P95,
        and the P95 of each model that breaches on its own. Empty when all is well."""
        alerts: list[str] = []
        now = resolve_now(now)
        agg = self._agg(error_window_seconds, now, percentiles=False)
        s = agg.one()
        if s.count and s.error_rate > error_rate_threshold:
            alerts.append(
                f"High LLM error rate: {s.error_rate:.1%} of {s.count} calls failed in the last "
                f"{_span(_seconds(error_window_seconds))} (threshold {error_rate_threshold:.1%})"
            )
        overall = self.latency_report(None, latency_window_seconds, now=now)
        if overall.count and overall.p95 > p95_threshold_ms:
            alerts.append(
                f"High LLM latency: P95 {overall.p95:,.0f} ms over the last {_span(_seconds(latency_window_seconds))} "
                f"exceeds {p95_threshold_ms:,.0f} ms ({overall.count} calls)"
            )
        for model, rep in self.latency_by_model(latency_window_seconds, now=now).items():
            if rep.count and rep.p95 > p95_threshold_ms:
                alerts.append(f"High latency for {model}: P95 {rep.p95:,.0f} ms exceeds {p95_threshold_ms:,.0f} ms "
                              f"({rep.count} calls)")  # fmt: skip
        return alerts

    # ---- dashboard, unknown models, budget ------------------------------------------------------
    def dashboard(
        self, window_seconds: Window | None = 86_400, *, now: datetime | None = None
    ) -> ObservabilityDashboard:
        """Total cost, average cost per request, cache hit rate, requests per minute, error rate,
        token totals, money saved by caching, latency and unknown-model calls for the window."""
        now = resolve_now(now)
        agg = self._agg(window_seconds, now, percentiles=True)
        s = agg.one()
        row = _row(s)
        seconds = _seconds(window_seconds)
        minutes = seconds / 60 if seconds is not None else self._history_minutes(now)
        unknown = sum(r["calls"] for r in self.unknown_model_calls(window_seconds, now=now))
        return ObservabilityDashboard(
            total_cost_usd=row["cost_usd"], avg_cost_per_request=row["cost_per_request"],
            cache_hit_rate=row["cache_hit_rate"], requests_per_minute=s.count / minutes if minutes else 0.0,
            total_requests=s.count, error_rate=row["error_rate"],
            input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"], cache_write_tokens=row["cache_write_tokens"],
            total_tokens=row["total_tokens"], cost_saved_usd=row["cost_saved_usd"],
            prompt_cache_read_ratio=row["cache_read_tokens"] / row["input_tokens"] if row["input_tokens"] else 0.0,
            latency=_latency_report(s, agg, None, None, window_seconds), unknown_model_calls=unknown,
            window_seconds=seconds, generated_at=now, source=agg.source,
        )  # fmt: skip

    def _history_minutes(self, now: datetime) -> float:
        t = schema.llm_calls
        with self.store.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(t.c.ts))).scalar()
        first = as_datetime(first)
        return max((now - first).total_seconds() / 60, 1.0) if first else 0.0

    def unknown_model_calls(
        self, window_seconds: Window | None = None, *, bot: Bots = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Calls to models the price table did not know at ingest (priced 0 and flagged), per model
        and provider: calls, tokens, cost a caller supplied itself, first and last seen; most calls
        first. Calls priced above OTLP_COST_CEILING_USD are flagged the same way: their price is
        kept out of spend and shown here as `withheld_usd` for a person to judge; so are calls that
        reported no usage (`rollups.usage_missing`), counted as `usage_missing_calls`: their spend is
        unknown, not $0. Windows of 24 hours
        and longer read their full hours from `rollup_unpriced_hour` and the rest from the small
        partial index of flagged rows (the same figures either way), so any window is cheap. With
        `bot` (one or a list) only those bots' calls: read from the flagged rows alone (the hourly
        rollup has no bot), which are few."""
        start, end = window_bounds(window_seconds, now)
        bots = _bot_filters(bot)
        r = schema.rollup_unpriced_hour
        merged: dict[tuple, list] = {}

        def add(row: Sequence) -> None:  # model, provider, calls, *UNPRICED_SUMS, usage missing, first, last
            key = (row[0], row[1])
            acc = merged.get(key)
            vals = [int(row[2]), *(row[3:8]), as_datetime(row[8]), as_datetime(row[9])]
            if acc is None:
                merged[key] = vals
                return
            for i in range(6):
                acc[i] = (
                    (acc[i] or 0) + (vals[i] or 0) if (acc[i] is not None or vals[i] is not None) else None
                )
            acc[6], acc[7] = min(acc[6], vals[6]), max(acc[7], vals[7])

        with self.store.connect() as conn:
            raw_ranges: tuple[tuple[datetime, datetime], ...] = ((start, end),)
            if reads_rollups(window_seconds) and not bots:
                plan = plan_ranges(start, end, dirty_minutes(self.store, conn, "llm", start, end))
                raw_ranges = tuple(sorted(plan.raw + plan.minute))
                if plan.hour:
                    for row in conn.execute(
                        sa.select(r.c.model, r.c.provider, sa.func.sum(r.c.calls),
                                  *[sa.func.sum(r.c[k]) for k in UNPRICED_SUMS], sa.func.sum(r.c.usage_missing_calls),
                                  sa.func.min(r.c.first_ts), sa.func.max(r.c.last_ts))
                        .where(in_ranges(r.c.bucket, plan.hour)).group_by(r.c.model, r.c.provider)
                    ):  # fmt: skip
                        add(row)
            for a, b in raw_ranges:
                for row in conn.execute(
                    unpriced_select(a, b, *filter_clause(schema.llm_calls, bots or {}, rollup=False))
                ):
                    add(row)
        out = [  # v: calls, input, output, caller cost, withheld, usage missing, first, last
            {"model": k[0], "provider": k[1], "calls": int(v[0]), "input_tokens": int(v[1] or 0),
             "output_tokens": int(v[2] or 0), "first_seen": as_datetime(v[6]),
             # calls that reported no usage have no cost a caller gave: blank, not $0
             "caller_cost_usd": None if int(v[5] or 0) == int(v[0]) else float(v[3] or 0),
             "last_seen": as_datetime(v[7]), "known_now": pricing.is_known(k[1], k[0]),
             "withheld_usd": float(v[4] or 0), "usage_missing_calls": int(v[5] or 0)}
            for k, v in merged.items()
        ]  # fmt: skip
        out.sort(key=lambda r: (-r["calls"], r["model"], r["provider"]))
        return out

    def monthly_budget(self) -> float:
        """The monthly budget: control_state 'monthly_budget' (set on the cost page), else the
        MONTHLY_BUDGET_USD setting."""
        cs = schema.control_state
        with self.store.connect() as conn:
            value = conn.execute(sa.select(cs.c.value).where(cs.c.key == BUDGET_KEY)).scalar()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if isinstance(value, dict):
            value = value.get("usd")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        return float(get_settings().monthly_budget_usd)

    def set_monthly_budget(self, user_name: str, usd: float, *, now: datetime | None = None) -> float:
        """Set the monthly budget (USD). The user's role must allow `budget.set` (managers and
        admins); the change is recorded in the activity feed with the old and new value."""
        user = auth.authorize(self.store, user_name, "budget.set")
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd <= 0:
            raise ValueError("the budget must be a positive number of dollars")
        if usd > MAX_MONTHLY_BUDGET_USD:  # a typo (extra zeros), not a budget: it would hide every overspend
            raise ValueError(f"the budget must be at most ${MAX_MONTHLY_BUDGET_USD:,.0f} a month")
        now = resolve_now(now)
        old = self.monthly_budget()
        cs = schema.control_state
        value = {"usd": float(usd)}
        with self.store.begin() as conn:
            stmt = self.store.insert(cs).values(
                key=BUDGET_KEY, value=value, updated_by=user.name, updated_at=now
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[cs.c.key],
                    set_={"value": value, "updated_by": user.name, "updated_at": now},
                )
            )
            auth.audit_event(
                conn, "budget_changed", f"Monthly budget set to ${usd:,.2f}", user=user.name, category="cost",
                description=f"{user.name} changed it from ${old:,.2f}", metadata={"old": old, "new": float(usd)},
                now=now,
            )  # fmt: skip
        return float(usd)

    def spend_today_usd(self, *, now: datetime | None = None) -> float:
        """Spend since 00:00 UTC (exact, rollup sums plus raw edges)."""
        now = resolve_now(now)
        today = aggregate(self.store, LLM, floor_day(now), now, percentiles=False, rollups=True).one()
        return float(today.sums.get("cost_usd", 0) or 0)

    def spend_forecast(
        self, budget_usd: float | None = None, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Month-to-date spend and a month-end forecast against the budget.

        forecast = MTD + run rate x days left, where the run rate is the mean daily spend of the
        last 7 days (or of the month so far when it is younger than 7 days), counted from the
        store's first call when that is later: a store that began yesterday evening has spent 16
        hours, not the 2.7 days since the 1st, and dividing by those forecast a third of the real
        run rate. Also: spend today, cost saved this month, budget used and forecast as shares of
        the budget, and whether the forecast exceeds the budget.
        """
        now = resolve_now(now)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days_in_month = monthrange(now.year, now.month)[1]
        elapsed = (now - month_start).total_seconds() / 86_400
        budget = self.monthly_budget() if budget_usd is None else float(budget_usd)
        mtd = aggregate(self.store, LLM, month_start, now, percentiles=False, rollups=True).one()
        rate_start = now - timedelta(days=min(7.0, elapsed))
        since = self.calls_begin(rate_start, now)
        rate_from = max(rate_start, since) if since is not None else now
        rate_days = (now - rate_from).total_seconds() / 86_400
        if rate_days > 0:
            recent = aggregate(self.store, LLM, rate_from, now, percentiles=False, rollups=True).one()
            rate = float(recent.sums.get("cost_usd", 0) or 0) / rate_days
        else:
            rate = 0.0
        spend = float(mtd.sums.get("cost_usd", 0) or 0)
        days_left = max(days_in_month - elapsed, 0.0)
        forecast = spend + rate * days_left
        return {
            "month": f"{now:%Y-%m}",
            "month_start": month_start,
            "days_in_month": days_in_month,
            "days_elapsed": elapsed,
            "days_left": days_left,
            "spend_mtd_usd": spend,
            "spend_today_usd": self.spend_today_usd(now=now),
            "saved_mtd_usd": float(mtd.sums.get("cost_saved_usd", 0) or 0),
            "requests_mtd": mtd.count,
            "daily_run_rate_usd": rate,
            "run_rate_since": rate_from,
            "run_rate_days": rate_days,
            "forecast_month_end_usd": forecast,
            "budget_usd": budget,
            "budget_used_pct": spend / budget * 100 if budget else None,
            "forecast_pct_of_budget": forecast / budget * 100 if budget else None,
            "forecast_over_budget": forecast > budget,
            "remaining_budget_usd": budget - spend,
            "method": "MTD + mean daily spend of the last 7 days (since the first call, if later) x days left",
        }

    def calls_begin(self, start: datetime, end: datetime) -> datetime | None:
        """When the store's LLM calls begin, seen from the window [start, end): `start` when it
        holds calls from before it (a quiet night is not a young store), the first call's time when
        the store begins inside the window, None when it holds no call before `end`. The hour
        rollups (keyed by hour first) answer most of it; raw rows only within one hour, or when
        nothing is rolled up yet (a store minutes old, a worker that never ran)."""
        h, raw = schema.rollup_llm_hour, schema.llm_calls
        hour0 = start.replace(minute=0, second=0, microsecond=0)
        with self.store.connect() as conn:

            def raw_exists(lo: datetime | None, hi: datetime) -> bool:
                where = [raw.c.ts < hi] + ([raw.c.ts >= lo] if lo is not None else [])
                return conn.execute(sa.select(sa.literal(1)).where(*where).limit(1)).first() is not None

            def raw_first(lo: datetime, hi: datetime) -> datetime | None:
                return as_datetime(
                    conn.execute(
                        sa.select(sa.func.min(raw.c.ts)).where(raw.c.ts >= lo, raw.c.ts < hi)
                    ).scalar()
                )

            if conn.execute(sa.select(sa.literal(1)).where(h.c.bucket < hour0).limit(1)).first() is not None:
                return start
            hour = as_datetime(
                conn.execute(
                    sa.select(sa.func.min(h.c.bucket)).where(h.c.bucket >= hour0, h.c.bucket < end)
                ).scalar()
            )
            if hour is None:  # nothing rolled up: the raw rows are few, or the worker never ran
                return start if raw_exists(None, start) else raw_first(start, end)
            if hour == hour0 and raw_exists(hour0, start):
                return start
            lo = max(start, hour)
            first = raw_first(lo, min(end, hour + timedelta(hours=1)))
            return lo if first is None else first  # None: that hour's raw rows are past retention

    def cost_per_request(
        self, window_seconds: Window | None = 86_400, *, now: datetime | None = None
    ) -> float:
        """Average cost of one call in the window (USD)."""
        s = self._agg(window_seconds, now, percentiles=False, rollups=True).one()
        return float(s.sums.get("cost_usd", 0) or 0) / s.count if s.count else 0.0


def _span(seconds: float) -> str:
    if seconds % 86_400 == 0:
        return f"{int(seconds // 86_400)} d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
