"""The SQL store, the single source of truth: schema, engine, ingest, the Redis stream consumer,
rollups, retention, latency sketches and the SQL helpers every query shares.

May import only the contract modules (`settings`, `events`, `keys`, `timeutil`, `redaction`,
`telemetry`). `from observability.store import Store` is the documented way to open a store.
"""

from observability.store.database import SchemaNotReady, Store, StoreUnavailable

__all__ = ["SchemaNotReady", "Store", "StoreUnavailable"]
