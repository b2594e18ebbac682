"""The client bots import: record calls on a bounded queue, a transport that retries and spools,
the `ai_may_respond` gate and operator-message delivery.

May import only the contract modules (`settings`, `events`, `keys`, `timeutil`); the SQL store is
loaded lazily, only by a client that writes without Redis, so a bot pays neither SQLAlchemy's
import time nor its memory. `from observability.sdk import ObservabilityClient` is documented.
"""

from observability.sdk.client import ObservabilityClient

__all__ = ["ObservabilityClient"]
