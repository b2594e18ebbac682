"""A person takes a conversation over from the AI, replies in it, and hands it back.

`take_control` closes the conversation's gate (state `human`, held by one operator), so every
bot's `ai_may_respond` says no; `send_operator_message` stores the holder's reply for the bot to
deliver; `release_control` hands it back with instructions the bot reads through the SDK;
`intervention_status` says who holds it, since when and why. Each change is one store transaction
(conversation, `interventions` row, activity event), published to Redis after the commit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import auth
from observability import events as ev
from observability.control.common import (
    ActionResult,
    add_audit_row,
    check_conversation_id,
    handed_back_to_ai,
    held_for,
    note,
    require_conversation,
)
from observability.control.errors import ControlConflict
from observability.control.mirror import publish_after_commit
from observability.conversation_state import STATE_AI, STATE_HUMAN, STATE_STOPPED, gate_open, shown_state
from observability.redaction import redact_if_enabled
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.store.control_state import system_stopped
from observability.timeutil import as_aware, resolve_now, to_epoch

log = logging.getLogger(__name__)

PRIORITIES = ("low", "normal", "high", "critical")
PRIORITY_SEVERITY = {"low": "low", "normal": "medium", "high": "high", "critical": "critical"}
NOTIFY_USER_TEXT = "A member of our team has joined the conversation and will reply shortly."


@dataclass(frozen=True)
class InterventionStatus:
    """A conversation's control state as the console shows it (times are aware UTC)."""

    conversation_id: str
    state: str  # ai | human | stopped
    operator: str | None  # who holds it (human) or stopped it (stopped)
    reason: str | None
    priority: str | None
    since: datetime | None  # aware UTC
    held_for_s: float | None
    handoff_instructions: str | None
    notify_user: bool | None
    preserve_ai_suggestions: bool | None
    system_stopped: bool
    ai_may_respond: bool
    bot: str | None
    account_id: str | None
    last_activity_at: datetime | None  # aware UTC
    resolved: bool = False  # handed back resolved, or judged so by the worker's scoring

    @property
    def effective_state(self) -> str:
        """`stopped` while the system-wide stop holds, else `state`: what the console shows."""
        return shown_state(self.system_stopped, self.state) or self.state


def take_control(
    store: Store,
    conversation_id: str,
    user: str,
    reason: str,
    priority: str = "normal",
    notify_user: bool = False,
    preserve_ai_suggestions: bool = True,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Put the conversation in state `human`, held by `user`; every bot's gate closes.

    Refused when it is stopped, or held by someone else; taking over a conversation one already
    holds changes nothing. With `notify_user`, an operator message tells the end user a person
    has joined (the bot delivers it like any operator reply).
    """
    s = settings or get_settings()
    actor = auth.authorize(store, user, "conversations.control", s)
    cid = check_conversation_id(conversation_id)
    reason = note("reason", reason, s, required=True)
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    now = resolve_now(now)
    t = schema.conversations
    message = None
    with store.begin() as conn:
        row = require_conversation(conn, cid)
        if row.state == STATE_STOPPED:
            raise ControlConflict(f"conversation {cid} is stopped; reset it before taking it over")
        if row.state == STATE_HUMAN:
            if row.operator == actor.name:
                return ActionResult("take_control", "already_held", actor.name, cid)
            raise ControlConflict(f"conversation {cid} is already held by {row.operator}")
        changed = conn.execute(
            sa.update(t)
            .where(t.c.id == cid, t.c.state == row.state)
            .values(
                state=STATE_HUMAN,
                operator=actor.name,
                control_reason=reason,
                control_priority=priority,
                control_since=now,
                ai_handoff_instructions=None,
            )
        ).rowcount
        if changed != 1:
            raise ControlConflict(f"conversation {cid} changed meanwhile; look again and retry")
        audit_id = add_audit_row(
            conn,
            schema.interventions,
            conversation_id=cid,
            action="take_control",
            user_name=actor.name,
            reason=reason,
            priority=priority,
            notify_user=bool(notify_user),
            preserve_ai_suggestions=bool(preserve_ai_suggestions),
            outcome="taken",
            started_at=now,
            created_at=now,
        )
        auth.audit_event(
            conn,
            "intervention.take_control",
            f"{actor.name} took over conversation {cid}",
            user=actor.name,
            severity=PRIORITY_SEVERITY[priority],
            category="intervention",
            description=reason,
            conversation_id=cid,
            account_id=row.account_id,
            metadata={"priority": priority, "notify_user": bool(notify_user), "bot": row.bot},
            now=now,
        )
        if notify_user:
            message = _insert_operator_message(conn, store, row, actor.name, NOTIFY_USER_TEXT, now)
    published = publish_after_commit(
        store,
        s,
        redis,
        f"take-over of {cid}",
        conversation_state=(cid, STATE_HUMAN),
        operator_message=_wire_message(message) if message else None,
        live={
            "action": "take_control",
            "conversation_id": cid,
            "state": STATE_HUMAN,
            "user": actor.name,
            "reason": reason,
            "priority": priority,
        },  # fmt: skip
    )
    log.info("conversation %s taken over by %s (priority %s)", cid, actor.name, priority)
    return ActionResult(
        "take_control", "taken", actor.name, cid, audit_id, message["id"] if message else None, published
    )


def send_operator_message(
    store: Store,
    conversation_id: str,
    user: str,
    text: str,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Store an operator reply (PII-redacted, author=user) for the bot to deliver to the end user.

    Only the operator holding the conversation may reply. Bots receive it through the SDK
    (`client.on_operator_message(callback)` or `client.operator_messages(conversation_id)`).
    """
    s = settings or get_settings()
    actor = auth.authorize(store, user, "conversations.control", s)
    cid = check_conversation_id(conversation_id)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the reply is empty")
    try:
        ev.check_text("text", text, s.sdk_max_text_bytes)
    except ev.EventRejected as exc:
        raise ValueError(str(exc)) from None
    text = redact_if_enabled(text.strip(), s)
    now = resolve_now(now)
    with store.begin() as conn:
        row = require_conversation(conn, cid)
        if row.state != STATE_HUMAN:
            raise ControlConflict(
                f"take conversation {cid} over before replying (it is in state {row.state})"
            )
        if row.operator != actor.name:
            raise ControlConflict(f"conversation {cid} is held by {row.operator}; only they can reply")
        message = _insert_operator_message(conn, store, row, actor.name, text, now)
        audit_id = add_audit_row(
            conn,
            schema.interventions,
            conversation_id=cid,
            action="reply",
            user_name=actor.name,
            outcome="sent",
            created_at=now,
        )
        auth.audit_event(
            conn,
            "intervention.reply",
            f"{actor.name} replied in conversation {cid}",
            user=actor.name,
            category="intervention",
            conversation_id=cid,
            account_id=row.account_id,
            metadata={"message_id": message["id"]},
            now=now,
        )
    published = publish_after_commit(
        store, s, redis, f"operator reply in {cid}", operator_message=_wire_message(message)
    )
    return ActionResult("reply", "sent", actor.name, cid, audit_id, message["id"], published)


def release_control(
    store: Store,
    conversation_id: str,
    user: str,
    summary: str,
    ai_handoff_instructions: str | None = None,
    mark_resolved: bool = False,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Hand the conversation back to the AI, with instructions the bot reads through the SDK
    (`client.handoff_instructions(conversation_id)`). The holder or an admin may release."""
    s = settings or get_settings()
    actor = auth.authorize(store, user, "conversations.control", s)
    cid = check_conversation_id(conversation_id)
    summary = note("summary", summary, s, required=True)
    instructions = note("ai_handoff_instructions", ai_handoff_instructions, s, required=False)
    now = resolve_now(now)
    t = schema.conversations
    with store.begin() as conn:
        row = require_conversation(conn, cid)
        if row.state != STATE_HUMAN:
            raise ControlConflict(f"conversation {cid} is not held by a human (state {row.state})")
        if row.operator != actor.name and actor.role != auth.ADMIN:
            raise ControlConflict(
                f"conversation {cid} is held by {row.operator}; only they or an admin can release it"
            )
        values = handed_back_to_ai(instructions)
        if mark_resolved:
            values["resolved"] = True
        changed = conn.execute(
            sa.update(t)
            .where(t.c.id == cid, t.c.state == STATE_HUMAN, t.c.operator == row.operator)
            .values(**values)
        ).rowcount
        if changed != 1:
            raise ControlConflict(f"conversation {cid} changed meanwhile; look again and retry")
        duration = held_for(row, now)
        outcome = "resolved" if mark_resolved else "returned_to_ai"
        audit_id = add_audit_row(
            conn,
            schema.interventions,
            conversation_id=cid,
            action="release_control",
            user_name=actor.name,
            reason=row.control_reason,
            priority=row.control_priority,
            summary=summary,
            ai_handoff_instructions=instructions,
            outcome=outcome,
            started_at=row.control_since,
            ended_at=now,
            duration_s=duration,
            created_at=now,
        )
        auth.audit_event(
            conn,
            "intervention.release_control",
            f"{actor.name} returned conversation {cid} to the AI",
            user=actor.name,
            category="intervention",
            description=summary,
            conversation_id=cid,
            account_id=row.account_id,
            metadata={"outcome": outcome, "duration_s": duration, "held_by": row.operator},
            now=now,
        )
    published = publish_after_commit(
        store, s, redis, f"release of {cid}", conversation_state=(cid, STATE_AI),
        live={"action": "release_control", "conversation_id": cid, "state": STATE_AI, "user": actor.name,
              "outcome": outcome},
    )  # fmt: skip
    log.info("conversation %s returned to the AI by %s", cid, actor.name)
    return ActionResult("release_control", outcome, actor.name, cid, audit_id, None, published)


def intervention_status(
    store: Store,
    conversation_id: str,
    user: str | None = None,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> InterventionStatus:
    """Who holds the conversation, since when and why; whether the AI may respond.

    A read: with `user` given it checks `dashboards.view` for that user.
    """
    if user is not None:
        auth.authorize(store, user, "dashboards.view", settings)
    cid = check_conversation_id(conversation_id)
    now = resolve_now(now)
    it = schema.interventions
    with store.connect() as conn:
        row = require_conversation(conn, cid, reading=True)
        stopped_all = system_stopped(conn)
        take = None
        if row.state == STATE_HUMAN:
            take = conn.execute(
                sa.select(it.c.notify_user, it.c.preserve_ai_suggestions)
                .where(it.c.conversation_id == cid, it.c.action == "take_control")
                .order_by(it.c.created_at.desc(), it.c.id.desc())
                .limit(1)
            ).first()
    return InterventionStatus(
        conversation_id=cid,
        state=row.state,
        operator=row.operator,
        reason=row.control_reason,
        priority=row.control_priority,
        since=as_aware(row.control_since),
        held_for_s=held_for(row, now) if row.state != STATE_AI else None,
        handoff_instructions=row.ai_handoff_instructions,
        notify_user=bool(take.notify_user) if take else None,
        preserve_ai_suggestions=bool(take.preserve_ai_suggestions) if take else None,
        system_stopped=stopped_all,
        ai_may_respond=gate_open(stopped_all, row.state),
        bot=row.bot,
        account_id=row.account_id,
        last_activity_at=as_aware(row.last_activity_at),
        resolved=bool(row.resolved),
    )


def _insert_operator_message(
    conn: sa.Connection, store: Store, row: Any, author: str, text: str, now: datetime
) -> dict:
    message = {
        "id": uuid.uuid4().hex,
        "ts": now,
        "conversation_id": row.id,
        "role": "operator",
        "text": text,
        "bot": row.bot,
        "account_id": row.account_id,
        "author": author,
    }
    conn.execute(sa.insert(schema.messages).values(**message))
    t = schema.conversations
    conn.execute(
        sa.update(t)
        .where(t.c.id == row.id)
        .values(last_activity_at=store.greatest(t.c.last_activity_at, now))
    )
    return message


def _wire_message(message: dict) -> dict:
    """An operator message as published to the bots (what `on_operator_message` callbacks get)."""
    return {
        "id": message["id"],
        "conversation_id": message["conversation_id"],
        "ts": to_epoch(message["ts"]),
        "text": message["text"],
        "author": message["author"],
    }
