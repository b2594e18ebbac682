"""The worker's side of the Redis ingest stream(s).

Entries are read with a consumer group (`XREADGROUP`), written to the store in one transaction,
and only then acknowledged (`XACK`) and deleted. An entry whose worker died before its ack stays
pending and is taken over by a live worker after `WORKER_CLAIM_IDLE_MS` (`XAUTOCLAIM`, looked for
every half of that time); this worker's own pending entries (a store outage mid-write) are re-read
before anything new. Because every event carries an id and inserts ignore duplicates, a re-delivered
entry stores nothing twice.

With `INGEST_STREAM_SHARDS` > 1 there are several streams (`keys.ingest_streams`), each with its own
consumer group, and all of the above holds for each: every worker reads every shard, taking the
shards in turn so that none waits behind another, and one drain stores what it took from several
shards in one transaction. Streams of another layout (the shard count changed, bots and workers
restarted in any order) are found in `keys.ingest_streams_known` and drained as well (`sweep`).
"""

from __future__ import annotations

import json
import logging
import time
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


class _Shard:
    """One stream and what this consumer knows about its group there."""

    __slots__ = ("key", "ready", "own_pending", "claim_at")

    def __init__(self, key: str) -> None:
        self.key = key
        self.ready = False  # the consumer group exists (as far as we know)
        self.own_pending = True  # entries delivered to this consumer may be unacknowledged
        self.claim_at = 0.0  # monotonic time of the next look for a dead worker's entries


class StreamConsumer:
    """One worker's reader of the ingest streams, under its own consumer name in the shared group."""

    def __init__(self, store: Store, redis: Any, settings: Settings, consumer: str) -> None:
        self.store = store
        self.redis = redis
        self.settings = settings
        self.consumer = consumer
        self.keys = keys.ingest_streams(settings.redis_prefix, settings.ingest_stream_shards)
        self.key = self.keys[0]
        self.shards = [_Shard(k) for k in self.keys]
        self.other: dict[str, _Shard] = {}  # streams of other layouts with entries left (see sweep)
        self.malformed = 0  # whole entries that could not be decoded (dropped, acknowledged)
        self.rejected = 0  # single events rejected at ingest (the rest of their entry is stored)
        self.last_entries = 0  # entries the last drain_once took (some may have held no valid event)
        self._next = 0  # the shard the next drain starts with
        self._claim_every_s = max(settings.worker_claim_idle_ms / 2000, 0.01)
        self._outages = OutageLog(log)  # a group vanishing on every drain is one line a minute
        self._recreated = False  # this drain found a group gone and made it again

    # ---- groups
    def _ensure(self, shard: _Shard) -> None:
        if shard.ready:
            return
        try:
            self.redis.xgroup_create(shard.key, GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        shard.ready = True

    def ensure_group(self) -> None:
        for shard in self.shards:
            self._ensure(shard)

    def _vanished(self, shards: list[_Shard]) -> None:
        """Redis restarted without persistence (or a key was deleted): make the groups again."""
        self._outages.failure(VANISHED, "ingest stream or consumer group vanished; recreating it")
        self._recreated = True
        for shard in shards:
            shard.ready = False
            self._ensure(shard)

    # ---- reading
    def _read(self, shard: _Shard, block_ms: int) -> list[tuple[bytes, dict]]:
        """One shard's entries: our own left pending by a failed write, else a dead worker's that
        are idle long enough, else new ones (blocking up to `block_ms` when there are none)."""
        count = self.settings.worker_batch_entries
        if shard.own_pending:
            own = self.redis.xreadgroup(GROUP, self.consumer, {shard.key: "0"}, count=count)
            got = own[0][1] if own else []
            gone = [e[0] for e in got if not e[1]]  # deleted (after a lost XACK) come back empty
            if gone:
                self.redis.xack(shard.key, GROUP, *gone)
            entries = [e for e in got if e[1]]
            if entries:
                return entries
            shard.own_pending = len(got) >= count  # a full page of deleted ones: look again
            if shard.own_pending:
                return []
        now = time.monotonic()
        if now >= shard.claim_at:
            claimed = self.redis.xautoclaim(
                shard.key, GROUP, self.consumer, self.settings.worker_claim_idle_ms, "0-0", count=count
            )
            entries = [e for e in (claimed[1] if claimed else []) if e[1]]
            if entries:
                log.info("claimed %d stream entries from a dead worker", len(entries))
                return entries  # and look again at the next drain: there may be more
            shard.claim_at = now + self._claim_every_s
        new = self.redis.xreadgroup(
            GROUP, self.consumer, {shard.key: ">"}, count=count, block=block_ms or None
        )
        return new[0][1] if new else []

    def _read_recovering(self, shard: _Shard, block_ms: int) -> list[tuple[bytes, dict]]:
        self._ensure(shard)
        try:
            return self._read(shard, block_ms)
        except redis_lib.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._vanished([shard])
            return self._read(shard, block_ms)

    def _block_all(self, block_ms: int) -> list[tuple[_Shard, list]]:
        """Wait for new entries on every shard at once (one Redis: one multi-key XREADGROUP)."""
        by_key = {s.key: s for s in self.shards}
        try:
            got = self.redis.xreadgroup(
                GROUP, self.consumer, dict.fromkeys(by_key, ">"),
                count=self.settings.worker_batch_entries, block=block_ms,
            )  # fmt: skip
        except redis_lib.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._vanished(self.shards)
            return []
        out = []
        for key, entries in got or []:
            shard = by_key[key.decode() if isinstance(key, bytes) else key]
            if entries:
                out.append((shard, entries))
        return out

    def _collect(self, block_ms: int) -> list[tuple[_Shard, list]]:
        """Entries from the shards in turn, up to one batch (`WORKER_BATCH_ENTRIES`) in all."""
        shards, n = self.shards, len(self.shards)
        if n == 1:
            entries = self._read_recovering(shards[0], block_ms)
            return [(shards[0], entries)] if entries else []
        start, self._next = self._next, (self._next + 1) % n
        out, taken = [], 0
        for i in range(n):
            shard = shards[(start + i) % n]
            entries = self._read_recovering(shard, 0)
            if entries:
                out.append((shard, entries))
                taken += len(entries)
                if taken >= self.settings.worker_batch_entries:
                    break
        if out or not block_ms:
            return out
        if not self.settings.redis_cluster:
            return self._block_all(block_ms)
        # a cluster cannot wait on keys of several slots in one command: wait on one shard for
        # block_ms / n, then the next drain looks at every shard again (an entry waits at most that)
        shard = shards[start]
        entries = self._read_recovering(shard, max(block_ms // n, 1))
        return [(shard, entries)] if entries else []

    # ---- storing
    def _store(self, taken: list[tuple[_Shard, list]]) -> int:
        self.last_entries = sum(len(entries) for _, entries in taken)
        if not taken:
            return 0
        events: list = []
        for _, entries in taken:
            for entry_id, fields in entries:
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
        try:
            if events:
                result = write_batch(self.store, events, self.settings)  # raises if the store is down
                stored = result.accepted
                self.rejected += result.rejected
                if result.rejected:
                    log.warning("%d malformed events rejected at ingest", result.rejected)
            pipe = self.redis.pipeline(transaction=False)
            for shard, entries in taken:
                ids = [e[0] for e in entries]
                pipe.xack(shard.key, GROUP, *ids)
                pipe.xdel(shard.key, *ids)
            pipe.execute()
        except BaseException:
            for shard, _ in taken:  # read them again first on the next drain
                shard.own_pending = True
            raise
        return stored

    def drain_once(self, block_ms: int = 0) -> int:
        """Read one batch of entries, store them, ack them; returns the events stored."""
        self._recreated = False
        taken = self._collect(block_ms)
        if not self._recreated:
            self._outages.recovered(VANISHED, "ingest stream consumer group")
        return self._store(taken)

    def sweep(self) -> int:
        """Drain the streams of other layouts that still hold entries; returns the events stored.

        They are the names SDKs registered (`keys.ingest_streams_known`) and the single stream of
        before the shards, minus this consumer's own. A stream with entries is drained to the end
        with the same reads (own pending, a dead worker's, new) as the own shards."""
        own = set(self.keys)
        names = {m.decode() if isinstance(m, bytes) else m
                 for m in self.redis.smembers(keys.ingest_streams_known(self.settings.redis_prefix))}  # fmt: skip
        names.add(keys.ingest_stream(self.settings.redis_prefix))
        stored = 0
        for name in sorted(names - own):
            if not self.redis.xlen(name):
                self.other.pop(name, None)
                continue
            shard = self.other.setdefault(name, _Shard(name))
            shard.claim_at = 0.0
            while entries := self._read_recovering(shard, 0):
                stored += self._store([(shard, entries)])
            log.info("drained stream %s of another INGEST_STREAM_SHARDS layout", name)
        return stored

    # ---- depth, for /metrics
    def _all_keys(self) -> list[str]:
        return self.keys + [k for k in self.other if k not in self.keys]

    def pending_count(self) -> int | None:
        """Entries delivered to a worker and not yet acknowledged, over every stream."""
        try:
            total = 0
            for key in self._all_keys():
                try:
                    info = self.redis.xpending(key, GROUP)
                except redis_lib.ResponseError as exc:  # no stream or no group yet: none pending
                    if "NOGROUP" not in str(exc):
                        raise
                    continue
                total += int(info["pending"]) if isinstance(info, dict) else int(info[0])
            return total
        except Exception:  # noqa: BLE001
            return None

    def stream_length(self) -> int | None:
        """Entries in the streams (not yet stored and acknowledged), over every stream."""
        try:
            return sum(int(self.redis.xlen(key)) for key in self._all_keys())
        except Exception:  # noqa: BLE001
            return None

    def shard_depths(self) -> list[tuple[str, int]]:
        """(stream name, length) per stream, when there are several."""
        return [(key, int(self.redis.xlen(key))) for key in self._all_keys()]
