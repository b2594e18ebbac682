"""Bot interaction and handoff metrics (source document 000, Bot Metrics Collection), over the store.

`BotMetricsCollector(store)` summarises `bot_interactions` (one row per bot response) and
`handoffs` in SQL: per-bot and system summaries, the handoff matrix, and the metric values the
alerting service evaluates (`alert_metrics`, pushed by `feed_to_alerting`).

Interactions and handoffs have no rollups, so every window reads raw rows aggregated in SQL
(exact percentiles: `percentile_cont` on PostgreSQL, the order statistics picked in SQL on SQLite,
`sqlhelpers.group_percentiles`). The default windows are an hour, where that is cheap at any scale. Windows are
`[now - window, now)` in naive UTC; `now=` places them in time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.analytics.window import Stats, aggregate
from observability.store import Store, schema
from observability.store.rollups import INTERACTIONS
from observability.store.sqlhelpers import as_datetime, count_if, count_true, group_percentiles
from observability.timeutil import Window, resolve_now, window_seconds

log = logging.getLogger(__name__)

KNOWN_BOTS: tuple[str, ...] = ("lead_bot", "buyer_bot", "seller_bot")
# the 7 metrics of source document 000 ("Alerting Integration"), in its order
ALERT_METRIC_NAMES: tuple[str, ...] = (
    "error_rate",
    "cache_hit_rate",
    "lead_bot.response_time_p95",
    "buyer_bot.response_time_p95",
    "seller_bot.response_time_p95",
    "handoff.response_time_p95",
    "handoff.failure_rate",
)


def metric_prefix(bot: str) -> str:
    """'lead_bot' and the source document's short 'lead' both give 'lead_bot'."""
    return bot if bot.endswith("_bot") else f"{bot}_bot"


def rate_limit_condition(col: sa.ColumnElement) -> sa.ColumnElement:
    """An error type that means the provider throttled us (rate limit, HTTP 429, too many requests);
    only failed calls count."""
    low = sa.func.lower(col)
    return sa.or_(low.like("%rate%limit%"), low.like("%429%"), low.like("%too%many%requests%"))


def _minutes(window: Window) -> float:
    """A window in minutes: a number counts minutes here (the section-5 `window_minutes=`)."""
    return window_seconds(window, unit_s=60) / 60


def _summary(s: Stats | None) -> dict[str, Any]:
    """The per-bot summary shape of source document 000 (rates in 0..1, durations in ms)."""
    s = s or Stats()

    def ms(v: float | None) -> float:
        return float(v) if v is not None else 0.0

    return {
        "total_interactions": s.count,
        **s.outcomes(),
        "avg_duration_ms": ms(s.mean_ms),
        "p50_duration_ms": ms(s.p50),
        "p95_duration_ms": ms(s.p95),
        "p99_duration_ms": ms(s.p99),
        "max_duration_ms": ms(s.max_ms),
    }


class BotMetricsCollector:
    """Query object over bot interactions and handoffs; holds no state of its own."""

    def __init__(self, store: Store, known_bots: Sequence[str] = KNOWN_BOTS) -> None:
        self.store = store
        self.known_bots = tuple(known_bots)

    @staticmethod
    def _bounds(window_minutes: Window, now: datetime | None) -> tuple[datetime, datetime]:
        """A window given in minutes, or as "1h" / a timedelta (`observability.timeutil.Window`)."""
        end = resolve_now(now)
        return end - timedelta(minutes=_minutes(window_minutes)), end

    # ---- summaries ----------------------------------------------------------------------------
    def get_bot_summary(
        self, bot_type: str, window_minutes: Window = 60, *, now: datetime | None = None
    ) -> dict:
        """One bot: total interactions, success and error rate, average / P50 / P95 / P99 duration
        (ms), cache hits and hit rate over the window."""
        start, end = self._bounds(window_minutes, now)
        agg = aggregate(self.store, INTERACTIONS, start, end, filters={"bot": bot_type}, rollups=False)
        return {"bot": bot_type, "window_minutes": _minutes(window_minutes), **_summary(agg.one())}

    def get_system_summary(
        self, window_minutes: Window = 60, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """All bots plus handoffs in one call.

        {"bots": {bot: summary}, "overall": summary, "handoffs": handoff summary, "window_minutes",
        "generated_at"}. The known bots are always listed (zeros when idle); other bots appear when
        they have interactions in the window. The handoff summary counts blocked (circular)
        handoffs both in the window and in the last hour.
        """
        start, end = self._bounds(window_minutes, now)
        with self.store.connect() as conn:
            per_bot = aggregate(
                self.store, INTERACTIONS, start, end, group_by=("bot",), rollups=False, conn=conn
            )
            overall = aggregate(self.store, INTERACTIONS, start, end, rollups=False, conn=conn)
            handoffs = self._handoff_summary(conn, start, end)
        bots = {b: _summary(per_bot.groups.get((b,))) for b in self.known_bots}
        for (b,), s in sorted(per_bot.groups.items()):
            bots.setdefault(b, _summary(s))
        return {
            "bots": bots,
            "overall": _summary(overall.one()),
            "handoffs": handoffs,
            "window_minutes": _minutes(window_minutes),
            "generated_at": end,
        }

    def handoff_summary(self, window_minutes: Window = 60, *, now: datetime | None = None) -> dict[str, Any]:
        """Handoffs in the window: total (blocked ones included), attempted (not blocked),
        successes among the attempted, success and failure rate over the attempted (a blocked
        circular handoff neither succeeded nor failed: it did not happen), blocked ones and their
        share of all (`blocked_rate`), average and P95 duration (ms), blocked in the last hour."""
        start, end = self._bounds(window_minutes, now)
        with self.store.connect() as conn:
            return self._handoff_summary(conn, start, end)

    def _handoff_summary(self, conn: sa.Connection, start: datetime, end: datetime) -> dict[str, Any]:
        h = schema.handoffs
        hour_ago = end - timedelta(hours=1)
        lo = min(start, hour_ago)
        in_window = sa.and_(h.c.ts >= start, h.c.ts < end)
        blocked = h.c.blocked == sa.true()
        row = conn.execute(
            sa.select(
                count_if(in_window),
                count_if(sa.and_(in_window, h.c.success == sa.true(), sa.not_(blocked))),
                sa.func.sum(sa.case((in_window, h.c.duration_ms), else_=None)),
                count_if(sa.and_(in_window, blocked)),
                count_if(sa.and_(h.c.ts >= hour_ago, blocked)),
            ).where(h.c.ts >= lo, h.c.ts < end)
        ).one()
        total, ok, n_blocked = int(row[0] or 0), int(row[1] or 0), int(row[3] or 0)
        attempted = total - n_blocked
        p95 = self._duration_p95(conn, start, end) if total else None
        return {
            "total_handoffs": total,
            "attempted_handoffs": attempted,
            "successful_handoffs": ok,
            "success_rate": ok / attempted if attempted else 0.0,
            "failure_rate": 1 - ok / attempted if attempted else 0.0,
            "avg_duration_ms": float(row[2]) / total if total and row[2] is not None else 0.0,
            "p95_duration_ms": float(p95) if p95 is not None else 0.0,
            "blocked": n_blocked,
            "blocked_rate": n_blocked / total if total else 0.0,
            "blocked_last_hour": int(row[4] or 0),
        }

    def _duration_p95(self, conn: sa.Connection, start: datetime, end: datetime) -> float | None:
        h = schema.handoffs
        where = sa.and_(h.c.ts >= start, h.c.ts < end)
        return group_percentiles(self.store, conn, h, h.c.duration_ms, [], where, (0.95,)).get((), [None])[0]

    def handoff_matrix(
        self, window_minutes: Window = 1440, *, bots: Sequence[str] | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Source -> target pairs in the window: count (blocked included), successes and success
        rate among the handoffs not blocked (None when every one was blocked), blocked, average
        duration (ms); most frequent first. `bots` keeps the pairs with one of them on either side."""
        start, end = self._bounds(window_minutes, now)
        h = schema.handoffs
        where = [h.c.ts >= start, h.c.ts < end]
        if bots:
            where.append(sa.or_(h.c.source.in_(list(bots)), h.c.target.in_(list(bots))))
        stmt = (
            sa.select(
                h.c.source, h.c.target, sa.func.count(),
                count_if(sa.and_(h.c.success == sa.true(), h.c.blocked != sa.true())), count_true(h.c.blocked),
                sa.func.avg(h.c.duration_ms),
            )
            .where(*where)
            .group_by(h.c.source, h.c.target)
        )  # fmt: skip
        with self.store.connect() as conn:
            rows = conn.execute(stmt).all()
        out = [
            {"source": r[0], "target": r[1], "count": int(r[2]), "successes": int(r[3] or 0),
             "success_rate": (int(r[3] or 0) / (int(r[2]) - int(r[4] or 0))) if int(r[2]) > int(r[4] or 0) else None,
             "blocked": int(r[4] or 0),
             "avg_duration_ms": float(r[5] or 0.0)}
            for r in rows
        ]  # fmt: skip
        out.sort(key=lambda r: (-r["count"], r["source"], r["target"]))
        return out

    def interaction_timeseries(
        self, window_minutes: Window = 60, granularity: str = "minute", *, bots: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Per (bucket, bot): interactions, errors, error rate, cache hits and mean duration (ms).

        `granularity` is 'minute', 'hour' or 'day'; `bucket` is the bucket's start (naive UTC).
        Raw rows grouped in SQL (interactions have no rollups)."""
        start, end = self._bounds(window_minutes, now)
        agg = aggregate(self.store, INTERACTIONS, start, end, group_by=("bot",), granularity=granularity,
                        filters={"bot": list(bots)} if bots else None, percentiles=False)  # fmt: skip
        rows = []
        for (bucket, bot), s in sorted(agg.groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            rows.append({"bucket": bucket, "bot": bot, "interactions": s.count, "errors": s.errors,
                         "error_rate": s.error_rate, "cache_hits": s.cache_hits,
                         "mean_ms": s.mean_ms or 0.0})  # fmt: skip
        return rows

    # ---- alerting -----------------------------------------------------------------------------
    def last_response_at(self, bots: Sequence[str] | None = None) -> dict[str, datetime]:
        """The latest interaction time of each bot (index lookups; bots never seen are left out).

        Asked first over the last hour, then the last day, then all time: each bound only prunes
        day partitions (a row at or after it is the latest one overall), so a bot that responded
        recently costs one partition's index instead of a probe of every partition and the
        planning of all of them."""
        t = schema.bot_interactions
        out: dict[str, datetime] = {}
        now = resolve_now(None)
        with self.store.connect() as conn:
            for bot in bots if bots is not None else self.known_bots:
                for since in (now - timedelta(hours=1), now - timedelta(days=1), None):
                    q = sa.select(sa.func.max(t.c.ts)).where(t.c.bot == bot)
                    ts = conn.execute(q if since is None else q.where(t.c.ts >= since)).scalar()
                    if ts is not None:
                        out[bot] = as_datetime(ts)
                        break
        return out

    def alert_metrics(self, *, window_minutes: Window = 60, now: datetime | None = None) -> dict[str, float]:
        """Every metric value the alert rules evaluate, by name (pure: reads only).

        The 7 of source document 000 (`ALERT_METRIC_NAMES`: overall error and cache hit rate, P95
        response time of the lead, buyer and seller bot, handoff P95 and failure rate) over the
        window, plus: `blocked_handoffs_1h`, `handoff.success_rate`, `handoff.count`,
        `interactions`, `rate_limit_error_rate` (LLM calls whose error is a rate limit / 429, over
        the window), `interactions.rate_limit_error_rate`, and per bot `<bot>.error_rate`,
        `<bot>.cache_hit_rate`, `<bot>.interactions` and `<bot>.seconds_since_last_response`
        (left out for a bot that never responded).
        """
        now = resolve_now(now)
        start = now - timedelta(minutes=_minutes(window_minutes))
        system = self.get_system_summary(window_minutes, now=now)
        overall, handoffs = system["overall"], system["handoffs"]
        values: dict[str, float] = {
            "error_rate": float(overall["error_rate"]),
            "cache_hit_rate": float(overall["cache_hit_rate"]),
        }
        for bot in KNOWN_BOTS:
            values[f"{metric_prefix(bot)}.response_time_p95"] = float(
                system["bots"].get(bot, {}).get("p95_duration_ms", 0.0)
            )
        values["handoff.response_time_p95"] = float(handoffs["p95_duration_ms"])
        values["handoff.failure_rate"] = float(handoffs["failure_rate"])
        values["handoff.success_rate"] = (
            float(handoffs["success_rate"]) if handoffs["attempted_handoffs"] else 1.0
        )
        values["handoff.count"] = float(handoffs["attempted_handoffs"])  # what the failure rate is over
        values["handoff.blocked_rate"] = float(handoffs["blocked_rate"])
        values["blocked_handoffs_1h"] = float(handoffs["blocked_last_hour"])
        values["interactions"] = float(overall["total_interactions"])
        for bot, summary in system["bots"].items():
            p = metric_prefix(bot)
            values.setdefault(f"{p}.response_time_p95", float(summary["p95_duration_ms"]))
            values[f"{p}.error_rate"] = float(summary["error_rate"])
            values[f"{p}.cache_hit_rate"] = float(summary["cache_hit_rate"])
            values[f"{p}.interactions"] = float(summary["total_interactions"])
        for bot, ts in self.last_response_at(list(system["bots"])).items():
            values[f"{metric_prefix(bot)}.seconds_since_last_response"] = max((now - ts).total_seconds(), 0.0)
        values["rate_limit_error_rate"] = self._rate_limit_rate(schema.llm_calls, start, now)
        values["interactions.rate_limit_error_rate"] = self._rate_limit_rate(
            schema.bot_interactions, start, now
        )
        return values

    def _rate_limit_rate(self, table: sa.Table, start: datetime, end: datetime) -> float:
        stmt = sa.select(
            sa.func.count(),
            count_if(sa.and_(table.c.success == sa.false(), rate_limit_condition(table.c.error_type))),
        ).where(table.c.ts >= start, table.c.ts < end)
        with self.store.connect() as conn:
            n, limited = conn.execute(stmt).one()
        return int(limited or 0) / int(n) if n else 0.0

    def feed_to_alerting(self, alerting_service: Any, *, now: datetime | None = None) -> dict[str, float]:
        """Push the metric values into the alerting service and return them.

        With `alerting_service.update_metric(name, value)` (or the source document's
        `record_metric`) every value is pushed one by one; otherwise the whole dict goes to
        `alerting_service.check_and_send_alerts(stats)`. The 7 metrics of source document 000 come
        first, then the extra ones of `alert_metrics`.
        """
        values = self.alert_metrics(now=now)
        ordered = {k: values[k] for k in ALERT_METRIC_NAMES}
        ordered.update({k: v for k, v in values.items() if k not in ordered})
        push = getattr(alerting_service, "update_metric", None) or getattr(
            alerting_service, "record_metric", None
        )
        if callable(push):
            for name, value in ordered.items():
                push(name, value)
        else:
            alerting_service.check_and_send_alerts(ordered)
        log.debug("fed %d metrics to the alerting service", len(ordered))
        return ordered
