"""The worker's side of the Redis ingest stream.

Entries are read with a consumer group (`XREADGROUP`), written to the store in one transaction,
and only then acknowledged (`XACK`) and deleted. An entry whose worker died before its ack stays
pending and is taken over by a live worker after `WORKER_CLAIM_IDLE_MS` (`XAUTOCLAIM`); this
worker's own pending entries (a store outage mid-write) are re-read first on every drain. Because
every event carries an id and inserts ignore duplicates, a re-delivered entry stores nothing twice.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis as redis_lib

from observability import keys
from observability.outages import OutageLog
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch

log = logging.getLogger(__name__)

GROUP = keys.INGEST_GROUP
VANISHED = "consumer group vanished"  # its OutageLog kind


class StreamConsumer:
    """One worker's reader of the ingest stream, under its own consumer name in the shared group."""

    def __init__(self, store: Store, redis: Any, settings: Settings, consumer: str) -> None:
        self.store = store
        self.redis = redis
        self.settings = settings
        self.consumer = consumer
        self.key = keys.ingest_stream(settings.redis_prefix)
        self.malformed = 0  # whole entries that could not be decoded (dropped, acknowledged)
        self.rejected = 0  # single events rejected at ingest (the rest of their entry is stored)
        self.last_entries = 0  # entries the last drain_once took (some may have held no valid event)
        self._group_ready = False
        self._outages = OutageLog(log)  # a group vanishing on every drain is one line a minute

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self, block_ms: int) -> list[tuple[bytes, dict]]:
        count = self.settings.worker_batch_entries
        # 1. our own entries left pending by a failed write
        own = self.redis.xreadgroup(GROUP, self.consumer, {self.key: "0"}, count=count)
        entries = own[0][1] if own else []
        gone = [e[0] for e in entries if not e[1]]  # deleted (after a lost XACK) come back empty
        if gone:
            self.redis.xack(self.key, GROUP, *gone)
        entries = [e for e in entries if e[1]]
        if entries:
            return entries
        # 2. entries of a worker that died between its insert and its ack
        claimed = self.redis.xautoclaim(
            self.key, GROUP, self.consumer, self.settings.worker_claim_idle_ms, "0-0", count=count
        )
        entries = [e for e in (claimed[1] if claimed else []) if e[1]]
        if entries:
            log.info("claimed %d stream entries from a dead worker", len(entries))
            return entries
        # 3. new entries
        new = self.redis.xreadgroup(
            GROUP, self.consumer, {self.key: ">"}, count=count, block=block_ms or None
        )
        return new[0][1] if new else []

    def drain_once(self, block_ms: int = 0) -> int:
        """Read one batch of entries, store them, ack them; returns the events stored."""
        self.ensure_group()
        try:
            entries = self._read(block_ms)
        except redis_lib.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis restarted without persistence (or the key was deleted): make the group again
            self._outages.failure(VANISHED, "ingest stream or consumer group vanished; recreating it")
            self._group_ready = False
            self.ensure_group()
            entries = self._read(block_ms)
        else:
            self._outages.recovered(VANISHED, "ingest stream consumer group")
        self.last_entries = len(entries)
        if not entries:
            return 0
        events: list = []
        ids = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            raw = fields.get(b"e") or fields.get("e")
            try:
                batch = json.loads(raw)
                if not isinstance(batch, list):
                    raise ValueError("entry is not a list of events")
                events.extend(batch)
            except (TypeError, ValueError) as exc:
                self.malformed += 1
                log.warning("malformed stream entry %s dropped: %s", entry_id, exc)
        stored = 0
        if events:
            result = write_batch(self.store, events, self.settings)  # raises if the store is down
            stored = result.accepted
            self.rejected += result.rejected
            if result.rejected:
                log.warning("%d malformed events rejected at ingest", result.rejected)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, *ids)
        pipe.xdel(self.key, *ids)
        pipe.execute()
        return stored

    def pending_count(self) -> int | None:
        try:
            info = self.redis.xpending(self.key, GROUP)
            return int(info["pending"]) if isinstance(info, dict) else int(info[0])
        except Exception:  # noqa: BLE001
            return None

    def stream_length(self) -> int | None:
        try:
            return int(self.redis.xlen(self.key))
        except Exception:  # noqa: BLE001
            return None
