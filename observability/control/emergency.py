"""Emergency stops: stop or reset one conversation, stop or resume every bot at once.

A stop closes the gate until someone resets it, whatever the conversation's state (a take-over in
progress ends, and its duration is recorded). The system-wide stop and resume are for admins; they
need the typed phrase when EMERGENCY_CONFIRMATION_REQUIRED. A stop is never refused for being too frequent (stopping is
always safe); resuming is rate-limited per user (EMERGENCY_RATE_LIMIT_PER_MIN, counting every
system-wide action of the last minute), so a stuck button or a script cannot flap every bot. Each action is
one store transaction with an `emergency_actions` row and an activity event, published to Redis
after the commit.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability import auth
from observability.control.common import (
    ActionResult,
    add_audit_row,
    check_conversation_id,
    handed_back_to_ai,
    held_for,
    note,
    require_conversation,
)
from observability.control.errors import ConfirmationRequired, ControlConflict, RateLimited
from observability.control.mirror import publish_after_commit
from observability.conversation_state import STATE_AI, STATE_HUMAN, STATE_STOPPED, SYSTEM_STOP_KEY
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.store.control_state import as_dict, system_stopped
from observability.timeutil import as_aware, resolve_now

log = logging.getLogger(__name__)

STOP_PHRASE = "STOP ALL"
RESUME_PHRASE = "RESUME ALL"


def stop_conversation(
    store: Store,
    conversation_id: str,
    user: str,
    reason: str,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Emergency stop of one conversation: no bot may respond in it until it is reset.

    Refused (`ConversationNotFound`) for an id the store has never seen, so a typo never leaves a
    phantom conversation behind; a take-over in progress ends (its duration is recorded).
    """
    s = settings or get_settings()
    actor = auth.authorize(store, user, "conversations.stop", s)
    cid = check_conversation_id(conversation_id)
    reason = note("reason", reason, s, required=True)
    now = resolve_now(now)
    t = schema.conversations
    with store.begin() as conn:
        row = require_conversation(conn, cid)
        previous, account = row.state, row.account_id
        if row.state == STATE_STOPPED:
            outcome = "already_stopped"
        else:
            conn.execute(
                sa.update(t)
                .where(t.c.id == cid)
                .values(
                    state=STATE_STOPPED,
                    operator=actor.name,
                    control_reason=reason,
                    control_priority="critical",
                    control_since=now,
                )
            )
            outcome = "stopped"
            if row.state == STATE_HUMAN:
                _close_take_over(conn, row, actor.name, "ended_by_emergency_stop", now)
        audit_id = _record(
            conn,
            "stop",
            f"{actor.name} stopped conversation {cid}",
            cid,
            actor.name,
            reason,
            outcome,
            now,
            severity="high",
            account_id=account,
            metadata={"previous_state": previous, "outcome": outcome},
        )
    published = publish_after_commit(
        store, s, redis, f"stop of {cid}", conversation_state=(cid, STATE_STOPPED),
        live={"action": "stop", "conversation_id": cid, "state": STATE_STOPPED, "user": actor.name,
              "reason": reason, "outcome": outcome},
    )  # fmt: skip
    log.warning("conversation %s stopped by %s", cid, actor.name)
    return ActionResult("stop", outcome, actor.name, cid, audit_id, None, published)


def reset_conversation(
    store: Store,
    conversation_id: str,
    user: str,
    reason: str,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Emergency reset: back to the AI with a clean control state (no operator, no instructions).

    Ends a stop or a take-over (its duration is recorded); the system-wide stop still applies.
    A take-over is ended only by its holder or an admin, as with `release_control`: another
    operator gets `ControlConflict` (the conversation is someone else's now, as for a release or a
    reply: the API answers 409 for all three) and nothing changes.
    """
    s = settings or get_settings()
    actor = auth.authorize(store, user, "conversations.stop", s)
    cid = check_conversation_id(conversation_id)
    reason = note("reason", reason, s, required=True)
    now = resolve_now(now)
    t = schema.conversations
    with store.begin() as conn:
        row = require_conversation(conn, cid)
        if row.state == STATE_HUMAN and row.operator != actor.name and actor.role != auth.ADMIN:
            raise ControlConflict(
                f"conversation {cid} is held by {row.operator}; only they or an admin can reset it"
            )
        conn.execute(sa.update(t).where(t.c.id == cid).values(**handed_back_to_ai()))
        if row.state == STATE_HUMAN:
            _close_take_over(conn, row, actor.name, "ended_by_reset", now)
        outcome = f"reset_from_{row.state}"
        audit_id = _record(
            conn,
            "reset",
            f"{actor.name} reset conversation {cid}",
            cid,
            actor.name,
            reason,
            outcome,
            now,
            severity="medium",
            account_id=row.account_id,
            metadata={"previous_state": row.state},
        )
    published = publish_after_commit(
        store, s, redis, f"reset of {cid}", conversation_state=(cid, STATE_AI),
        live={"action": "reset", "conversation_id": cid, "state": STATE_AI, "user": actor.name,
              "reason": reason, "outcome": outcome},
    )  # fmt: skip
    log.warning("conversation %s reset by %s (was %s)", cid, actor.name, row.state)
    return ActionResult("reset", outcome, actor.name, cid, audit_id, None, published)


def system_wide_stop(
    store: Store,
    user: str,
    reason: str,
    confirmation: str | None = None,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Stop every conversation at once (admin). Needs `confirmation="STOP ALL"` when
    EMERGENCY_CONFIRMATION_REQUIRED (the default); never rate-limited: stopping is always safe."""
    return _set_system(store, settings or get_settings(), user, reason, confirmation, True, redis, now)


def system_resume(
    store: Store,
    user: str,
    reason: str | None = None,
    confirmation: str | None = None,
    *,
    redis: Any | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """Lift the system-wide stop (admin). Needs `confirmation="RESUME ALL"` when
    EMERGENCY_CONFIRMATION_REQUIRED; rate-limited per user. Stopped or held conversations stay so."""
    return _set_system(store, settings or get_settings(), user, reason, confirmation, False, redis, now)


def system_status(store: Store) -> dict:
    """{"stopped": bool, "reason", "by", "at" (aware datetime)} of the last system-wide stop or resume."""
    cs = schema.control_state
    with store.connect() as conn:
        row = conn.execute(sa.select(cs.c.value).where(cs.c.key == SYSTEM_STOP_KEY)).first()
    value = as_dict(row[0]) if row else {}
    at = value.get("at")
    try:
        at = datetime.fromisoformat(at) if isinstance(at, str) else None
    except ValueError:
        at = None
    return {
        "stopped": bool(value.get("stopped")),
        "reason": value.get("reason"),
        "by": value.get("by"),
        "at": at,
    }


def _record(
    conn: sa.Connection,
    action: str,
    title: str,
    cid: str,
    user: str,
    reason: str | None,
    outcome: str,
    now: datetime,
    *,
    severity: str,
    account_id: str | None,
    metadata: dict,
) -> int:
    """The `emergency_actions` row and the activity event of a stop or reset; returns the row's id."""
    audit_id = add_audit_row(
        conn,
        schema.emergency_actions,
        action=action,
        scope="conversation",
        conversation_id=cid,
        user_name=user,
        reason=reason,
        confirmed=False,
        outcome=outcome,
        created_at=now,
    )
    auth.audit_event(
        conn,
        f"emergency.{action}",
        title,
        user=user,
        severity=severity,
        category="emergency",
        description=reason,
        conversation_id=cid,
        account_id=account_id,
        metadata=metadata,
        now=now,
    )
    return audit_id


def _close_take_over(conn: sa.Connection, row: Any, user: str, outcome: str, now: datetime) -> None:
    """An emergency ends a take-over: record how long it lasted, as a release would."""
    add_audit_row(
        conn,
        schema.interventions,
        conversation_id=row.id,
        action="release_control",
        user_name=user,
        reason=row.control_reason,
        priority=row.control_priority,
        outcome=outcome,
        started_at=row.control_since,
        ended_at=now,
        duration_s=held_for(row, now),
        created_at=now,
    )


def _check_confirmation(s: Settings, confirmation: str | None, phrase: str) -> bool:
    given = confirmation.strip() if isinstance(confirmation, str) else None
    if s.emergency_confirmation_required and given != phrase:
        raise ConfirmationRequired(f'type "{phrase}" to confirm')
    return given == phrase


def _check_rate(conn: sa.Connection, s: Settings, user: str, now: datetime) -> None:
    limit = s.emergency_rate_limit_per_min
    if limit <= 0:
        return
    e = schema.emergency_actions
    times = (
        conn.execute(
            sa.select(e.c.created_at)
            .where(e.c.scope == "system", e.c.user_name == user, e.c.created_at > now - timedelta(minutes=1))
            .order_by(e.c.created_at)
        )
        .scalars()
        .all()
    )
    if len(times) >= limit:
        retry = max(1.0, (times[len(times) - limit] + timedelta(minutes=1) - now).total_seconds())
        raise RateLimited(
            f"at most {limit} system-wide emergency actions per minute before a resume; try again in "
            f"{retry:.0f} s (a stop is never limited)",
            retry,
        )


def _set_system(
    store: Store,
    s: Settings,
    user: str,
    reason: str | None,
    confirmation: str | None,
    stop: bool,
    redis: Any | None,
    now: datetime | None,
) -> ActionResult:
    """The system-wide stop (`stop=True`) or resume: one flag in `control_state`, audited."""
    action, phrase = ("system_stop", STOP_PHRASE) if stop else ("system_resume", RESUME_PHRASE)
    actor = auth.authorize(store, user, "system.stop", s)
    reason = note("reason", reason, s, required=stop)
    confirmed = _check_confirmation(s, confirmation, phrase)
    now = resolve_now(now)
    with store.begin() as conn:
        if not stop:
            _check_rate(conn, s, actor.name, now)
        was = system_stopped(conn)
        changed = was != stop
        if changed:  # a second stop keeps who stopped it, why and when (it overwrote all three)
            value = {"stopped": stop, "reason": reason, "by": actor.name, "at": as_aware(now).isoformat()}
            stmt = store.insert(schema.control_state).values(
                key=SYSTEM_STOP_KEY, value=value, updated_by=actor.name, updated_at=now
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["key"], set_={"value": value, "updated_by": actor.name, "updated_at": now}
                )
            )
        if stop:
            outcome = "already_stopped" if was else "stopped"
        else:
            outcome = "resumed" if was else "not_stopped"
        audit_id = add_audit_row(
            conn,
            schema.emergency_actions,
            action=action,
            scope="system",
            conversation_id=None,
            user_name=actor.name,
            reason=reason,
            confirmed=confirmed,
            outcome=outcome,
            created_at=now,
        )
        if not changed:  # the feed says nothing changed, not "stopped every conversation" again
            title = (f"{actor.name} asked for a system-wide stop: already stopped, nothing changed" if stop
                     else f"{actor.name} asked to resume: no system-wide stop held, nothing changed")  # fmt: skip
        elif stop:
            title = f"{actor.name} stopped every conversation (system-wide stop)"
        else:
            title = f"{actor.name} resumed every conversation"
        auth.audit_event(
            conn,
            f"emergency.{action}",
            title,
            user=actor.name,
            severity=("critical" if stop else "high") if changed else "medium",
            category="emergency",
            description=reason,
            metadata={"outcome": outcome, "confirmed": confirmed},
            now=now,
        )
    published = publish_after_commit(
        store, s, redis, f"system-wide {action}", system_stop=stop,
        live={"action": action, "conversation_id": None, "system_stopped": stop, "user": actor.name,
              "reason": reason, "outcome": outcome} if changed else None,  # no news for live clients
    )  # fmt: skip
    log.warning("%s by %s: %s", action, actor.name, outcome)
    return ActionResult(action, outcome, actor.name, None, audit_id, None, published)
