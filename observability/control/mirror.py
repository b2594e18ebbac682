"""The gate mirror in Redis: publish each change after its store transaction commits, and rewrite
the whole mirror from the store (the worker does it every tick), so a Redis restart cannot reopen a
gate that the store keeps closed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from observability import keys
from observability.conversation_state import CLOSED_STATES
from observability.store import Store
from observability.store.control_state import closed_conversations, system_stopped


def publish_conversation_state(redis: Any, prefix: str, conversation_id: str, state: str) -> None:
    if redis is None:
        return
    key = keys.control_conversations(prefix)
    pipe = redis.pipeline(transaction=True)
    if state in CLOSED_STATES:
        pipe.hset(key, conversation_id, state)
    else:
        pipe.hdel(key, conversation_id)
    pipe.publish(
        keys.control_channel(prefix), json.dumps({"conversation_id": conversation_id, "state": state})
    )
    pipe.execute()


def publish_system_stop(redis: Any, prefix: str, stopped: bool) -> None:
    if redis is None:
        return
    pipe = redis.pipeline(transaction=True)
    if stopped:
        pipe.set(keys.control_system(prefix), "stopped")
    else:
        pipe.delete(keys.control_system(prefix))
    pipe.publish(keys.control_channel(prefix), json.dumps({"system_stopped": stopped}))
    pipe.execute()


def sync_to_redis(store: Store, redis: Any, prefix: str) -> int:
    """Mirror the store's closed gates into Redis; returns how many conversations are closed."""
    if redis is None:
        return 0
    with store.connect() as conn:
        closed = closed_conversations(conn)
        stopped = system_stopped(conn)
    key = keys.control_conversations(prefix)
    current = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (redis.hgetall(key) or {}).items()}
    pipe = redis.pipeline(transaction=True)
    stale = [k for k in current if k not in closed]
    if stale:
        pipe.hdel(key, *stale)
    if closed:
        pipe.hset(key, mapping=closed)
    if stopped:
        pipe.set(keys.control_system(prefix), "stopped")
    else:
        pipe.delete(keys.control_system(prefix))
    pipe.execute()
    return len(closed)


def sync_gates(store: Store, redis: Any, prefix: str) -> int:
    """Mirror the store's closed gates into Redis and mark the mirror complete.

    `sync_to_redis` reads the store, then rewrites Redis; a take-over committed in between could be
    undone by it. So the closed gates are read again afterwards and re-asserted (only closing, never
    opening), and only then is the marker set that lets bots trust Redis.
    """
    if redis is None:
        return 0
    sync_to_redis(store, redis, prefix)
    with store.connect() as conn:
        closed = closed_conversations(conn)
        stopped = system_stopped(conn)
    pipe = redis.pipeline(transaction=True)
    if closed:
        pipe.hset(keys.control_conversations(prefix), mapping=closed)
    if stopped:
        pipe.set(keys.control_system(prefix), "stopped")
    pipe.set(keys.control_synced(prefix), str(time.time()))
    pipe.execute()
    return len(closed)
