"""The LLM calls explorer (after Langfuse's trace table): every recorded call, filtered by bot,
model, provider, agent, status, error type, latency and cost ranges, conversation and time,
sorted, and paged by keyset so the next page costs the same as the first at any table size.

`CallFilters.from_params` reads the filters from a page's URL (the format other pages link with,
see `call_link_params`) and says which value is wrong; `explore_calls` runs one SQL statement per
page; `call_options` lists the values the filters offer. Times are naive UTC, as stored.

URL parameters (all optional, repeatable where marked *):
    bot*, model*, provider*, agent*, error*   exact values
    status       ok | error
    lat_min, lat_max   latency in ms;   cost_min, cost_max   cost in USD (inclusive)
    conversation       a conversation id
    range        1h | 6h | 24h | 7d | 30d (default 24h), or from / to: ISO times in UTC
    sort         newest (default) | oldest | slowest | costliest
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.store import Store, schema
from observability.timeutil import resolve_now, to_naive_utc

RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE = "24h"
SORTS = ("newest", "oldest", "slowest", "costliest")
STATUSES = ("ok", "error")
MAX_PAGE = 200
LIST_PARAMS = {
    "bot": "bots",
    "model": "models",
    "provider": "providers",
    "agent": "agents",
    "error": "error_types",
}
COLUMNS = (
    "trace_id", "ts", "bot", "agent", "decision_type", "model", "provider", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "latency_ms", "cache_hit", "cost_usd", "conversation_id",
    "success", "error_type", "error_raw",
)  # fmt: skip


class FilterError(ValueError):
    """Bad filter values; `errors` maps each URL parameter to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class CallFilters:
    bots: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    status: str | None = None  # ok | error
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    min_cost_usd: float | None = None
    max_cost_usd: float | None = None
    conversation_id: str | None = None
    range: str | None = DEFAULT_RANGE  # ignored when since is set
    since: datetime | None = None
    until: datetime | None = None
    sort: str = "newest"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CallFilters:
        """Filters from URL parameters (values may be strings or lists of strings). Raises
        FilterError naming each bad parameter; unknown parameters are ignored (other widgets')."""
        errors: dict[str, str] = {}

        def many(key: str) -> tuple[str, ...]:
            v = params.get(key)
            vals = [v] if isinstance(v, str) else list(v or [])
            return tuple(sorted({str(x).strip() for x in vals if str(x).strip()}))

        def one(key: str) -> str | None:
            v = params.get(key)
            if isinstance(v, (list, tuple)):
                v = v[-1] if v else None
            v = None if v is None else str(v).strip()
            return v or None

        def number(key: str, what: str) -> float | None:
            v = one(key)
            if v is None:
                return None
            try:
                x = float(v)
            except ValueError:
                errors[key] = f"{what} must be a number, not {v!r:.30}"
                return None
            if not math.isfinite(x) or x < 0:
                errors[key] = f"{what} must be a finite number of at least 0, not {v!r:.30}"
                return None
            return x

        def when(key: str) -> datetime | None:
            v = one(key)
            if v is None:
                return None
            try:
                return to_naive_utc(datetime.fromisoformat(v))
            except ValueError:
                errors[key] = f"{key} must be a time like 2026-03-01T12:00 (UTC), not {v!r:.30}"
                return None

        status = one("status")
        if status is not None and status not in STATUSES:
            errors["status"] = f"status is ok or error, not {status!r:.30}"
        rng = one("range") or DEFAULT_RANGE
        if rng not in RANGES:
            errors["range"] = f"range is one of {', '.join(RANGES)}, not {rng!r:.30}"
        sort = one("sort") or "newest"
        if sort not in SORTS:
            errors["sort"] = f"sort is one of {', '.join(SORTS)}, not {sort!r:.30}"
        out = cls(
            bots=many("bot"), models=many("model"), providers=many("provider"), agents=many("agent"),
            error_types=many("error"), status=status,
            min_latency_ms=number("lat_min", "the lowest latency"), max_latency_ms=number("lat_max", "the highest latency"),
            min_cost_usd=number("cost_min", "the lowest cost"), max_cost_usd=number("cost_max", "the highest cost"),
            conversation_id=one("conversation"), range=rng, since=when("from"), until=when("to"), sort=sort,
        )  # fmt: skip
        for lo, hi, key in (
            ("min_latency_ms", "max_latency_ms", "lat_max"),
            ("min_cost_usd", "max_cost_usd", "cost_max"),
        ):
            a, b = getattr(out, lo), getattr(out, hi)
            if a is not None and b is not None and b < a and key not in errors:
                errors[key] = f"the highest value ({b:g}) is below the lowest ({a:g})"
        if out.since and out.until and out.until <= out.since and "to" not in errors:
            errors["to"] = "to must be after from"
        if errors:
            raise FilterError(errors)
        return out

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime | None]:
        """(since, until) in naive UTC: from/to when given, else the range back from now."""
        if self.since is not None:
            return self.since, self.until
        end = to_naive_utc(resolve_now(now))
        return end - timedelta(seconds=RANGES.get(self.range or DEFAULT_RANGE, 86400)), self.until


def call_link_params(**filters: Any) -> dict[str, Any]:
    """URL parameters for a link to the explorer, e.g. call_link_params(bot="lead_bot",
    sort="slowest", since=dt): keyword names are those of CallFilters, values are formatted."""
    names = {v: k for k, v in LIST_PARAMS.items()} | {
        "status": "status", "min_latency_ms": "lat_min", "max_latency_ms": "lat_max", "min_cost_usd": "cost_min",
        "max_cost_usd": "cost_max", "conversation_id": "conversation", "range": "range", "since": "from",
        "until": "to", "sort": "sort",
    }  # fmt: skip
    out: dict[str, Any] = {}
    for k, v in filters.items():
        if v in (None, "", (), []):
            continue
        key = names.get(k, k)
        if isinstance(v, datetime):
            v = to_naive_utc(v).strftime("%Y-%m-%dT%H:%M:%S")
        out[key] = [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
    return out


@dataclass(frozen=True)
class CallPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # pass back as `cursor` for the next page; None on the last page


def _sort_columns(sort: str) -> tuple[list[Any], bool]:
    c = schema.llm_calls
    if sort == "slowest":
        return [c.c.latency_ms, c.c.ts, c.c.trace_id], True
    if sort == "costliest":
        return [c.c.cost_usd, c.c.ts, c.c.trace_id], True
    return [c.c.ts, c.c.trace_id], sort != "oldest"


def _encode(row: Mapping[str, Any], sort: str) -> str:
    ts = row["ts"].isoformat()
    if sort == "slowest":
        return f"{row['latency_ms']!r}|{ts}|{row['trace_id']}"
    if sort == "costliest":
        return f"{row['cost_usd']!r}|{ts}|{row['trace_id']}"
    return f"{ts}|{row['trace_id']}"


def _decode(cursor: str, sort: str) -> list[Any]:
    try:
        parts = cursor.split("|", 2 if sort in ("slowest", "costliest") else 1)
        if sort in ("slowest", "costliest"):
            return [float(parts[0]), datetime.fromisoformat(parts[1]), parts[2]]
        return [datetime.fromisoformat(parts[0]), parts[1]]
    except (ValueError, IndexError):
        raise FilterError(
            {"cursor": "this page link is no longer valid: start from the first page"}
        ) from None


def _where(f: CallFilters, now: datetime | None) -> list[Any]:
    c = schema.llm_calls
    since, until = f.window(now)
    cond: list[Any] = [c.c.ts >= since]
    if until is not None:
        cond.append(c.c.ts < until)
    for values, col in ((f.bots, c.c.bot), (f.models, c.c.model), (f.providers, c.c.provider),
                        (f.agents, c.c.agent), (f.error_types, c.c.error_type)):  # fmt: skip
        if values:
            cond.append(col.in_(values))
    if f.status == "ok":
        cond.append(c.c.success.is_(True))
    elif f.status == "error":
        cond.append(c.c.success.is_(False))
    if f.min_latency_ms is not None:
        cond.append(c.c.latency_ms >= f.min_latency_ms)
    if f.max_latency_ms is not None:
        cond.append(c.c.latency_ms <= f.max_latency_ms)
    if f.min_cost_usd is not None:
        cond.append(c.c.cost_usd >= f.min_cost_usd)
    if f.max_cost_usd is not None:
        cond.append(c.c.cost_usd <= f.max_cost_usd)
    if f.conversation_id:
        cond.append(c.c.conversation_id == f.conversation_id)
    return cond


def explore_calls(
    store: Store, filters: CallFilters | None = None, *, cursor: str | None = None, limit: int = 50,
    now: datetime | None = None,
) -> CallPage:  # fmt: skip
    """One page of calls matching `filters`, in their sort order (ties broken by time, then trace
    id, so pages never skip or repeat a call). Keyset paging: `cursor` is the previous page's
    `next_cursor`."""
    f = filters or CallFilters()
    limit = max(1, min(int(limit), MAX_PAGE))
    c = schema.llm_calls
    cols, desc = _sort_columns(f.sort)
    cond = _where(f, now)
    if cursor:
        key = sa.tuple_(*cols)
        after = sa.tuple_(*(sa.literal(v) for v in _decode(cursor, f.sort)))
        cond.append(key < after if desc else key > after)
    order = [col.desc() if desc else col.asc() for col in cols]
    q = sa.select(*(c.c[name] for name in COLUMNS)).where(*cond).order_by(*order).limit(limit + 1)
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    return CallPage(rows, _encode(rows[-1], f.sort) if more and rows else None)


def call_options(store: Store, *, days: int = 30, now: datetime | None = None) -> dict[str, list[str]]:
    """The values each filter offers: bots, models, providers and agents from the hourly rollup
    of the last `days`, error types from the most recent failed calls (bounded reads)."""
    now = to_naive_utc(resolve_now(now))
    r, c = schema.rollup_llm_hour, schema.llm_calls
    since = now - timedelta(days=days)
    out: dict[str, list[str]] = {}
    with store.connect() as conn:
        for name in ("bot", "model", "provider", "agent"):
            col = r.c[name]
            vals = conn.execute(sa.select(col).where(r.c.bucket >= since).distinct().limit(500)).scalars()
            out[name] = sorted({v for v in vals if v})
        recent = (
            sa.select(c.c.error_type)
            .where(c.c.success.is_(False), c.c.ts >= since, c.c.error_type.is_not(None))
            .order_by(c.c.ts.desc())
            .limit(5000)
            .subquery()
        )
        out["error"] = sorted(
            v for v in conn.execute(sa.select(recent.c.error_type).distinct()).scalars() if v
        )
    return out


__all__ = [
    "RANGES", "SORTS", "STATUSES", "CallFilters", "CallPage", "FilterError", "call_link_params", "call_options",
    "explore_calls",
]  # fmt: skip
