"""The store's side of the gates: the system-wide stop and conversation states as stored.

Read by the SDK when it runs without Redis or cannot trust it (loaded lazily then: the SDK writes no
SQL of its own), by the control services and by the worker's Redis mirror. The states and the gate rule themselves are `observability.conversation_state`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.conversation_state import CLOSED_STATES, STATE_STOPPED, SYSTEM_STOP_KEY
from observability.store import schema
from observability.timeutil import as_aware, resolve_now


def system_stopped(conn: sa.Connection) -> bool:
    """True while the system-wide stop is on."""
    row = conn.execute(
        sa.select(schema.control_state.c.value).where(schema.control_state.c.key == SYSTEM_STOP_KEY)
    ).first()
    return bool(row and as_dict(row[0]).get("stopped"))


ACTIVE_CONVERSATION_S = 900  # activity this recent, and not stopped: an active conversation


def active_where(stopped_all: bool, now: datetime | None = None) -> sa.ColumnElement[bool]:
    """The one definition of an active conversation, for Overview's figure, `/metrics` and the
    Conversations list's "Active" filter alike: activity in the last 15 minutes and not stopped; none
    while the system-wide stop holds, when every conversation reads "stopped"."""
    if stopped_all:
        return sa.false()
    c = schema.conversations
    since = resolve_now(now) - timedelta(seconds=ACTIVE_CONVERSATION_S)
    return sa.and_(c.c.last_activity_at >= since, c.c.state != STATE_STOPPED)


def read_from_store(conn: sa.Connection, conversation_id: str) -> tuple[bool, str | None]:
    """(system stopped?, conversation state or None) straight from the store."""
    state = conn.execute(
        sa.select(schema.conversations.c.state).where(schema.conversations.c.id == conversation_id)
    ).scalar()
    return system_stopped(conn), state


def closed_conversations(conn: sa.Connection) -> dict[str, str]:
    """Every conversation whose gate is closed, id -> state."""
    c = schema.conversations
    rows = conn.execute(sa.select(c.c.id, c.c.state).where(c.c.state.in_(sorted(CLOSED_STATES)))).all()
    return {cid: state for cid, state in rows}


def handoff_instructions(conn: sa.Connection, conversation_id: str) -> str | None:
    """What the operator asked the AI to keep in mind when handing the conversation back."""
    c = schema.conversations
    return conn.execute(sa.select(c.c.ai_handoff_instructions).where(c.c.id == conversation_id)).scalar()


def operator_messages(
    conn: sa.Connection, conversation_id: str | None, after: datetime | None, limit: int = 500
) -> list[dict]:
    """Operator replies (of one conversation, or all) stored after `after` (naive UTC), oldest
    first, as the SDK hands them to a bot: id, conversation_id, ts (aware UTC), text, author."""
    m = schema.messages
    q = sa.select(m.c.id, m.c.conversation_id, m.c.ts, m.c.text, m.c.author).where(m.c.role == "operator")
    if conversation_id is not None:
        q = q.where(m.c.conversation_id == conversation_id)
    if after is not None:
        q = q.where(m.c.ts > after)
    rows = conn.execute(q.order_by(m.c.ts, m.c.id).limit(limit)).all()
    return [{"id": r.id, "conversation_id": r.conversation_id, "ts": as_aware(r.ts), "text": r.text,
             "author": r.author} for r in rows]  # fmt: skip


def as_dict(value: Any) -> dict:
    """A JSON column's value as a dict (drivers return text or a dict; anything else is {})."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}
