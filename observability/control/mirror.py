"""The gate mirror in Redis: publish each change after its store transaction commits, and rewrite
the whole mirror from the store (the worker does it every tick), so a Redis restart cannot reopen a
gate that the store keeps closed.

The store is the truth; Redis only makes a change reach every bot in milliseconds. So a publish
that fails is logged, never raised: the change is already stored, and the `synced` marker is
dropped so bots read the store until the mirror is rewritten.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from observability import keys
from observability.conversation_state import CLOSED_STATES
from observability.redis_client import connect
from observability.settings import Settings, get_settings
from observability.store import Store
from observability.store import live as live_messages
from observability.store.control_state import closed_conversations, system_stopped

log = logging.getLogger(__name__)

_clients: dict[str, Any] = {}  # one client per REDIS_URL for the whole process (pages share it)


def redis_client(settings: Settings | None = None) -> Any | None:
    """The process's Redis client for REDIS_URL (None without Redis)."""
    s = settings or get_settings()
    if not s.redis_url:
        return None
    client = _clients.get(s.redis_url)
    if client is None:
        client = _clients[s.redis_url] = connect(s)
    return client


def publish_conversation_state(redis: Any, prefix: str, conversation_id: str, state: str) -> None:
    key = keys.control_conversations(prefix)
    pipe = redis.pipeline(transaction=True)
    if state in CLOSED_STATES:
        pipe.hset(key, conversation_id, state)
    else:
        pipe.hdel(key, conversation_id)
    pipe.execute()
    # after the state is written (and outside MULTI: Redis Cluster pipelines refuse PUBLISH)
    redis.publish(
        keys.control_channel(prefix), json.dumps({"conversation_id": conversation_id, "state": state})
    )


def publish_system_stop(redis: Any, prefix: str, stopped: bool) -> None:
    pipe = redis.pipeline(transaction=True)
    if stopped:
        pipe.set(keys.control_system(prefix), "stopped")
    else:
        pipe.delete(keys.control_system(prefix))
    pipe.execute()
    redis.publish(keys.control_channel(prefix), json.dumps({"system_stopped": stopped}))


def publish_after_commit(
    store: Store,
    settings: Settings,
    redis: Any | None,
    what: str,
    *,
    conversation_state: tuple[str, str] | None = None,
    system_stop: bool | None = None,
    operator_message: dict | None = None,
    live: dict | None = None,
) -> bool | None:
    """Publish a committed change (in this order: a conversation's new state, the system-wide
    stop, an operator message, then `live`: the change as an `intervention_update` for the API's
    WebSocket clients, see `store.live`). Returns True when published, False when Redis failed (`what`
    names the change in the log), None without Redis."""
    client = redis if redis is not None else redis_client(settings)
    if client is None:
        return None
    prefix = settings.redis_prefix
    try:
        if conversation_state is not None:
            publish_conversation_state(client, prefix, *conversation_state)
        if system_stop is not None:
            publish_system_stop(client, prefix, system_stop)
        if operator_message is not None:
            client.publish(keys.control_channel(prefix), json.dumps({"operator_message": operator_message}))
        if live is not None:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
            live_messages.publish(client, settings, live_messages.control_message(live, ts))
        if not client.exists(keys.control_synced(prefix)):
            # Redis was (re)started since the last full mirror: mirror it all now
            sync_gates(store, client, prefix)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning(
            "%s is stored but could not be published to Redis (%s); bots read the store "
            "until the worker re-mirrors it",
            what,
            type(exc).__name__,
        )
        try:
            client.delete(keys.control_synced(prefix))
        except Exception:  # noqa: BLE001 - Redis is down: the SDK falls back to the store anyway
            pass
        return False


def sync_to_redis(store: Store, redis: Any, prefix: str) -> int:
    """Mirror the store's closed gates into Redis; returns how many conversations are closed."""
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
    redis.delete(keys.legacy_control_synced(prefix))  # bots on older code: read the store, not a stale mirror
    return len(closed)
