"""Where the gates read from: conversation states and the system-wide stop.

The store is the truth (`conversations.state`, `control_state['system_stop']`). With Redis the
same facts are mirrored into two keys and every change is published on one channel, so a bot's
`ai_may_respond` learns of a take-over in milliseconds instead of at its next poll. The worker
re-mirrors the store into Redis every tick (`sync_to_redis`), so a Redis restart cannot reopen a
gate that the store keeps closed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa

from observability.store import schema

log = logging.getLogger(__name__)

SYSTEM_STOP_KEY = "system_stop"  # control_state key; value {"stopped": bool, "reason": str}
STATE_AI = "ai"
STATE_HUMAN = "human"
STATE_STOPPED = "stopped"
CLOSED_STATES = frozenset({STATE_HUMAN, STATE_STOPPED})


def redis_system_key(prefix: str) -> str:
    return f"{prefix}control:system"


def redis_conversations_key(prefix: str) -> str:
    return f"{prefix}control:conversations"


def redis_channel(prefix: str) -> str:
    return f"{prefix}control:events"


def ingest_stream_key(prefix: str) -> str:
    return f"{prefix}ingest"


# ---- reads ------------------------------------------------------------------------------------


def read_from_store(conn: sa.Connection, conversation_id: str) -> tuple[bool, str | None]:
    """(system stopped?, conversation state or None) straight from the store."""
    row = conn.execute(
        sa.select(schema.control_state.c.value).where(schema.control_state.c.key == SYSTEM_STOP_KEY)
    ).first()
    stopped = bool(row and _as_dict(row[0]).get("stopped"))
    state = conn.execute(
        sa.select(schema.conversations.c.state).where(schema.conversations.c.id == conversation_id)
    ).scalar()
    return stopped, state


def read_from_redis(redis: Any, prefix: str, conversation_id: str) -> tuple[bool, str | None]:
    pipe = redis.pipeline(transaction=False)
    pipe.get(redis_system_key(prefix))
    pipe.hget(redis_conversations_key(prefix), conversation_id)
    system, state = pipe.execute()
    return system in (b"stopped", "stopped"), (state.decode() if isinstance(state, bytes) else state)


def gate_open(system_stopped: bool, state: str | None) -> bool:
    return not system_stopped and state not in CLOSED_STATES


# ---- writes (called by the control service after its store transaction commits) ----------------


def publish_conversation_state(redis: Any, prefix: str, conversation_id: str, state: str) -> None:
    if redis is None:
        return
    key = redis_conversations_key(prefix)
    pipe = redis.pipeline(transaction=True)
    if state in CLOSED_STATES:
        pipe.hset(key, conversation_id, state)
    else:
        pipe.hdel(key, conversation_id)
    pipe.publish(redis_channel(prefix), json.dumps({"conversation_id": conversation_id, "state": state}))
    pipe.execute()


def publish_system_stop(redis: Any, prefix: str, stopped: bool) -> None:
    if redis is None:
        return
    pipe = redis.pipeline(transaction=True)
    if stopped:
        pipe.set(redis_system_key(prefix), "stopped")
    else:
        pipe.delete(redis_system_key(prefix))
    pipe.publish(redis_channel(prefix), json.dumps({"system_stopped": stopped}))
    pipe.execute()


def sync_to_redis(store: Any, redis: Any, prefix: str) -> int:
    """Mirror the store's closed gates into Redis; returns how many conversations are closed."""
    if redis is None:
        return 0
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(schema.conversations.c.id, schema.conversations.c.state).where(
                schema.conversations.c.state.in_(sorted(CLOSED_STATES))
            )
        ).all()
        row = conn.execute(
            sa.select(schema.control_state.c.value).where(schema.control_state.c.key == SYSTEM_STOP_KEY)
        ).first()
    stopped = bool(row and _as_dict(row[0]).get("stopped"))
    key = redis_conversations_key(prefix)
    closed = {cid: state for cid, state in rows}
    current = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (redis.hgetall(key) or {}).items()}
    pipe = redis.pipeline(transaction=True)
    stale = [k for k in current if k not in closed]
    if stale:
        pipe.hdel(key, *stale)
    if closed:
        pipe.hset(key, mapping=closed)
    if stopped:
        pipe.set(redis_system_key(prefix), "stopped")
    else:
        pipe.delete(redis_system_key(prefix))
    pipe.execute()
    return len(closed)


def _as_dict(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}
