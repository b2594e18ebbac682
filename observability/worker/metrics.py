"""`GET /metrics`: the Prometheus view of the store, read on every scrape.

`StoreCollector` is a prometheus_client collector over the store (and Redis, and the OTLP
receiver's counters); `render` answers a scrape in the text format, or OpenMetrics when the scraper
asks for it, gzip-compressed when it accepts that. Metric names are a public interface: the shipped
Grafana dashboard (`deploy/grafana/`) and users' alerts query them.
"""

from __future__ import annotations

import gzip
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from observability import redis_client
from observability.analytics import catalog, monitoring, sla
from observability.outages import OutageLog
from observability.settings import Settings
from observability.store import Store, retention, schema
from observability.store.sqlhelpers import as_datetime
from observability.store.stream import StreamConsumer
from observability.timeutil import utcnow
from observability.worker.health import live_leader, max_worker_lag_s
from observability.worker.receiver import OTLPReceiver
from observability.worker.response import Response

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
ALERT_SEVERITIES = ("info", "warning", "critical")
WORKERS_SHOWN_FOR = timedelta(hours=1)
NONE = sa.literal_column("''")
# catalog metric -> its key in monitoring.live_metrics (source document 004's live figures)
LIVE_FIGURES = {
    "active_conversations": "conversations_active",
    "ai_confidence_avg": "ai_confidence_avg",
    "safety_score_avg": "safety_score_avg",
    "system_load": "system_load",
    "human_interventions_today": "human_interventions",
}


class StoreCollector:
    """A prometheus_client collector that reads the store on every scrape.

    - Counters (`obs_bot_operations_total`, `obs_llm_requests_total`, `obs_llm_cost_usd_total`,
      `obs_llm_tokens_total`, errors...) are sums of the per-hour rollups plus what retention purged
      from them, so they never go down; they advance when the rollup step runs (every tick).
    - Latency histograms (`obs_bot_operation_duration_seconds`, `obs_bot_response_duration_seconds`,
      `obs_llm_latency_seconds`) are gauge histograms of the raw rows of the last
      `METRICS_WINDOW_S` seconds (default 300): query them with `histogram_quantile` directly,
      without `rate()`.
    - Gauges: open alerts by severity and state, age of the newest row per event table (ingest
      lag), worker heartbeat ages, rollup backlog, and with Redis the ingest stream's length and
      pending entries. `obs_store_up` is 0 (and the store-backed families absent) when the store
      cannot be read.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        redis: Any = None,
        consumer: Any = None,
        receiver: OTLPReceiver | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.redis = redis
        self.consumer = consumer
        if consumer is None and redis is not None:
            self.consumer = StreamConsumer(store, redis, settings, "metrics")
        self.receiver = receiver
        self.now = now
        self.outages = OutageLog(log)  # a scrape every few seconds during an outage: one line a minute

    def describe(self) -> list:
        return []  # nothing fixed; avoids a store query when the collector is registered

    def collect(self) -> Iterator[Any]:
        started = time.perf_counter()
        now = self.now()
        up = GaugeMetricFamily("obs_store_up", "1 when the SQL store answered this scrape")
        try:
            with self.store.connect() as conn:
                families = list(self._store_families(conn, now))
            up.add_metric([], 1)
            self.outages.recovered("store", "metrics: store")
        except Exception as exc:  # noqa: BLE001 - a scrape still answers when the store is down
            self.outages.failure("store", "metrics: store unavailable", exc)
            families = []
            up.add_metric([], 0)
        yield up
        yield from families
        yield from self._redis_families()
        yield from self._receiver_families()
        took = GaugeMetricFamily("obs_scrape_duration_seconds", "Time this scrape spent reading the store")
        took.add_metric([], time.perf_counter() - started)
        yield took

    # -- store-backed families
    def _store_families(self, conn: sa.Connection, now: datetime) -> Iterator[Any]:
        yield from self._counters(conn)
        since = now - timedelta(seconds=self.settings.metrics_window_s)
        yield self._histogram(conn, schema.bot_operations, ("bot", "operation"), "duration_ms", since,
                              "obs_bot_operation_duration_seconds",
                              "Bot operation durations in the last METRICS_WINDOW_S seconds (gauge histogram)")  # fmt: skip
        yield self._histogram(conn, schema.bot_interactions, ("bot",), "duration_ms", since,
                              "obs_bot_response_duration_seconds",
                              "Bot response durations in the last METRICS_WINDOW_S seconds (gauge histogram)")  # fmt: skip
        yield self._histogram(conn, schema.llm_calls, ("bot", "model"), "latency_ms", since,
                              "obs_llm_latency_seconds",
                              "LLM call latencies in the last METRICS_WINDOW_S seconds (gauge histogram)")  # fmt: skip
        window = GaugeMetricFamily("obs_metrics_window_seconds", "Window of the latency gauge histograms")
        window.add_metric([], self.settings.metrics_window_s)
        yield window
        yield self._alerts(conn)
        yield from self._sla(now)
        yield from self._live(now)
        yield from self._lag(conn, now)

    def _live(self, now: datetime) -> Iterator[Any]:
        """The live figures of source document 004, from `monitoring.live_metrics` (what the Live
        monitoring page shows), named and described by the metric catalog. A figure with no data
        (no ai_confidence recorded in the last hour, say) has no sample, rather than a made-up 0."""
        live = monitoring.live_metrics(self.store, now)
        for name, key in LIVE_FIGURES.items():
            m = catalog.get(name)
            fam = GaugeMetricFamily(m.prometheus, m.describe())
            if live.get(key) is not None:
                fam.add_metric([], float(live[key]))
            yield fam

    def _sla(self, now: datetime) -> Iterator[Any]:
        """The SLA evaluation of the alert window (`analytics.sla`, what `sla_violation` and the
        console read): P95 / target per bot and operation, and 1 for a pair above any target."""
        window = max(int(self.settings.alert_metric_window_s), 1)
        ev = sla.evaluate(self.store, window, now=now)
        ratio = GaugeMetricFamily("obs_sla_p95_ratio", catalog.get("sla_p95_ratio").describe(f"last {window} s"),
                                  labels=["bot", "operation"])  # fmt: skip
        breach = GaugeMetricFamily("obs_sla_breach", "1 when a bot operation's P50, P95 or P99 is above its SLA "
                                   f"target over the last {window} s", labels=["bot", "operation"])  # fmt: skip
        for r in ev.measured:
            if r.p95_ratio is not None:
                ratio.add_metric([r.bot, r.operation], r.p95_ratio)
            breach.add_metric([r.bot, r.operation], 1.0 if r.breaches else 0.0)
        yield ratio
        yield breach

    def _counters(self, conn: sa.Connection) -> Iterator[Any]:
        offsets = retention.purged_offsets(self.store, conn)
        ops: dict[tuple, list[float]] = {}
        h = schema.rollup_ops_hour
        for r in conn.execute(
            sa.select(h.c.bot, h.c.operation, sa.func.sum(h.c.count), sa.func.sum(h.c.errors),
                      sa.func.sum(h.c.cache_hits), sa.func.sum(h.c.sum_ms))
            .group_by(h.c.bot, h.c.operation)
        ):  # fmt: skip
            ops[(r[0] or "", r[1] or "")] = [float(x or 0) for x in r[2:]]
        for k, v in offsets.get("rollup_ops_hour", {}).items():
            acc = ops.setdefault(k, [0.0] * len(v))
            ops[k] = [a + b for a, b in zip(acc, v, strict=True)]
        labels = ["bot", "operation"]
        total = CounterMetricFamily("obs_bot_operations", "Bot operations tracked (rolled up)", labels=labels)
        errors = CounterMetricFamily("obs_bot_operation_errors", "Bot operations that failed", labels=labels)
        hits = CounterMetricFamily(
            "obs_bot_operation_cache_hits", "Bot operations served from cache", labels=labels
        )
        for k, v in sorted(ops.items()):
            total.add_metric(list(k), v[0])
            errors.add_metric(list(k), v[1])
            hits.add_metric(list(k), v[2])
        yield from (total, errors, hits)

        llm: dict[tuple, list[float]] = {}
        h = schema.rollup_llm_hour
        sums = retention.PURGED_SUMS["rollup_llm_hour"][1]
        for r in conn.execute(
            sa.select(h.c.bot, h.c.model, h.c.provider, *[sa.func.sum(h.c[c]) for c in sums]).group_by(
                h.c.bot, h.c.model, h.c.provider
            )
        ):
            llm[(r[0] or "", r[1] or "", r[2] or "")] = [float(x or 0) for x in r[3:]]
        for k, v in offsets.get("rollup_llm_hour", {}).items():
            acc = llm.setdefault(k, [0.0] * len(v))
            llm[k] = [a + b for a, b in zip(acc, v, strict=True)]
        labels = ["bot", "model", "provider"]
        fams = {
            "count": CounterMetricFamily("obs_llm_requests", "LLM calls (rolled up)", labels=labels),
            "errors": CounterMetricFamily("obs_llm_errors", "LLM calls that failed", labels=labels),
            "cost_usd": CounterMetricFamily("obs_llm_cost_usd", "Cost of LLM calls in USD", labels=labels),
            "cost_saved_usd": CounterMetricFamily(
                "obs_llm_cache_savings_usd", "USD saved by prompt and response caching", labels=labels
            ),
        }
        tokens = CounterMetricFamily("obs_llm_tokens", "LLM tokens by type (input includes cached)",
                                     labels=[*labels, "type"])  # fmt: skip
        token_cols = {"input_tokens": "input", "output_tokens": "output", "cache_read_tokens": "cache_read",
                      "cache_write_tokens": "cache_write"}  # fmt: skip
        for k, v in sorted(llm.items()):
            by = dict(zip(sums, v, strict=True))
            for col, fam in fams.items():
                fam.add_metric(list(k), by[col])
            for col, t in token_cols.items():
                tokens.add_metric([*k, t], by[col])
        yield from fams.values()
        yield tokens

    def _histogram(
        self,
        conn: sa.Connection,
        table: sa.Table,
        label_cols: tuple[str, ...],
        value_col: str,
        since: datetime,
        name: str,
        doc: str,
    ) -> Any:
        v = table.c[value_col]
        cols = [sa.func.coalesce(table.c[c], NONE) for c in label_cols]
        aggs = [sa.func.count(), sa.func.sum(v)]
        aggs += [sa.func.sum(sa.case((v <= b * 1000.0, 1), else_=0)) for b in LATENCY_BUCKETS_S]
        positions = [sa.literal_column(str(i + 1)) for i in range(len(cols))]
        rows = conn.execute(sa.select(*cols, *aggs).where(table.c.ts >= since).group_by(*positions)).all()
        fam = GaugeHistogramMetricFamily(name, doc, labels=list(label_cols))
        n = len(label_cols)
        for r in rows:
            count, total_ms = int(r[n]), float(r[n + 1] or 0.0)
            buckets = [
                (repr(float(b)), float(c or 0)) for b, c in zip(LATENCY_BUCKETS_S, r[n + 2 :], strict=True)
            ]
            buckets.append(("+Inf", float(count)))
            fam.add_metric([str(x) for x in r[:n]], buckets, gsum_value=total_ms / 1000.0)
        return fam

    def _alerts(self, conn: sa.Connection) -> Any:
        a = schema.alerts
        counts = {(s, st): 0 for s in ALERT_SEVERITIES for st in ("firing", "acknowledged")}
        for sev, state, n in conn.execute(
            sa.select(a.c.severity, a.c.state, sa.func.count()).where(a.c.state != "resolved")
            .group_by(a.c.severity, a.c.state)
        ):  # fmt: skip
            counts[(sev, state)] = int(n)
        fam = GaugeMetricFamily("obs_alerts_open", "Alerts not resolved, by severity and state",
                                labels=["severity", "state"])  # fmt: skip
        for (sev, state), n in sorted(counts.items()):
            fam.add_metric([sev, state], n)
        return fam

    def _lag(self, conn: sa.Connection, now: datetime) -> Iterator[Any]:
        newest = GaugeMetricFamily("obs_ingest_newest_event_age_seconds",
                                   "Seconds since the newest stored event of each table (ingest lag)",
                                   labels=["table"])  # fmt: skip
        for t in schema.RAW_EVENT_TABLES:
            ts = as_datetime(conn.execute(sa.select(sa.func.max(t.c.ts))).scalar())
            if ts is not None:
                newest.add_metric([t.name], max(0.0, (now - ts).total_seconds()))
        yield newest
        hb = schema.worker_heartbeats
        rows = conn.execute(
            sa.select(hb.c.worker_id, hb.c.is_leader, hb.c.last_tick_at, hb.c.last_tick_ms).where(
                hb.c.last_tick_at >= now - WORKERS_SHOWN_FOR
            )
        ).all()
        age = GaugeMetricFamily("obs_worker_heartbeat_age_seconds", "Seconds since each worker's last tick",
                                labels=["worker_id", "leader"])  # fmt: skip
        tick = GaugeMetricFamily("obs_worker_tick_duration_seconds", "Duration of each worker's last tick",
                                 labels=["worker_id"])  # fmt: skip
        leader_age = None
        # only the live leader is labelled leader="true" (a leader killed with -9 keeps its flag)
        live = live_leader([(w, bool(lead), as_datetime(t)) for w, lead, t, _ in rows], now,
                           max_worker_lag_s(self.settings))  # fmt: skip
        for wid, is_leader, last, ms in rows:
            a = max(0.0, (now - as_datetime(last)).total_seconds())
            age.add_metric([wid, "true" if wid == live else "false"], a)
            if ms is not None:
                tick.add_metric([wid], float(ms) / 1000.0)
            if is_leader:
                leader_age = a if leader_age is None else min(leader_age, a)
        yield age
        yield tick
        lead = GaugeMetricFamily("obs_leader_heartbeat_age_seconds",
                                 "Seconds since the leading worker's last tick (+Inf: no leader in the last hour)")  # fmt: skip
        lead.add_metric([], math.inf if leader_age is None else leader_age)
        yield lead
        d = schema.rollup_dirty
        dirty = GaugeMetricFamily("obs_rollup_backlog_minutes", "Minutes waiting to be rolled up")
        dirty.add_metric([], float(conn.execute(sa.select(sa.func.count()).select_from(d)).scalar() or 0))
        yield dirty

    # -- Redis and the receiver
    def _redis_families(self) -> Iterator[Any]:
        if self.redis is None:
            return
        up = GaugeMetricFamily("obs_redis_up", "1 when Redis answered this scrape")
        try:
            self.redis.ping()
            up.add_metric([], 1)
            self.outages.recovered("redis", "metrics: Redis")
        except Exception as exc:  # noqa: BLE001
            self.outages.failure("redis", "metrics: Redis unavailable", exc)
            up.add_metric([], 0)
            yield up
            return
        yield up
        durable = GaugeMetricFamily("obs_redis_persistent", "1 when Redis keeps the ingest stream across a "
                                    "restart (appendonly yes), 0 when it does not, absent when it will not say")  # fmt: skip
        try:
            p = redis_client.persistence(self.redis)
            if p.durable is not None:
                durable.add_metric([], 1 if p.durable else 0)
        except Exception as exc:  # noqa: BLE001
            self.outages.failure("redis persistence", "metrics: cannot read Redis persistence", exc)
        yield durable
        depth = GaugeMetricFamily("obs_ingest_queue_depth", "Ingest stream entries: in the stream, "
                                  "and delivered to a worker but not yet stored", labels=["state"])  # fmt: skip
        length = self.consumer.stream_length()
        if length is not None:
            depth.add_metric(["stream"], length)
        pending = self.consumer.pending_count()
        if pending is not None:
            depth.add_metric(["pending"], pending)
        yield depth
        if len(self.consumer.keys) > 1:  # INGEST_STREAM_SHARDS: the length of each (the above sums them)
            shards = GaugeMetricFamily("obs_ingest_stream_length", "Entries in each ingest stream (shard)",
                                       labels=["stream"])  # fmt: skip
            try:
                for key, n in self.consumer.shard_depths():
                    shards.add_metric([key], n)
            except Exception as exc:  # noqa: BLE001
                self.outages.failure("redis", "metrics: Redis unavailable", exc)
            yield shards

    def _receiver_families(self) -> Iterator[Any]:
        if self.receiver is None:
            return
        requests, spans = self.receiver.counts()
        req = CounterMetricFamily("obs_otlp_requests", "OTLP export requests by HTTP status", labels=["code"])
        for code, n in sorted(requests.items()):
            req.add_metric([code], n)
        sp = CounterMetricFamily("obs_otlp_spans", "OTLP spans: received, stored as LLM calls (llm), "
                                 "ignored (not GenAI model calls), rejected", labels=["outcome"])  # fmt: skip
        for outcome in ("received", "llm", "ignored", "rejected"):
            sp.add_metric([outcome], spans.get(outcome, 0))
        yield req
        yield sp
        by_scope = self.receiver.scope_counts()
        sc = CounterMetricFamily("obs_otlp_scope_spans", "OTLP spans per instrumentation scope: received, stored, "
                                 "merged (another span of the same call was stored), ignored, rejected",
                                 labels=["scope", "outcome"])  # fmt: skip
        ig = CounterMetricFamily("obs_otlp_ignored_spans", "OTLP spans ignored, per instrumentation scope and "
                                 "reason (not_genai, not_a_call, no_model, agent_aggregate)",
                                 labels=["scope", "reason"])  # fmt: skip
        for (scope, outcome), n in sorted(by_scope.items()):
            if outcome.startswith("ignored:"):
                ig.add_metric([scope, outcome[8:]], n)
            else:
                sc.add_metric([scope, outcome], n)
        yield sc
        yield ig
        pool = self.receiver.decoders
        where = CounterMetricFamily("obs_otlp_decoded_requests", "OTLP export requests by where their body was "
                                    "read: in a decoder process (OTLP_DECODE_PROCESSES) or in the receiver",
                                    labels=["where"])  # fmt: skip
        for place in ("decoder", "receiver"):
            where.add_metric([place], pool.decoded[place])
        yield where
        yield GaugeMetricFamily("obs_otlp_decoder_processes", "OTLP decoder processes running now",
                                value=len(pool.pids()))  # fmt: skip
        yield CounterMetricFamily("obs_otlp_decoder_restarts", "OTLP decoder processes started again after one "
                                  "died or stopped answering (its request was read in the receiver)",
                                  value=pool.restarts)  # fmt: skip


def render(registry: Any, accept: str | None, accept_encoding: str | None) -> Response:
    """A scrape of `registry` in the format the scraper accepts (text or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(registry)
    headers = {}
    if "gzip" in (accept_encoding or "") and len(body) > 1024:
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return Response(200, body, content_type, headers)
