"""The worker: `python -m observability.worker [--once]`.

Every worker drains the Redis ingest stream (when Redis is configured). Exactly one worker, the
leader (`leader.py`), runs the leader-only steps of `steps.STEPS` (rollups, alerts, ...); every
worker runs the others (heartbeat, the Redis mirror of gates). Between ticks the worker blocks on
the stream for new entries, so events are stored as soon as they arrive.

A failing step is logged and the others still run; the next tick tries it again. On SIGTERM or
SIGINT the worker drains what is left in the stream, releases the lead, and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import redaction, redis_client, telemetry
from observability.outages import OutageLog, one_line
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.store.stream import StreamConsumer
from observability.timeutil import utcnow
from observability.worker import server
from observability.worker.leader import LeaderLock
from observability.worker.steps import STEPS, Step, TickContext

log = logging.getLogger("observability.worker")

MAX_BLOCK_S = 1.0  # longest blocking stream read between ticks (so a stop is noticed within it)


class Worker:
    """One worker process's loop: drain the stream, tick the steps, keep or take the lead."""

    def __init__(
        self,
        store: Store | None = None,
        settings: Settings | None = None,
        *,
        redis: Any | None = None,
        worker_id: str | None = None,
        steps: list[Step] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.store = store or Store.from_url(self.settings.database_url)
        self.redis = (
            redis if redis is not None else redis_client.connect(self.settings, blocking_s=MAX_BLOCK_S)
        )
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.steps = STEPS if steps is None else steps
        self.outages = OutageLog(log)  # during an outage: one line per failure kind per minute
        self.lock = LeaderLock(self.store, self.settings, outages=self.outages)
        self.consumer = (
            StreamConsumer(self.store, self.redis, self.settings, self.worker_id)
            if self.redis is not None
            else None
        )
        self.state: dict = {"ingested_total": 0}
        self.leading = False  # as of the last tick (a change is logged)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def drain(self, block_ms: int = 0, until_empty: bool = True) -> int:
        """Move stream entries into the store; returns events stored."""
        if self.consumer is None:
            return 0
        try:
            stored = self._drain(block_ms, until_empty)
        except Exception as exc:
            self.outages.failure("ingest", "ingest drain failed (entries stay pending in the stream)", exc)
            raise
        self.outages.recovered("ingest", "ingest drain")
        return stored

    def _drain(self, block_ms: int, until_empty: bool) -> int:
        total = 0
        while True:
            n = self.consumer.drain_once(block_ms=block_ms)
            total += n
            self.state["ingested_total"] += n  # as each batch commits: the heartbeat never lags the store
            if self.consumer.last_entries == 0 or not until_empty or self._stop.is_set():
                break
            block_ms = 0
        return total

    def tick(self, now: datetime | None = None) -> dict[str, str]:
        """One full tick: drain, then every step this worker may run. Returns step outcomes."""
        started = time.perf_counter()
        outcomes: dict[str, str] = {}
        try:
            self.drain()
        except Exception as exc:  # noqa: BLE001 - logged by drain(), rate-limited
            outcomes["ingest"] = f"error: {exc}"
        if self.consumer is not None:
            try:  # streams of another INGEST_STREAM_SHARDS layout that still hold entries
                self.state["ingested_total"] += self.consumer.sweep()
            except Exception as exc:  # noqa: BLE001 - Redis or the store down: the drain said so
                outcomes.setdefault("ingest", f"error: {exc}")
            self.state["stream_pending"] = self.consumer.pending_count()
        leader = self.lock.try_acquire()
        if leader != self.leading:
            if leader:
                log.info("worker %s now leads (took the leader lock)", self.worker_id)
            else:
                log.warning("worker %s no longer leads (lost the leader lock)", self.worker_id)
            self.leading = leader
        ctx = TickContext(self.store, self.settings, self.redis, self.worker_id, leader,
                          now or utcnow(), self.state)  # fmt: skip
        failed: dict[str, list[tuple[str, Exception]]] = {}  # exception type -> the steps it stopped
        for step in self.steps:
            if (step.leader_only and not leader) or (
                step.monitoring and not self.settings.monitoring_enabled
            ):
                continue
            try:
                with telemetry.optional_span("observability.worker", step.name):
                    step.run(ctx)
                outcomes[step.name] = "ok"
            except Exception as exc:  # noqa: BLE001
                failed.setdefault(type(exc).__name__, []).append((step.name, exc))
                outcomes[step.name] = f"error: {exc}"
        self._log_steps(failed)
        self.state["last_tick_ms"] = (time.perf_counter() - started) * 1000
        return outcomes

    def _log_steps(self, failed: dict[str, list[tuple[str, Exception]]]) -> None:
        """One rate-limited line per kind of step failure (the exception type), naming the steps:
        a store outage stops every step, and that is one line a minute, not one traceback each."""
        for kind in [k for k in self.outages.failing() if k.startswith("steps ") and k[6:] not in failed]:
            self.outages.recovered(kind, f"worker steps failing with {kind[6:]}")
        for type_name, items in failed.items():
            names = ", ".join(name for name, _ in items)
            self.outages.failure(f"steps {type_name}", f"worker steps failed ({names})", items[0][1])

    def run_forever(self) -> None:
        next_tick = 0.0
        log.info("worker %s started (tick %.1fs)", self.worker_id, self.settings.worker_tick_s)
        if not self.settings.monitoring_enabled:
            log.warning("monitoring is off (MONITORING_ENABLED=false): no system load readings, alert "
                        "evaluation or escalation; events are still stored")  # fmt: skip
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.settings.worker_tick_s
                continue
            wait_ms = int(min(MAX_BLOCK_S, next_tick - now) * 1000)
            if self.consumer is not None:
                try:
                    self.drain(block_ms=max(wait_ms, 1), until_empty=False)
                except Exception:  # noqa: BLE001 - logged by drain(), rate-limited
                    self._stop.wait(1.0)
            else:
                self._stop.wait(wait_ms / 1000)
        try:  # drain what is left before exiting
            self.drain()
        except Exception as exc:  # noqa: BLE001
            log.warning("final drain failed (entries stay pending for the next worker): %s", one_line(exc))
        self.close()
        log.info("worker %s stopped", self.worker_id)

    def close(self) -> None:
        was_leader = self.lock.held
        self.lock.release()
        if was_leader:  # so the heartbeat table does not show a stopped worker as leader
            log.info("worker %s no longer leads (released the leader lock on stopping)", self.worker_id)
            self.leading = False
            hb = schema.worker_heartbeats
            try:
                with self.store.begin() as conn:
                    conn.execute(
                        sa.update(hb).where(hb.c.worker_id == self.worker_id).values(is_leader=False)
                    )
            except Exception as exc:  # noqa: BLE001
                log.warning("could not clear the leader flag of %s: %s", self.worker_id, exc)


def tune_gc() -> None:
    """The cycle collector for a long-running worker: what is loaded by now (modules, the schema,
    the HTTP app) lives as long as the process, so it leaves the collector's generations and a full
    collection walks only what came after (the OTLP receiver's memory of recent traces); and the
    young generation is collected every 10,000 allocations instead of 700, so full collections come
    about ten times less often. Under OTLP load, about a quarter of the collector's time remains."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.worker", description=__doc__)
    parser.add_argument("--once", action="store_true", help="run one full tick and exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    redaction.install_secret_filter(settings)  # no secret in a log line, whoever logs it
    store = Store.from_url(settings.database_url)
    store.migrate()
    worker = Worker(store, settings)
    if args.once:
        outcomes = worker.tick()
        worker.close()
        for name, outcome in outcomes.items():
            log.info("step %s: %s", name, outcome)
        return 0

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: draining and stopping", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    http = server.start(worker)
    otel_shutdown = telemetry.configure(settings)
    tune_gc()
    try:
        worker.run_forever()
    finally:
        if http is not None:
            http.stop()
        if otel_shutdown is not None:
            otel_shutdown()
    return 0
