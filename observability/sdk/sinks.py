"""Where a batch of events goes: the Redis ingest stream, or straight into the SQL store.

Each sink has `write(batch)` (raises when the batch could not be stored, so the transport retries
or spools it), `ready` (set once it can take a batch without a slow start) and `close()`. The store
sink imports SQLAlchemy and the ingest path on a thread of its own when the client starts: a bot
with `REDIS_URL` never loads them, and none loads them at import.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Any

from observability import keys
from observability.settings import Settings

log = logging.getLogger("observability.sdk")

# a batch is lists of checked scalars (metadata passed json.dumps at record time, so it holds no
# cycle): no circular-reference bookkeeping, which costs the flush thread about a tenth of its time
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class PartiallyRejected(Exception):
    """The sink stored the batch but rejected some events (counted, not retried)."""

    def __init__(self, count: int) -> None:
        self.count = count


class StoreSink:
    """Writes batches through the shared ingest path into the SQL store.

    `open_async()` imports SQLAlchemy and opens the store on a thread of its own (the flush thread
    keeps spooling meanwhile); the first write checks the schema version and never migrates: a
    store that is not migrated raises `SchemaNotReady`, whose message says what to run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = threading.Event()  # the store is opened (not necessarily reachable)
        self._store: Any = None
        self._write: Any = None
        self._checked = False
        self._lock = threading.Lock()

    def open_async(self, on_ready: Any) -> None:
        def run() -> None:
            try:
                self._open()
            except Exception as exc:  # noqa: BLE001 - each write tries again and fails with the reason
                log.error("observability: cannot open the store: %s", exc)
            finally:
                self.ready.set()
                on_ready()

        threading.Thread(target=run, name="observability-open", daemon=True).start()

    def _open(self) -> None:
        with self._lock:
            if self._store is None:
                from observability.store import Store
                from observability.store.ingest import write_batch

                self._write = write_batch
                self._store = Store.from_url(self.settings.database_url)

    def write(self, batch: list) -> None:
        self._open()
        if not self._checked:
            self._store.check_schema()  # raises SchemaNotReady (spooled meanwhile); never migrates
            self._checked = True
        result = self._write(self._store, batch, self.settings)
        if result.rejected:
            raise PartiallyRejected(result.rejected)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


class RedisSink:
    """One XADD per batch: the whole batch is one JSON document in one stream entry.

    With several ingest streams (`INGEST_STREAM_SHARDS`) the batches go round the shards, from a
    random one (so that many bots do not all start on the first). Nothing relies on the order of
    batches: several workers always stored entries in parallel, and ingest is order-free (events
    carry their time; conversations and accounts are upserted with least/greatest and newest-wins).
    Before its first XADD the sink adds its stream names to the set workers look at
    (`keys.ingest_streams_known`), so a stream of an older layout is never left undrained."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.ready = threading.Event()
        self.ready.set()
        self.redis = redis
        self.keys = keys.ingest_streams(settings.redis_prefix, settings.ingest_stream_shards)
        self.key = self.keys[0]
        self._known = keys.ingest_streams_known(settings.redis_prefix)
        self._registered = False
        self._next = random.randrange(len(self.keys))

    def open_async(self, on_ready: Any) -> None:
        pass  # the client connected to Redis already

    def write(self, batch: list) -> None:
        if not self._registered:
            self.redis.sadd(self._known, *self.keys)
            self._registered = True
        key = self.keys[self._next]
        self._next = (self._next + 1) % len(self.keys)
        self.redis.xadd(key, {"v": "1", "e": _encode(batch)})

    def close(self) -> None:
        pass
