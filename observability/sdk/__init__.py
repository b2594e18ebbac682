"""The client bots import: record calls on a bounded queue, a transport that retries and spools,
the `ai_may_respond` gate and operator-message delivery.

- `client`: `ObservabilityClient`, its `record_*` methods (validated on the caller's thread);
- `transport` (+ `sinks`, `spool`): the queue, the flushing thread, retries, spool and replay;
- `gates`, `operator`, `control_feed`, `store_reads`: what the operator decides reaching the bot;
- `ids`: cheap random event ids.

May import only the contract modules (`settings`, `events`, `keys`, `timeutil`,
`conversation_state`, `redis_client`, `telemetry`); the SQL store is loaded lazily, only by a
client that writes or reads without Redis, so a bot pays neither SQLAlchemy's import time nor its
memory (a test checks it). `from observability.sdk import ObservabilityClient` is documented.
"""

from observability.sdk.client import ObservabilityClient

__all__ = ["ObservabilityClient"]
