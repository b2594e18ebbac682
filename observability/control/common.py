"""What the take-over and emergency actions share: argument checks, the conversation lookup, the
append-only audit rows and the `ActionResult` every action returns.

Kept in one place so that a note is checked and redacted the same way whichever page sends it,
and both audit tables are written by the same two functions (there is no update or delete).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import events as ev
from observability.control.errors import ConversationNotFound
from observability.conversation_state import STATE_AI
from observability.redaction import redact_if_enabled
from observability.settings import Settings
from observability.store import schema

MAX_NOTE = 4000  # reason, summary, instructions


@dataclass(frozen=True)
class ActionResult:
    """What a control action did. `published`: True/False when Redis is configured, None without."""

    action: str
    outcome: str
    user: str
    conversation_id: str | None = None
    audit_id: int | None = None
    message_id: str | None = None
    published: bool | None = None

    def summary(self) -> str:
        """What happened, in plain words for the person who did it (the console shows this)."""
        c = f"Conversation {self.conversation_id}"
        text = {
            (
                "take_control",
                "taken",
            ): f"You hold {c.lower()} now: the AI does not respond in it until you hand it back.",
            ("take_control", "already_held"): f"You already hold {c.lower()}; nothing changed.",
            ("reply", "sent"): "Reply sent: the bot delivers it to the user.",
            ("release_control", "returned_to_ai"): f"{c} is back with the AI.",
            ("release_control", "resolved"): f"{c} is back with the AI and marked resolved.",
            ("stop", "stopped"): f"{c} is stopped: no bot may answer in it until it is reset.",
            ("stop", "already_stopped"): f"{c} was already stopped; nothing changed.",
            (
                "system_stop",
                "stopped",
            ): "Every conversation is stopped: no bot may answer until an admin resumes.",
            ("system_stop", "already_stopped"): "Every conversation was already stopped; nothing changed.",
            (
                "system_resume",
                "resumed",
            ): "Bots answer again (except in conversations stopped or held by a person).",
            ("system_resume", "not_stopped"): "No system-wide stop was in force; nothing changed.",
        }.get((self.action, self.outcome))
        if text is None and self.action == "reset":
            text = f"{c} is reset: back with the AI (it was {self.outcome.removeprefix('reset_from_')})."
        text = text or f"{self.action.replace('_', ' ')}: {self.outcome.replace('_', ' ')}"
        if self.published is False:
            text += " Redis is unreachable: bots see it at their next store poll (within seconds)."
        return text


def check_conversation_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("conversation id is required")
    if len(value) > 100:
        raise ValueError("conversation id is longer than 100 characters")
    return value


def note(name: str, value: Any, settings: Settings, *, required: bool) -> str | None:
    """A free-text note (reason, summary, instructions): checked, trimmed, PII-redacted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    value = value.strip()
    if len(value) > MAX_NOTE:
        raise ValueError(f"{name} is longer than {MAX_NOTE} characters")
    try:
        ev.check_chars(name, value)
    except ev.EventRejected as exc:
        raise ValueError(str(exc)) from None
    return redact_if_enabled(value, settings)


def find_conversation(conn: sa.Connection, conversation_id: str) -> Any:
    """The conversation's row, or None when the store has not seen it."""
    t = schema.conversations
    return conn.execute(sa.select(t).where(t.c.id == conversation_id)).first()


def shown_id(conversation_id: str, limit: int = 60) -> str:
    """An id as a message quotes it: a pasted page of text is cut to its start and its length, so
    a refusal does not fill the screen with it twice."""
    if len(conversation_id) <= limit:
        return repr(conversation_id)
    return f"{conversation_id[:limit]!r}… ({len(conversation_id):,} characters)"


def require_conversation(conn: sa.Connection, conversation_id: str, *, reading: bool = False) -> Any:
    """The conversation's row, or `ConversationNotFound` (an action says it changed nothing; a
    read, `reading`, has nothing to change)."""
    row = find_conversation(conn, conversation_id)
    if row is None:
        tail = "" if reading else " (nothing was changed)"
        raise ConversationNotFound(
            f"no conversation {shown_id(conversation_id)} in the store: check the id{tail}"
        )
    return row


def handed_back_to_ai(instructions: str | None = None) -> dict[str, Any]:
    """The conversation's columns once the AI has it again: no operator, no reason, no hold."""
    return dict(
        state=STATE_AI,
        operator=None,
        control_reason=None,
        control_priority=None,
        control_since=None,
        ai_handoff_instructions=instructions,
    )


def held_for(row: Any, now: datetime) -> float | None:
    """Seconds since the conversation's gate was closed (None while the AI has it)."""
    return max(0.0, (now - row.control_since).total_seconds()) if row.control_since else None


def add_audit_row(conn: sa.Connection, table: sa.Table, **values: Any) -> int:
    """Append a row to `interventions` or `emergency_actions`; returns its id."""
    return int(conn.execute(sa.insert(table).values(**values)).inserted_primary_key[0])
