"""The worker's three endpoints over one store, assembled once per server.

`/v1/traces` is the OTLP receiver, `/metrics` the Prometheus registry holding the store collector
(which also reports the receiver's counters), `/healthz` the health checker. Nothing here speaks
HTTP: `http_app.py` routes requests to these objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from observability.settings import Settings
from observability.store import Store
from observability.worker.health import HealthChecker
from observability.worker.metrics import StoreCollector
from observability.worker.receiver import OTLPReceiver


@dataclass
class Endpoints:
    store: Store
    settings: Settings
    redis: Any = None
    worker_id: str | None = None
    consumer: Any = None  # the worker's StreamConsumer, for the ingest queue depth

    def __post_init__(self) -> None:
        self.receiver = OTLPReceiver(self.store, self.settings)
        self.collector = StoreCollector(self.store, self.settings, redis=self.redis, consumer=self.consumer,
                                        receiver=self.receiver)  # fmt: skip
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.health = HealthChecker(self.store, self.settings, redis=self.redis, worker_id=self.worker_id)

    def close(self) -> None:
        self.health.close()
        self.receiver.close()
