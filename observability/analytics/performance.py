"""Latency, throughput and SLA compliance per bot and operation over `bot_operations`.

`PerformanceTracker(store)` answers source document 000's Performance Monitoring questions: per-bot
stats over the rolling windows '1h' (raw rows, exact percentiles), '24h' and '7d' (rollups,
percentiles within 1%), SLA compliance against the table shipped in `data/sla_targets.json`, and
the chart series of the bot-health page. Every figure is read through the window engine
(`observability.analytics.window`); every method takes `now=`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from observability.analytics.window import Aggregate, Stats, aggregate
from observability.settings import DATA_DIR
from observability.store import Store
from observability.store.rollups import OPS
from observability.store.sqlhelpers import GRANULARITIES
from observability.timeutil import Window, window_bounds, window_seconds

SLA_TARGETS_FILE = DATA_DIR / "sla_targets.json"


@dataclass(frozen=True)
class SlaTarget:
    bot: str
    operation: str
    p50_ms: float
    p95_ms: float
    p99_ms: float


def load_sla_targets(path: Path | None = None) -> list[SlaTarget]:
    """The SLA table shipped in `data/sla_targets.json` (source document 000, Performance Monitoring)."""
    return list(_load_sla_targets(str(path or SLA_TARGETS_FILE)))


@lru_cache(maxsize=8)
def _load_sla_targets(path: str) -> tuple[SlaTarget, ...]:
    raw = json.loads(Path(path).read_text())
    items = raw["targets"] if isinstance(raw, dict) else raw
    out = []
    for t in items:
        out.append(SlaTarget(str(t["bot"]), str(t["operation"]), float(t["p50_ms"]), float(t["p95_ms"]),
                             float(t["p99_ms"])))  # fmt: skip
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------------------------


def _num(value: float | None) -> float:
    return float(value) if value is not None else 0.0


def stats_dict(s: Stats) -> dict[str, Any]:
    """The per-bot stats shape of source document 000 (milliseconds; 0.0 when there is no data)."""
    return {
        "p50": _num(s.p50),
        "p95": _num(s.p95),
        "p99": _num(s.p99),
        "mean": _num(s.mean_ms),
        "min": _num(s.min_ms),
        "max": _num(s.max_ms),
        "count": s.count,
        **s.outcomes(),
    }


class PerformanceTracker:
    """Per-bot latency, throughput, reliability and SLA compliance over `bot_operations`.

    Windows (`observability.timeutil.Window`): '1h' (raw rows, exact percentiles), '24h' and '7d'
    (rollups, percentiles within 1%); a `timedelta` or a number of seconds is accepted too. Every
    method takes `now=`.
    """

    def __init__(self, store: Store, sla_targets: Sequence[SlaTarget] | None = None) -> None:
        self.store = store
        self._targets = list(sla_targets) if sla_targets is not None else None

    @property
    def sla_targets(self) -> list[SlaTarget]:
        """The SLA table in use (data/sla_targets.json unless given to the constructor)."""
        if self._targets is None:
            self._targets = load_sla_targets()
        return self._targets

    def _aggregate(self, window: Window, now: datetime | None, **kwargs: Any) -> tuple[Aggregate, float]:
        start, end = window_bounds(window, now)
        return aggregate(self.store, OPS, start, end, **kwargs), window_seconds(window)

    @staticmethod
    def _meta(agg: Aggregate, window: Window, seconds: float) -> dict[str, Any]:
        return {
            "window": window,
            "window_seconds": seconds,
            "approximate": agg.approximate,
            "source": agg.source,
        }

    def get_bot_stats(
        self, bot_name: str, window: Window = "1h", *, operation: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Latency P50/P95/P99/mean/min/max (ms), total/success/error counts, success rate, cache hits
        and hit rate of one bot (optionally one operation) over the window."""
        filters: dict[str, Any] = {"bot": bot_name}
        if operation is not None:
            filters["operation"] = operation
        agg, seconds = self._aggregate(window, now, filters=filters)
        out = {"bot": bot_name, "operation": operation, **stats_dict(agg.one())}
        out.update(self._meta(agg, window, seconds))
        return out

    def get_all_bot_stats(
        self,
        window: Window = "1h",
        *,
        bots: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> dict[str, dict]:
        """`get_bot_stats` for every bot with operations in the window (or those of `bots`), in one
        query."""
        agg, seconds = self._aggregate(
            window, now, group_by=("bot",), filters={"bot": list(bots)} if bots else None
        )
        meta = self._meta(agg, window, seconds)
        return {
            k[0]: {"bot": k[0], "operation": None, **stats_dict(s), **meta}
            for k, s in sorted(agg.groups.items())
        }

    def check_sla_compliance(self, window: Window = "1h", *, now: datetime | None = None) -> list[dict]:
        """One dict per SLA target (bot, operation): targets vs actual P50/P95/P99 and violations,
        with the operation's count, errors, error rate and cache hit rate in the window.

        `compliant` is False when any measured percentile exceeds its target; an operation with no
        calls in the window is compliant with `count` 0 and actual percentiles None.
        """
        targets = self.sla_targets
        agg, seconds = self._aggregate(window, now, group_by=("bot", "operation"),
                                       filters={"bot": sorted({t.bot for t in targets})})  # fmt: skip
        meta = self._meta(agg, window, seconds)
        out = []
        for t in targets:
            s = agg.groups.get((t.bot, t.operation))
            actual = {"p50": None, "p95": None, "p99": None}
            violations: list[str] = []
            if s is not None and s.count:
                actual = {"p50": s.p50, "p95": s.p95, "p99": s.p99}
                for name, target in (("p50", t.p50_ms), ("p95", t.p95_ms), ("p99", t.p99_ms)):
                    value = actual[name]
                    if value is not None and value > target:
                        violations.append(
                            f"{t.bot}/{t.operation}: {name.upper()} {value:,.0f} ms exceeds the "
                            f"{target:,.0f} ms target ({window})"
                        )
            out.append({
                "bot": t.bot,
                "operation": t.operation,
                "count": s.count if s else 0,
                "errors": s.errors if s else 0,
                "error_rate": s.error_rate if s else 0.0,
                "cache_hit_rate": s.cache_hit_rate if s else 0.0,
                "target_p50": t.p50_ms,
                "target_p95": t.p95_ms,
                "target_p99": t.p99_ms,
                "actual_p50": actual["p50"],
                "actual_p95": actual["p95"],
                "actual_p99": actual["p99"],
                "compliant": not violations,
                "violations": violations,
                **meta,
            })  # fmt: skip
        return out

    def sla_violations(self, window: Window = "1h", *, now: datetime | None = None) -> list[str]:
        """Just the violation messages of `check_sla_compliance`."""
        return [v for row in self.check_sla_compliance(window, now=now) for v in row["violations"]]

    def bot_timeseries(
        self, window: Window = "24h", granularity: str = "hour", *, bot: str | Sequence[str] | None = None,
        operation: str | None = None, by_operation: bool = False, now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Chart rows per (bucket, bot[, operation]) from the rollups: latency P50/P95/P99 and mean,
        requests, requests per minute, errors, error rate, cache hits and hit rate.

        `granularity` is 'minute', 'hour' or 'day'; `bucket` is the bucket's start (naive UTC);
        `bot` is one bot or a list of them. Percentiles come from merged sketches (`approximate`).
        """
        filters: dict[str, Any] = {}
        if bot is not None:
            filters["bot"] = bot
        if operation is not None:
            filters["operation"] = operation
        group = ("bot", "operation") if by_operation else ("bot",)
        agg, seconds = self._aggregate(window, now, group_by=group, filters=filters, granularity=granularity)
        per_min = GRANULARITIES[granularity] / 60
        rows = []
        for key, s in sorted(agg.groups.items(), key=lambda kv: (kv[0][0], *map(str, kv[0][1:]))):
            row = {"bucket": key[0], "bot": key[1]}
            if by_operation:
                row["operation"] = key[2]
            row.update({
                "requests": s.count,
                "requests_per_minute": s.count / per_min,
                "errors": s.errors,
                "error_rate": s.error_rate,
                "cache_hits": s.cache_hits,
                "cache_hit_rate": s.cache_hit_rate,
                "mean": s.mean_ms,
                "p50": s.p50,
                "p95": s.p95,
                "p99": s.p99,
                "approximate": agg.approximate,
            })  # fmt: skip
            rows.append(row)
        return rows
