"""The way from a record call to the store: a bounded queue, a flushing daemon thread, retries with
backoff, and a local spool for the time the sink is down.

`put` is the only part on the caller's thread: an append to a deque, no I/O, no lock. When the
deque is full the event is dropped and counted (one log line per burst). The thread closes a batch
on size or interval, whichever first, and writes it to the sink. A failing sink is retried with
backoff; after that batches go to the spool while a probe checks now and then (once a second)
whether the sink is back, and then the spool is replayed. Every event carries an id, so a batch
delivered twice is stored once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from observability import telemetry
from observability.sdk.sinks import PartiallyRejected, RedisSink, StoreSink
from observability.sdk.spool import Spool
from observability.settings import Settings

# said once an outage: where the batch path and the spool replay first find the sink down
SINK_DOWN = "observability sink unavailable, spooling batches until it is back: %s"
log = logging.getLogger("observability.sdk")

OPEN_GRACE_S = 0.03  # a batch waits this long for a sink still opening, then goes to the spool
CLOSE_STUCK_S = 0.5  # close() stops waiting for a write that has not returned within this long


class Transport:
    """Queue, flush thread, sink, retries and spool of one client."""

    def __init__(self, settings: Settings, redis: Any | None) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.counts = {"written": 0, "spilled": 0, "replayed": 0, "dropped": 0, "rejected": 0}
        self._taken = 0  # events the flush thread has taken off the queue (queued = taken + pending)
        self._sink: StoreSink | RedisSink = (
            RedisSink(settings, redis) if redis is not None else StoreSink(settings)
        )
        self._dq: deque = deque()
        self._max = settings.sdk_queue_size
        self._batch = settings.sdk_batch_size
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._closing = False  # close() has begun: a failed write is spooled at once, not retried
        self._closing_now = threading.Event()  # cuts a retry backoff short when close() begins
        self._closed = False
        self._first = True  # the first event wakes the flush thread at once
        self._inflight = 0
        self._sending: list | None = None  # the batch the flush thread is delivering now
        self._sending_since = 0.0
        self._dropping = False
        self._sink_down_until = 0.0
        self._sink_down = False  # set when retries gave up; then one probe a second, not a retry burst
        self._thread = threading.Thread(target=self._run, name="observability-flush", daemon=True)
        self._thread.start()
        # the store sink imports SQLAlchemy and opens the store meanwhile (batches are spooled until
        # then, so the first events are on disk within OPEN_GRACE_S); the flush thread then replays
        self._sink.open_async(self._wake.set)

    # ------------------------------------------------------------------ the caller's thread
    def put(self, event: list) -> None:
        dq = self._dq
        if len(dq) >= self._max:
            self.counts["dropped"] += 1
            if not self._dropping:
                self._dropping = True
                log.warning("observability queue full (%d events): dropping new events", self._max)
            return
        dq.append(event)
        if (len(dq) >= self._batch or self._first) and not self._wake.is_set():
            self._first = False
            self._wake.set()

    def stats(self) -> dict:
        """Counters so far, with `queued` (every event ever accepted) and `pending` (queued now)."""
        pending = len(self._dq)
        return {"queued": self._taken + pending, **self.counts, "pending": pending}

    # ------------------------------------------------------------------ the flush thread
    def _run(self) -> None:
        interval = self.settings.sdk_flush_interval_s
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._drain()
                self._replay_spool()
            except Exception:  # noqa: BLE001 - the flush thread must outlive any bug
                log.exception("observability flush failed; will retry")
                time.sleep(min(interval, 1.0))
            with self._cond:
                self._cond.notify_all()
            if self._closed and not self._dq:
                return

    def _drain(self) -> None:
        dq = self._dq
        while dq:
            batch = []
            with self._cond:
                self._inflight += 1
            try:
                # while the sink is down every batch goes to the spool: write bigger files, since
                # each costs an fsync, so that spilling keeps up with a busy bot
                size = self._batch * 20 if self._sink_down else self._batch
                for _ in range(min(size, len(dq))):
                    batch.append(dq.popleft())
                self._taken += len(batch)
                if self._dropping and len(dq) < self._max // 2:
                    self._dropping = False
                self._sending, self._sending_since = batch, time.monotonic()
                self._send(batch)
            finally:
                self._sending = None
                with self._cond:
                    self._inflight -= 1

    def _send(self, batch: list) -> None:
        """Deliver a batch, or spill it at once while the sink is down or still opening.

        A delivery is traced and counted (OpenTelemetry, a no-op without it) when it reaches the
        sink, here or later from the spool, so a batch spooled at start-up is counted once, when
        it is replayed, and never while it only sits on disk."""
        if time.monotonic() < self._sink_down_until or not self._sink.ready.wait(OPEN_GRACE_S):
            self._spill(batch)
            return
        if not telemetry.enabled():
            self._send_batch(batch)
            return
        spilled, dropped = self.counts["spilled"], self.counts["dropped"]
        with telemetry.optional_span("observability.sdk", "flush", **{"obs.batch_size": len(batch)}) as span:
            self._send_batch(batch)
            if self.counts["spilled"] > spilled or self.counts["dropped"] > dropped:
                span.mark_failed("spooled")
            else:
                telemetry.count_events(batch)

    def _send_batch(self, batch: list) -> None:
        """Deliver with retries; when they are used up, spill to the spool."""
        delay = self.settings.sdk_retry_backoff_s
        retries = 0 if self._sink_down else self.settings.sdk_max_retries  # a known-down sink: one probe
        for attempt in range(retries + 1):
            try:
                self._sink.write(batch)
                self.counts["written"] += len(batch)
                self._sink_back()
                return
            except PartiallyRejected as exc:
                self.counts["written"] += len(batch) - exc.count
                self.counts["rejected"] += exc.count
                self._sink_back()
                return
            except Exception as exc:  # noqa: BLE001
                if attempt == retries or self._closing:  # closing: spool now, do not wait out retries
                    if not self._sink_down:
                        log.warning(SINK_DOWN, exc)
                    break
                self._closing_now.wait(delay)
                delay *= 2
        self._sink_down = True
        self._sink_down_until = time.monotonic() + 1.0
        self._spill(batch)

    def _sink_back(self) -> None:
        if self._sink_down:
            self._sink_down = False
            log.info("observability sink available again")

    def _spill(self, batch: list) -> None:
        # loaded on the flush thread at the first spill: a bot whose sink is up never pays for it
        from observability.redaction import redact_batch

        try:
            self.spool.spill(redact_batch(batch, self.settings))  # the disk holds only redacted text
            self.counts["spilled"] += len(batch)
        except Exception as exc:  # noqa: BLE001 - a full disk or an unserialisable event
            self.counts["dropped"] += len(batch)
            log.error("cannot spool %d events (dropped): %s", len(batch), exc)

    def _replay_spool(self) -> None:
        # counted as in flight before looking at the spool, so that flush() never sees a file
        # that is claimed (renamed) but not yet sent as "nothing pending, nothing in flight"
        with self._cond:
            self._inflight += 1
        try:
            if (
                self._sink.ready.is_set()
                and not self._closing
                and time.monotonic() >= self._sink_down_until
                and self.spool.has_pending()
            ):
                self._replay_pending()
        finally:
            with self._cond:
                self._inflight -= 1

    def _replay_pending(self) -> None:
        self.spool.recover_claims()

        def write(batch: list) -> None:
            try:
                self._sink.write(batch)
            except PartiallyRejected as exc:
                self.counts["rejected"] += exc.count
                self.counts["replayed"] += len(batch) - exc.count
                return
            self.counts["replayed"] += len(batch)

        def send(batch: list) -> None:
            if not telemetry.enabled():
                write(batch)
                return
            attributes = {"obs.batch_size": len(batch), "obs.replayed": True}
            with telemetry.optional_span("observability.sdk", "flush", **attributes):
                write(batch)  # a failure is recorded on the span and re-raised: the file stays
            telemetry.count_events(batch)

        try:
            # a few files at a time, so new events keep flowing while a long backlog is replayed
            self.spool.replay(send, limit=20)
            self._sink_back()
            if self.spool.has_pending():
                self._wake.set()
        except Exception as exc:  # noqa: BLE001
            if not self._sink_down:  # said once an outage (a store not migrated yet: what to run)
                log.warning(SINK_DOWN, exc)
            else:  # probed every second while it lasts
                log.debug("spool replay paused, sink still unavailable: %s", exc)
            self._sink_down = True
            self._sink_down_until = time.monotonic() + 1.0

    # ------------------------------------------------------------------ flush and close
    def flush(self, timeout: float = 10.0, *, closing: bool = False) -> bool:
        """Wait until everything queued is in the store or stream (spool included). Never raises.

        `closing`: also stop waiting once everything is at least in the spool while the sink is
        down, or when a write has hung for CLOSE_STUCK_S (close() then spools a copy of it)."""
        deadline = time.monotonic() + timeout
        while True:
            # order matters: the queue, then what is in flight, then the spool (see _replay_spool)
            if not self._dq and self._inflight == 0:
                if not self.spool.has_pending():
                    return True
                if closing and self._sink_down:
                    return False  # every event is on disk; the sink is not back
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._thread.is_alive():
                return False
            if (
                closing
                and self._sending is not None
                and time.monotonic() - self._sending_since > CLOSE_STUCK_S
            ):
                return False
            if not closing and self._sink_down_until and time.monotonic() >= self._sink_down_until - 0.8:
                self._sink_down_until = 0.0  # probe again now: a flush is waiting
            self._wake.set()
            with self._cond:
                self._cond.wait(min(remaining, 0.05 if closing else 0.2))

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the flush thread. When the sink is down, what is left goes
        to the spool at once (no retries), so close() returns within about a second."""
        self._closing = True
        self._closing_now.set()
        self.flush(timeout, closing=True)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=min(timeout, 0.3))
        sending = self._sending
        if self._thread.is_alive() and sending:
            # the flush thread is stuck delivering (a hanging connect): keep a copy of its batch on
            # disk before the process exits; ids make a second delivery harmless
            self._spill(list(sending))
        if self._dq:  # the sink never came back: keep the rest on disk
            rest = []
            while self._dq:
                rest.append(self._dq.popleft())
            self._taken += len(rest)
            self._spill(rest)
        self._sink.close()
