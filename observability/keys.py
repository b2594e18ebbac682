"""Redis key and channel names: the one place that spells them.

Every name starts with `REDIS_PREFIX` (default `obs:`), so several consoles or test runs can share
one Redis. The SDK, the worker, the stream consumer and the control services all build their names
here; a key written by one and read by another can never drift apart.

| name | type | written by | read by |
|---|---|---|---|
| `<prefix>ingest` | stream | SDK (`XADD` of a batch) | workers (consumer group `INGEST_GROUP`) |
| `<prefix>{ingest-<i>-of-<n>.<j>}:ingest` | stream, shard i of n (`INGEST_STREAM_SHARDS` > 1) | SDK | workers |
| `<prefix>ingest:streams` | set of stream names | SDK (before its first `XADD`) | workers (drain streams of other layouts) |
| `<prefix>{control}:system` | string | control services, worker mirror | SDK gates |
| `<prefix>{control}:conversations` | hash id -> state | control services, worker mirror | SDK gates |
| `<prefix>{control}:events` | pub/sub channel | control services | SDK (gates and operator messages) |
| `<prefix>{control}:synced` | string | worker mirror, control after a full mirror | SDK (trust Redis only when set) |
| `<prefix>live` | pub/sub channel | `store.live.publish` (take-over, release, stops) | API WebSocket hubs |
| `<prefix>api:rate:<user>:<scope>:<minute>` | counter, expires | API rate limiter | API rate limiter |

Redis Cluster: keys that one command or one MULTI/EXEC uses together carry the same hash tag (the
part in braces, `slotted`), so they live in one slot and the transaction works on a cluster as on a
single Redis. The ingest stream is one key (its commands touch nothing else), so it needs no tag and
keeps its name across upgrades: an undrained backlog is never orphaned. When one stream (one
master) is not enough, `INGEST_STREAM_SHARDS` splits it: each shard's hash tag is chosen for its
slot, so the shards spread over the masters (`ingest_streams`). New groups of keys used
together (rate-limit counters, more channels) get their names from `slotted` too.
"""

from __future__ import annotations

from functools import lru_cache

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
    """The ingest stream when there is one (`INGEST_STREAM_SHARDS=1`, the default)."""
    return f"{prefix}ingest"


SLOTS = 16384  # Redis Cluster hash slots


def key_slot(key: str) -> int:
    """The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the key without one."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % SLOTS


@lru_cache(maxsize=64)
def _shard_tags(shards: int) -> tuple[str, ...]:
    """One hash tag per shard, shard i's slot in the middle of the i-th of `shards` equal slot ranges."""
    tags = []
    for i in range(shards):
        low, high = i * SLOTS // shards, (i + 1) * SLOTS // shards
        quarter = (high - low) // 4
        j = 0
        while not low + quarter <= key_slot(tag := f"ingest-{i}-of-{shards}.{j}") < high - quarter:
            j += 1
        tags.append(tag)
    return tuple(tags)


def ingest_streams(prefix: str, shards: int = 1) -> list[str]:
    """The ingest streams (`INGEST_STREAM_SHARDS`): the SDK writes each batch to one of them, every
    worker reads them all. One shard is the historical `<prefix>ingest`. With more, shard i is
    `<prefix>{ingest-i-of-n.j}:ingest`, whose tag hashes into the i-th of n equal ranges of the 16,384
    slots: on a cluster whose masters hold equal ranges (as `redis-cli --cluster create` makes them)
    n shards over n masters put one stream on each."""
    if shards <= 1:
        return [ingest_stream(prefix)]
    return [slotted(prefix, tag, "ingest") for tag in _shard_tags(shards)]


def ingest_streams_known(prefix: str) -> str:
    """Set of every ingest stream name an SDK has written to (`SADD` before its first `XADD`):
    workers also drain those not in their own layout, so changing `INGEST_STREAM_SHARDS` (bots and
    workers restarted in any order) leaves no backlog behind in a stream nobody reads any more."""
    return f"{prefix}ingest:streams"


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
