"""Redis key and channel names: the one place that spells them.

Every name starts with `REDIS_PREFIX` (default `obs:`), so several consoles or test runs can share
one Redis. The SDK, the worker, the stream consumer and the control services all build their names
here; a key written by one and read by another can never drift apart.

| name | type | written by | read by |
|---|---|---|---|
| `<prefix>ingest` | stream | SDK (`XADD` of a batch) | workers (consumer group `INGEST_GROUP`) |
| `<prefix>control:system` | string | control services, worker mirror | SDK gates |
| `<prefix>control:conversations` | hash id -> state | control services, worker mirror | SDK gates |
| `<prefix>control:events` | pub/sub channel | control services | SDK (gates and operator messages) |
| `<prefix>control:synced` | string | worker mirror, control after a full mirror | SDK (trust Redis only when set) |
| `<prefix>live` | pub/sub channel | `store.live.publish` (take-over, release, stops) | API WebSocket hubs |
| `<prefix>api:rate:<user>:<scope>:<minute>` | counter, expires | API rate limiter | API rate limiter |
"""

from __future__ import annotations

INGEST_GROUP = "obs-workers"  # the consumer group every worker reads the ingest stream with


def ingest_stream(prefix: str) -> str:
    return f"{prefix}ingest"


def control_system(prefix: str) -> str:
    """Set to `stopped` while every bot is stopped (absent otherwise)."""
    return f"{prefix}control:system"


def control_conversations(prefix: str) -> str:
    """Hash of conversation id -> closed state (`human` or `stopped`); open ones are absent."""
    return f"{prefix}control:conversations"


def control_channel(prefix: str) -> str:
    """Every gate change and operator message is published here as one JSON document."""
    return f"{prefix}control:events"


def control_synced(prefix: str) -> str:
    """Present once the control state is completely mirrored into Redis. Without it (Redis new or
    restarted) gates read the store, so a Redis restart cannot reopen a gate."""
    return f"{prefix}control:synced"


def live_channel(prefix: str) -> str:
    """Live messages for WebSocket clients (`intervention_update`, ...), one JSON document each."""
    return f"{prefix}live"


def api_rate(prefix: str, user: str, scope: str, minute: int) -> str:
    """Requests of one user in one minute (epoch minute) for one limit scope (`api`, `emergency`)."""
    return f"{prefix}api:rate:{user}:{scope}:{minute}"
