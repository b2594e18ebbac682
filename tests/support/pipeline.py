"""The ingest pipeline as a test drives it: record through the SDK, deliver, look at the store.

Three shapes (`PIPELINE_KINDS`): SDK → SQLite, SDK → PostgreSQL (no Redis), and SDK → Redis stream →
worker → PostgreSQL. `Pipeline.deliver()` flushes the SDK and, when there is a stream, drains it with
the worker, so after it everything recorded so far is in the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:  # imported when used, so that a broken SDK fails only the tests that use it
    from observability.sdk import ObservabilityClient
    from observability.settings import Settings
    from observability.store import Store

PIPELINE_KINDS = ("sqlite", "postgres", "redis+postgres")


@dataclass
class Pipeline:
    settings: Settings
    store: Store
    client: ObservabilityClient
    worker: Any | None  # observability.worker.runner.Worker when there is a Redis stream

    def deliver(self, timeout: float = 15.0) -> None:
        """Everything recorded so far ends up in the store (through the worker when there is one)."""
        assert self.client.flush(timeout), self.client.stats()
        if self.worker is not None:
            self.worker.drain()

    def rows(self, table: sa.Table, *cols: str) -> list[tuple]:
        with self.store.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(*[table.c[c] for c in cols]))]

    def count(self, table: sa.Table) -> int:
        with self.store.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()

    def close(self) -> None:
        self.client.close()
        if self.worker is not None:
            self.worker.close()
        self.store.dispose()


def open_pipeline(settings: Settings, *, worker_steps: Sequence[Any] | None = None) -> Pipeline:
    """A migrated store at `settings.database_url`, an SDK client, and a worker when Redis is set
    (`worker_steps=[]`: a worker that only drains the stream; None: every step of a tick)."""
    from observability.sdk import ObservabilityClient
    from observability.store import Store
    from observability.worker.runner import Worker

    store = Store.from_url(settings.database_url)
    store.migrate()
    client = ObservabilityClient(settings=settings)
    worker = None
    if settings.redis_url:
        worker = (
            Worker(store, settings)
            if worker_steps is None
            else Worker(store, settings, steps=list(worker_steps))
        )
    return Pipeline(settings, store, client, worker)


def record_llm_calls(
    client: ObservabilityClient, start: int, n: int, *, pause_every: int = 0, **fields: Any
) -> list[str]:
    """Record `n` LLM calls with trace ids t-<start>…; with `pause_every`, the caller pauses 10 ms
    every that many calls, as a living bot would (the flush thread gets turns)."""
    args: dict[str, Any] = {"model": "claude-sonnet-4-5", "provider": "anthropic", "output_tokens": 20,
                            "latency_ms": 40.0, "bot": "lead"}  # fmt: skip
    args.update(fields)
    ids = []
    for i in range(start, start + n):
        ids.append(client.record_llm_call(input_tokens=100 + i, trace_id=f"t-{i:06d}", **args))
        if pause_every and i % pause_every == 0:
            time.sleep(0.01)  # pacing, not waiting: the bot goes on living
    return ids
