"""Conversation states and the rule that decides whether the AI may answer: the contract between
the control services, which close and open gates, and every bot's `ai_may_respond`.

The store is the truth (`conversations.state`, `control_state['system_stop']`). With Redis the same
facts are mirrored into two keys (`observability.keys`) and every change is published on one
channel, so a bot learns of a take-over in milliseconds instead of at its next poll.
"""

from __future__ import annotations

from typing import Any

from observability import keys

SYSTEM_STOP_KEY = "system_stop"  # control_state row; value {"stopped": bool, "reason": str}
STATE_AI = "ai"
STATE_HUMAN = "human"
STATE_STOPPED = "stopped"
CLOSED_STATES = frozenset({STATE_HUMAN, STATE_STOPPED})


def gate_open(system_stopped: bool, state: str | None) -> bool:
    """The AI may answer unless every bot is stopped or this conversation is held or stopped."""
    return not system_stopped and state not in CLOSED_STATES


def shown_state(system_stopped: bool, state: str | None) -> str | None:
    """The state a person should see: `stopped` for every conversation while the system-wide stop
    holds (whatever is stored), else the stored state."""
    return STATE_STOPPED if system_stopped else state


def read_from_redis(redis: Any, prefix: str, conversation_id: str) -> tuple[bool, str | None]:
    """(system stopped?, conversation's closed state or None) from the Redis mirror, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    pipe.get(keys.control_system(prefix))
    pipe.hget(keys.control_conversations(prefix), conversation_id)
    system, state = pipe.execute()
    return system in (b"stopped", "stopped"), (state.decode() if isinstance(state, bytes) else state)
