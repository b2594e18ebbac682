"""Where a batch of events goes: the Redis ingest stream, or straight into the SQL store.

Each sink has `write(batch)` (raises when the batch could not be stored, so the transport retries
or spools it) and `close()`. The store sink imports SQLAlchemy and the ingest path on its first
batch, on the flush thread: a bot with `REDIS_URL` never loads them, and none loads them at import.
"""

from __future__ import annotations

import json
from typing import Any

from observability import keys
from observability.settings import Settings


class PartiallyRejected(Exception):
    """The sink stored the batch but rejected some events (counted, not retried)."""

    def __init__(self, count: int) -> None:
        self.count = count


class StoreSink:
    """Writes batches through the shared ingest path into the SQL store (migrated on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None

    def write(self, batch: list) -> None:
        from observability.store.ingest import write_batch

        if self._store is None:
            from observability.store import Store

            store = Store.from_url(self.settings.database_url)
            store.migrate()
            self._store = store
        result = write_batch(self._store, batch, self.settings)
        if result.rejected:
            raise PartiallyRejected(result.rejected)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


class RedisSink:
    """One XADD per batch: the whole batch is one JSON document in one stream entry."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.redis = redis
        self.key = keys.ingest_stream(settings.redis_prefix)

    def write(self, batch: list) -> None:
        self.redis.xadd(self.key, {"v": "1", "e": json.dumps(batch, separators=(",", ":"))})

    def close(self) -> None:
        pass
