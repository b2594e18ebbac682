"""Redis key and channel names: the one place that spells them.

Every name starts with `REDIS_PREFIX` (default `obs:`), so several consoles or test runs can share
one Redis. The SDK, the worker, the stream consumer and the control services all build their names
here; a key written by one and read by another can never drift apart.

| name | type | written by | read by |
|---|---|---|---|
| `<prefix>ingest` | stream | SDK (`XADD` of a batch) | workers (consumer group `INGEST_GROUP`) |
| `<prefix>{control}:system` | string | control services, worker mirror | SDK gates |
| `<prefix>{control}:conversations` | hash id -> state | control services, worker mirror | SDK gates |
| `<prefix>{control}:events` | pub/sub channel | control services | SDK (gates and operator messages) |
| `<prefix>{control}:synced` | string | worker mirror, control after a full mirror | SDK (trust Redis only when set) |
| `<prefix>live` | pub/sub channel | `store.live.publish` (take-over, release, stops) | API WebSocket hubs |
| `<prefix>api:rate:<user>:<scope>:<minute>` | counter, expires | API rate limiter | API rate limiter |

Redis Cluster: keys that one command or one MULTI/EXEC uses together carry the same hash tag (the
part in braces, `slotted`), so they live in one slot and the transaction works on a cluster as on a
single Redis. The ingest stream is one key (its commands touch nothing else), so it needs no tag and
keeps its name across upgrades: an undrained backlog is never orphaned. New groups of keys used
together (rate-limit counters, more channels) get their names from `slotted` too.
"""

from __future__ import annotations

INGEST_GROUP = "obs-workers"  # the consumer group every worker reads the ingest stream with


CONTROL = "control"  # the hash tag of the gate mirror: its keys change together in one MULTI/EXEC


def slotted(prefix: str, group: str, name: str) -> str:
    """`<prefix>{group}:name`: every name of one `group` hashes to the same Redis Cluster slot.

    Redis Cluster runs a multi-key command or transaction only when all its keys share a slot; the
    slot comes from the hash tag (the first `{...}`) when there is one. The tag holds only the
    group, so the key still starts with `prefix` (a `SCAN MATCH prefix*` finds it).
    """
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"REDIS_PREFIX must not contain braces (they set a hash tag): {prefix!r}")
    return f"{prefix}{{{group}}}:{name}"


def ingest_stream(prefix: str) -> str:
    return f"{prefix}ingest"


def control_system(prefix: str) -> str:
    """Set to `stopped` while every bot is stopped (absent otherwise)."""
    return slotted(prefix, CONTROL, "system")


def control_conversations(prefix: str) -> str:
    """Hash of conversation id -> closed state (`human` or `stopped`); open ones are absent."""
    return slotted(prefix, CONTROL, "conversations")


def control_channel(prefix: str) -> str:
    """Every gate change and operator message is published here as one JSON document."""
    return slotted(prefix, CONTROL, "events")


def control_synced(prefix: str) -> str:
    """Present once the control state is completely mirrored into Redis. Without it (Redis new or
    restarted) gates read the store, so a Redis restart cannot reopen a gate."""
    return slotted(prefix, CONTROL, "synced")


def legacy_control_synced(prefix: str) -> str:
    """The marker's name before the hash tag. The mirror deletes it, so a bot still running older
    code stops trusting the mirror under the old names (which nothing updates any more) and reads
    the store instead."""
    return f"{prefix}control:synced"


def live_channel(prefix: str) -> str:
    """Live messages for WebSocket clients (`intervention_update`, ...), one JSON document each."""
    return f"{prefix}live"


def api_rate(prefix: str, user: str, scope: str, minute: int) -> str:
    """Requests of one user in one minute (epoch minute) for one limit scope (`api`, `emergency`)."""
    return f"{prefix}api:rate:{user}:{scope}:{minute}"
