"""Human take-over of conversations, emergency stops and their audit trail.

Every function here takes the acting user (a user name), checks it with `auth.authorize` itself
and raises `auth.PermissionDenied` when that user's role may not act; pages only hide buttons.
Each state change is one store transaction that changes the conversation (or the system-stop
flag), appends an audit row (`interventions` or `emergency_actions`: who, when, why, outcome,
how long a take-over lasted) and an activity-feed event. After the commit the new state is
published to Redis (when `REDIS_URL` is set, or a client is passed as `redis=`), so every bot's
`ObservabilityClient.ai_may_respond` answers from it at once; without Redis the bots poll the
store at most `CONTROL_CACHE_S` (0.5 s) apart. Either way a gate closes within a second.

Take-over (conversations.control): `take_control`, `send_operator_message`, `suggest_response`,
`release_control`; `intervention_status` reads. Emergency (conversations.stop): `stop_conversation`,
`reset_conversation`; (system.stop, admin): `system_wide_stop`, `system_resume`, which need the
typed phrase when `EMERGENCY_CONFIRMATION_REQUIRED` and are rate-limited per user
(`EMERGENCY_RATE_LIMIT_PER_MIN`).

Audit rows are append-only: this module (and the whole package) offers no function that edits or
deletes `interventions` or `emergency_actions`; the console only reads them (`intervention_history`,
`emergency_history`).

Errors are `ControlError` subclasses whose message is safe to show: `ConversationNotFound`,
`ControlConflict` (stopped, or held by someone else), `ConfirmationRequired`, `RateLimited`;
bad arguments raise `ValueError`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability import auth, keys
from observability import conversation_state as states
from observability import events as ev
from observability.control import mirror
from observability.control.mirror import sync_gates
from observability.redaction import redact_if_enabled
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.store.control_state import as_dict
from observability.timeutil import as_aware, resolve_now, to_epoch, to_naive_utc, utcnow

log = logging.getLogger(__name__)

PRIORITIES = ("low", "normal", "high", "critical")
PRIORITY_SEVERITY = {"low": "low", "normal": "medium", "high": "high", "critical": "critical"}
STOP_PHRASE = "STOP ALL"
RESUME_PHRASE = "RESUME ALL"
NOTIFY_USER_TEXT = "A member of our team has joined the conversation and will reply shortly."
MAX_NOTE = 4000  # reason, summary, instructions

AI, HUMAN, STOPPED = states.STATE_AI, states.STATE_HUMAN, states.STATE_STOPPED


class ControlError(Exception):
    """A control action that cannot be done now; the message says why and is safe to show."""


class ConversationNotFound(ControlError, LookupError):
    pass


class ControlConflict(ControlError):
    """The conversation's state does not allow the action (stopped, or held by someone else)."""


class ConfirmationRequired(ControlError):
    pass


class RateLimited(ControlError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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


@dataclass(frozen=True)
class InterventionStatus:
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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Suggestion:
    """A draft reply for the operator; `label` says where it came from (show it with the draft)."""

    text: str | None
    source: str  # "claude" | "similar_conversation" | "none"
    label: str
    model: str | None = None
    similar_conversation_id: str | None = None
    similarity: float | None = None
    notes: list[str] = field(default_factory=list)


# ---- small helpers ----------------------------------------------------------------------------


def _settings(settings: Settings | None) -> Settings:
    return settings or get_settings()


def _conversation_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("conversation id is required")
    if len(value) > 100:
        raise ValueError("conversation id is longer than 100 characters")
    return value


def _note(name: str, value: Any, settings: Settings, *, required: bool) -> str | None:
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


def _conversation(conn: sa.Connection, conversation_id: str) -> Any:
    t = schema.conversations
    return conn.execute(sa.select(t).where(t.c.id == conversation_id)).first()


def _require_conversation(conn: sa.Connection, conversation_id: str) -> Any:
    row = _conversation(conn, conversation_id)
    if row is None:
        raise ConversationNotFound(f"no conversation {conversation_id!r} in the store")
    return row


def _system_stop(conn: sa.Connection) -> dict:
    row = conn.execute(
        sa.select(schema.control_state.c.value).where(schema.control_state.c.key == states.SYSTEM_STOP_KEY)
    ).first()
    return as_dict(row[0]) if row else {}


def _intervention(conn: sa.Connection, **values: Any) -> int:
    values.setdefault("created_at", values.get("ended_at") or values.get("started_at") or utcnow())
    result = conn.execute(sa.insert(schema.interventions).values(**values))
    return int(result.inserted_primary_key[0])


def _emergency(conn: sa.Connection, **values: Any) -> int:
    result = conn.execute(sa.insert(schema.emergency_actions).values(**values))
    return int(result.inserted_primary_key[0])


def _held_for(row: Any, now: datetime) -> float | None:
    return max(0.0, (now - row.control_since).total_seconds()) if row.control_since else None


def _close_take_over(conn: sa.Connection, row: Any, user: str, outcome: str, now: datetime) -> None:
    """An emergency ends a take-over: record how long it lasted, as a release would."""
    _intervention(
        conn,
        conversation_id=row.id,
        action="release_control",
        user_name=user,
        reason=row.control_reason,
        priority=row.control_priority,
        outcome=outcome,
        started_at=row.control_since,
        ended_at=now,
        duration_s=_held_for(row, now),
        created_at=now,
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


# ---- Redis ------------------------------------------------------------------------------------

_redis_clients: dict[str, Any] = {}


def redis_client(settings: Settings | None = None) -> Any | None:
    """The process's Redis client for REDIS_URL (None without Redis)."""
    s = _settings(settings)
    if not s.redis_url:
        return None
    client = _redis_clients.get(s.redis_url)
    if client is None:
        import redis as redis_lib

        client = redis_lib.Redis.from_url(s.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        _redis_clients[s.redis_url] = client
    return client


def _publish(
    store: Store, settings: Settings, redis: Any | None, what: str, *publications: tuple
) -> bool | None:
    """Publish after the commit. A failure is logged, never raised: the store already holds the
    change, and the synced marker is dropped so bots read the store until the worker re-mirrors."""
    client = redis if redis is not None else redis_client(settings)
    if client is None:
        return None
    prefix = settings.redis_prefix
    try:
        for kind, *args in publications:
            if kind == "conversation":
                mirror.publish_conversation_state(client, prefix, *args)
            elif kind == "system":
                mirror.publish_system_stop(client, prefix, *args)
            elif kind == "message":
                client.publish(keys.control_channel(prefix), json.dumps({"operator_message": args[0]}))
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


# ---- take-over --------------------------------------------------------------------------------


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
    s = _settings(settings)
    actor = auth.authorize(store, user, "conversations.control", s)
    cid = _conversation_id(conversation_id)
    reason = _note("reason", reason, s, required=True)
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    now = resolve_now(now)
    t = schema.conversations
    message = None
    with store.begin() as conn:
        row = _require_conversation(conn, cid)
        if row.state == STOPPED:
            raise ControlConflict(f"conversation {cid} is stopped; reset it on the Emergency page first")
        if row.state == HUMAN:
            if row.operator == actor.name:
                return ActionResult("take_control", "already_held", actor.name, cid)
            raise ControlConflict(f"conversation {cid} is already held by {row.operator}")
        changed = conn.execute(
            sa.update(t)
            .where(t.c.id == cid, t.c.state == row.state)
            .values(
                state=HUMAN,
                operator=actor.name,
                control_reason=reason,
                control_priority=priority,
                control_since=now,
                ai_handoff_instructions=None,
            )
        ).rowcount
        if changed != 1:
            raise ControlConflict(f"conversation {cid} changed meanwhile; look again and retry")
        audit_id = _intervention(
            conn,
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
    pubs: list[tuple] = [("conversation", cid, HUMAN)]
    if message:
        pubs.append(("message", _wire_message(message)))
    published = _publish(store, s, redis, f"take-over of {cid}", *pubs)
    log.info("conversation %s taken over by %s (priority %s)", cid, actor.name, priority)
    return ActionResult(
        "take_control", "taken", actor.name, cid, audit_id, message["id"] if message else None, published
    )


def _wire_message(message: dict) -> dict:
    return {
        "id": message["id"],
        "conversation_id": message["conversation_id"],
        "ts": to_epoch(message["ts"]),
        "text": message["text"],
        "author": message["author"],
    }


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
    s = _settings(settings)
    actor = auth.authorize(store, user, "conversations.control", s)
    cid = _conversation_id(conversation_id)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the reply is empty")
    try:
        ev.check_text("text", text, s.sdk_max_text_bytes)
    except ev.EventRejected as exc:
        raise ValueError(str(exc)) from None
    text = redact_if_enabled(text.strip(), s)
    now = resolve_now(now)
    with store.begin() as conn:
        row = _require_conversation(conn, cid)
        if row.state != HUMAN:
            raise ControlConflict(
                f"take conversation {cid} over before replying (it is in state {row.state})"
            )
        if row.operator != actor.name:
            raise ControlConflict(f"conversation {cid} is held by {row.operator}; only they can reply")
        message = _insert_operator_message(conn, store, row, actor.name, text, now)
        audit_id = _intervention(
            conn, conversation_id=cid, action="reply", user_name=actor.name, outcome="sent", created_at=now
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
    published = _publish(store, s, redis, f"operator reply in {cid}", ("message", _wire_message(message)))
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
    s = _settings(settings)
    actor = auth.authorize(store, user, "conversations.control", s)
    cid = _conversation_id(conversation_id)
    summary = _note("summary", summary, s, required=True)
    instructions = _note("ai_handoff_instructions", ai_handoff_instructions, s, required=False)
    now = resolve_now(now)
    t = schema.conversations
    with store.begin() as conn:
        row = _require_conversation(conn, cid)
        if row.state != HUMAN:
            raise ControlConflict(f"conversation {cid} is not held by a human (state {row.state})")
        if row.operator != actor.name and actor.role != auth.ADMIN:
            raise ControlConflict(
                f"conversation {cid} is held by {row.operator}; only they or an admin can release it"
            )
        values: dict[str, Any] = dict(
            state=AI,
            operator=None,
            control_reason=None,
            control_priority=None,
            control_since=None,
            ai_handoff_instructions=instructions,
        )
        if mark_resolved:
            values["resolved"] = True
        changed = conn.execute(
            sa.update(t)
            .where(t.c.id == cid, t.c.state == HUMAN, t.c.operator == row.operator)
            .values(**values)
        ).rowcount
        if changed != 1:
            raise ControlConflict(f"conversation {cid} changed meanwhile; look again and retry")
        duration = _held_for(row, now)
        outcome = "resolved" if mark_resolved else "returned_to_ai"
        audit_id = _intervention(
            conn,
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
    published = _publish(store, s, redis, f"release of {cid}", ("conversation", cid, AI))
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
    cid = _conversation_id(conversation_id)
    now = resolve_now(now)
    it = schema.interventions
    with store.connect() as conn:
        row = _require_conversation(conn, cid)
        system_stopped = bool(_system_stop(conn).get("stopped"))
        take = None
        if row.state == HUMAN:
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
        held_for_s=_held_for(row, now) if row.state != AI else None,
        handoff_instructions=row.ai_handoff_instructions,
        notify_user=bool(take.notify_user) if take else None,
        preserve_ai_suggestions=bool(take.preserve_ai_suggestions) if take else None,
        system_stopped=system_stopped,
        ai_may_respond=states.gate_open(system_stopped, row.state),
        bot=row.bot,
        account_id=row.account_id,
        last_activity_at=as_aware(row.last_activity_at),
    )


# ---- suggestions ------------------------------------------------------------------------------

SUGGEST_SYSTEM_PROMPT = (
    "You help a human operator who has taken over a customer conversation from an AI assistant. "
    "Draft the operator's next reply to the customer: short, friendly, accurate, and in the "
    "customer's language. Do not invent facts, prices or commitments; if something is unknown, "
    "say the team will check. Placeholders like [email redacted] hide personal data: never ask "
    "for it to be repeated in chat. Answer with the reply text only."
)
SUGGEST_MAX_MESSAGES = 40
SIMILAR_MAX_CONVERSATIONS = 500
SIMILAR_MAX_MESSAGES = 20_000
SIMILAR_MIN_SCORE = 0.1


def suggest_response(
    store: Store,
    conversation_id: str,
    user: str,
    *,
    settings: Settings | None = None,
    anthropic_client: Any | None = None,
) -> Suggestion:
    """A draft reply for the operator, labelled with its source.

    With ANTHROPIC_API_KEY (or an `anthropic_client`), Claude drafts it from the transcript (the
    call is recorded as an LLM call of bot `console`, so it shows in cost tracking). Otherwise, or
    if Claude fails, it is the reply that followed the most similar user message in a resolved
    conversation of the store (TF-IDF, cosine similarity).
    """
    s = _settings(settings)
    auth.authorize(store, user, "conversations.control", s)
    cid = _conversation_id(conversation_id)
    with store.connect() as conn:
        _require_conversation(conn, cid)
    history = transcript(store, cid, limit=SUGGEST_MAX_MESSAGES)
    if not history:
        return Suggestion(None, "none", "No messages in this conversation yet: nothing to suggest from.")
    notes: list[str] = []
    if anthropic_client is not None or s.anthropic_api_key:
        try:
            return _claude_suggestion(store, s, cid, history, anthropic_client)
        except Exception as exc:  # noqa: BLE001 - fall back to the store
            log.warning("Claude suggestion failed (%s); using similar conversations", type(exc).__name__)
            notes.append(f"Claude was unavailable ({type(exc).__name__}).")
    suggestion = _similar_suggestion(store, cid, history)
    if notes:
        suggestion = Suggestion(**{**asdict(suggestion), "notes": notes + suggestion.notes})
    return suggestion


def _format_transcript(history: list[dict]) -> str:
    names = {"user": "Customer", "bot": "AI assistant", "operator": "Operator"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['text']}" for m in history)


def _claude_suggestion(
    store: Store, s: Settings, cid: str, history: list[dict], client: Any | None
) -> Suggestion:
    if client is None:
        import anthropic

        client = anthropic.Anthropic(api_key=s.anthropic_api_key, timeout=30.0, max_retries=1)
    started = time.perf_counter()
    response = client.messages.create(
        model=s.suggest_model,
        max_tokens=400,
        system=SUGGEST_SYSTEM_PROMPT,
        messages=[
            {
                "role": "user",
                "content": f"Conversation so far:\n\n{_format_transcript(history)}\n\n"
                "Draft the operator's next reply.",
            }
        ],
    )
    latency_ms = (time.perf_counter() - started) * 1000
    text = "".join(
        getattr(b, "text", "") for b in response.content if getattr(b, "type", "text") == "text"
    ).strip()
    _record_suggestion_call(store, s, cid, response, latency_ms)
    if not text:
        raise ValueError("empty completion")
    return Suggestion(
        text,
        "claude",
        f"Drafted by Claude ({s.suggest_model}): review before sending.",
        model=s.suggest_model,
    )


def _record_suggestion_call(store: Store, s: Settings, cid: str, response: Any, latency_ms: float) -> None:
    try:
        from observability.sdk.client import usage_tokens
        from observability.store.ingest import write_batch

        it, ot, cr, cw = usage_tokens(response.usage)
        model = getattr(response, "model", None) or s.suggest_model
        write_batch(
            store,
            [
                [
                    ev.KIND_LLM,
                    uuid.uuid4().hex,
                    time.time(),
                    "console",
                    "operator_suggestion",
                    "suggest_response",
                    model,
                    "anthropic",
                    it,
                    ot,
                    cr,
                    cw,
                    float(latency_ms),
                    False,
                    None,
                    cid,
                    True,
                    None,
                ]
            ],
            s,
        )
    except Exception as exc:  # noqa: BLE001 - bookkeeping never fails the suggestion
        log.warning("could not record the suggestion's LLM call: %s", type(exc).__name__)


def _similar_suggestion(store: Store, cid: str, history: list[dict]) -> Suggestion:
    query = next((m["text"] for m in reversed(history) if m["role"] == "user" and m["text"].strip()), None)
    if not query:
        return Suggestion(None, "none", "No customer message to match yet: nothing to suggest.")
    pairs = _resolved_pairs(store, cid)
    if not pairs:
        return Suggestion(None, "none", "No resolved conversations in the store yet to suggest from.")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    try:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode")
        matrix = vectorizer.fit_transform([p[1] for p in pairs])
        scores = linear_kernel(vectorizer.transform([query]), matrix).ravel()
    except ValueError:  # empty vocabulary (only punctuation, say)
        return Suggestion(None, "none", "No similar resolved conversation found.")
    best = int(scores.argmax())
    score = float(scores[best])
    if score < SIMILAR_MIN_SCORE:
        return Suggestion(None, "none", "No similar resolved conversation found.", similarity=round(score, 3))
    conv, _user_text, reply = pairs[best]
    return Suggestion(
        reply,
        "similar_conversation",
        f"Not AI-generated: the reply that followed the most similar customer message in resolved "
        f"conversation {conv} (similarity {score:.2f}). Review before sending.",
        similar_conversation_id=conv,
        similarity=round(score, 3),
    )


def _resolved_pairs(store: Store, exclude: str) -> list[tuple[str, str, str]]:
    """(conversation, user message, the bot or operator reply that followed) from resolved ones."""
    c, m = schema.conversations, schema.messages
    with store.connect() as conn:
        ids = (
            conn.execute(
                sa.select(c.c.id)
                .where(c.c.resolved == sa.true(), c.c.id != exclude)
                .order_by(c.c.last_activity_at.desc())
                .limit(SIMILAR_MAX_CONVERSATIONS)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        rows = conn.execute(
            sa.select(m.c.conversation_id, m.c.role, m.c.text)
            .where(m.c.conversation_id.in_(ids))
            .order_by(m.c.conversation_id, m.c.ts, m.c.id)
            .limit(SIMILAR_MAX_MESSAGES)
        ).all()
    pairs = []
    for prev, nxt in zip(rows, rows[1:], strict=False):
        if (
            prev.conversation_id == nxt.conversation_id
            and prev.role == "user"
            and nxt.role in ("bot", "operator")
            and prev.text.strip()
            and nxt.text.strip()
        ):
            pairs.append((prev.conversation_id, prev.text, nxt.text))
    return pairs


# ---- emergency --------------------------------------------------------------------------------


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

    Works for a conversation the store has not seen yet (it is created stopped); a take-over in
    progress ends (its duration is recorded).
    """
    s = _settings(settings)
    actor = auth.authorize(store, user, "conversations.stop", s)
    cid = _conversation_id(conversation_id)
    reason = _note("reason", reason, s, required=True)
    now = resolve_now(now)
    t = schema.conversations
    with store.begin() as conn:
        row = _conversation(conn, cid)
        stopped = dict(
            state=STOPPED,
            operator=actor.name,
            control_reason=reason,
            control_priority="critical",
            control_since=now,
        )
        if row is None:
            stmt = store.insert(t).values(
                id=cid, started_at=now, last_activity_at=now, message_count=0, **stopped
            )
            conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=stopped))
            outcome, previous, account = "stopped", None, None
        else:
            previous, account = row.state, row.account_id
            if row.state == STOPPED:
                outcome = "already_stopped"
            else:
                conn.execute(sa.update(t).where(t.c.id == cid).values(**stopped))
                outcome = "stopped"
                if row.state == HUMAN:
                    _close_take_over(conn, row, actor.name, "ended_by_emergency_stop", now)
        audit_id = _emergency(
            conn,
            action="stop",
            scope="conversation",
            conversation_id=cid,
            user_name=actor.name,
            reason=reason,
            confirmed=False,
            outcome=outcome,
            created_at=now,
        )
        auth.audit_event(
            conn,
            "emergency.stop",
            f"{actor.name} stopped conversation {cid}",
            user=actor.name,
            severity="high",
            category="emergency",
            description=reason,
            conversation_id=cid,
            account_id=account,
            metadata={"previous_state": previous, "outcome": outcome},
            now=now,
        )
    published = _publish(store, s, redis, f"stop of {cid}", ("conversation", cid, STOPPED))
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
    """
    s = _settings(settings)
    actor = auth.authorize(store, user, "conversations.stop", s)
    cid = _conversation_id(conversation_id)
    reason = _note("reason", reason, s, required=True)
    now = resolve_now(now)
    t = schema.conversations
    with store.begin() as conn:
        row = _require_conversation(conn, cid)
        conn.execute(
            sa.update(t)
            .where(t.c.id == cid)
            .values(
                state=AI,
                operator=None,
                control_reason=None,
                control_priority=None,
                control_since=None,
                ai_handoff_instructions=None,
            )
        )
        if row.state == HUMAN:
            _close_take_over(conn, row, actor.name, "ended_by_reset", now)
        outcome = f"reset_from_{row.state}"
        audit_id = _emergency(
            conn,
            action="reset",
            scope="conversation",
            conversation_id=cid,
            user_name=actor.name,
            reason=reason,
            confirmed=False,
            outcome=outcome,
            created_at=now,
        )
        auth.audit_event(
            conn,
            "emergency.reset",
            f"{actor.name} reset conversation {cid}",
            user=actor.name,
            severity="medium",
            category="emergency",
            description=reason,
            conversation_id=cid,
            account_id=row.account_id,
            metadata={"previous_state": row.state},
            now=now,
        )
    published = _publish(store, s, redis, f"reset of {cid}", ("conversation", cid, AI))
    log.warning("conversation %s reset by %s (was %s)", cid, actor.name, row.state)
    return ActionResult("reset", outcome, actor.name, cid, audit_id, None, published)


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
            f"at most {limit} system-wide emergency actions per minute; try again in {retry:.0f} s", retry
        )


def _set_system(
    store: Store,
    s: Settings,
    user: str,
    action: str,
    reason: str | None,
    confirmation: str | None,
    phrase: str,
    stop: bool,
    redis: Any | None,
    now: datetime | None,
) -> ActionResult:
    actor = auth.authorize(store, user, "system.stop", s)
    reason = _note("reason", reason, s, required=stop)
    confirmed = _check_confirmation(s, confirmation, phrase)
    now = resolve_now(now)
    with store.begin() as conn:
        _check_rate(conn, s, actor.name, now)
        was = bool(_system_stop(conn).get("stopped"))
        value = {"stopped": stop, "reason": reason, "by": actor.name, "at": as_aware(now).isoformat()}
        stmt = store.insert(schema.control_state).values(
            key=states.SYSTEM_STOP_KEY, value=value, updated_by=actor.name, updated_at=now
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
        audit_id = _emergency(
            conn,
            action=action,
            scope="system",
            conversation_id=None,
            user_name=actor.name,
            reason=reason,
            confirmed=confirmed,
            outcome=outcome,
            created_at=now,
        )
        title = (
            f"{actor.name} stopped every conversation (system-wide stop)"
            if stop
            else f"{actor.name} resumed every conversation"
        )
        auth.audit_event(
            conn,
            f"emergency.{action}",
            title,
            user=actor.name,
            severity="critical" if stop else "high",
            category="emergency",
            description=reason,
            metadata={"outcome": outcome, "confirmed": confirmed},
            now=now,
        )
    published = _publish(store, s, redis, f"system-wide {action}", ("system", stop))
    log.warning("%s by %s: %s", action, actor.name, outcome)
    return ActionResult(action, outcome, actor.name, None, audit_id, None, published)


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
    EMERGENCY_CONFIRMATION_REQUIRED (the default); rate-limited per user."""
    return _set_system(
        store, _settings(settings), user, "system_stop", reason, confirmation, STOP_PHRASE, True, redis, now
    )


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
    return _set_system(
        store,
        _settings(settings),
        user,
        "system_resume",
        reason,
        confirmation,
        RESUME_PHRASE,
        False,
        redis,
        now,
    )


def system_status(store: Store) -> dict:
    """{"stopped": bool, "reason", "by", "at" (aware datetime)} of the last system-wide stop or resume."""
    with store.connect() as conn:
        value = _system_stop(conn)
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


# ---- reads for the console ----------------------------------------------------------------------


def list_conversations(
    store: Store,
    *,
    states: tuple[str, ...] | list[str] | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[dict]:
    """Conversations by last activity (held and stopped ones first, then VIP accounts), with scores."""
    c, a, m = schema.conversations, schema.accounts, schema.messages
    order_state = sa.case((c.c.state == HUMAN, 0), (c.c.state == STOPPED, 1), else_=2)
    q = (
        sa.select(
            c.c.id,
            c.c.bot,
            c.c.account_id,
            a.c.name.label("account_name"),
            sa.func.coalesce(a.c.vip, sa.false()).label("vip"),
            c.c.state,
            c.c.operator,
            c.c.control_priority,
            c.c.control_since,
            c.c.started_at,
            c.c.last_activity_at,
            c.c.quality_score,
            c.c.sentiment,
            c.c.sentiment_trend,
            c.c.engagement,
            c.c.topic_drift,
            c.c.resolved,
        )
        .select_from(c.outerjoin(a, a.c.id == c.c.account_id))
        .order_by(order_state, sa.func.coalesce(a.c.vip, sa.false()).desc(), c.c.last_activity_at.desc())
        .limit(max(1, min(int(limit), 5000)))
    )
    if states:
        q = q.where(c.c.state.in_(list(states)))
    if search:
        like = f"%{search.strip()}%"
        q = q.where(
            sa.or_(c.c.id.ilike(like), c.c.bot.ilike(like), c.c.account_id.ilike(like), a.c.name.ilike(like))
        )
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
        ids = [r["id"] for r in rows]
        counts = (
            dict(
                conn.execute(
                    sa.select(m.c.conversation_id, sa.func.count())
                    .where(m.c.conversation_id.in_(ids))
                    .group_by(m.c.conversation_id)
                ).all()
            )
            if ids
            else {}
        )
    for r in rows:
        r["messages"] = int(counts.get(r["id"], 0))
        r["vip"] = bool(r["vip"])
        for k in ("control_since", "started_at", "last_activity_at"):
            r[k] = as_aware(r[k])
    return rows


def transcript(
    store: Store, conversation_id: str, *, limit: int = 200, since: datetime | None = None
) -> list[dict]:
    """The last `limit` messages of a conversation, oldest first (text as stored: redacted)."""
    m = schema.messages
    q = sa.select(m.c.id, m.c.ts, m.c.role, m.c.author, m.c.bot, m.c.text).where(
        m.c.conversation_id == conversation_id
    )
    if since is not None:
        q = q.where(m.c.ts > to_naive_utc(since))
    q = q.order_by(m.c.ts.desc(), m.c.id.desc()).limit(max(1, int(limit)))
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    rows.reverse()
    for r in rows:
        r["ts"] = as_aware(r["ts"])
    return rows


def intervention_history(store: Store, conversation_id: str | None = None, *, limit: int = 200) -> list[dict]:
    """Interventions audit rows, newest first (read-only: there is no edit or delete)."""
    it = schema.interventions
    q = sa.select(it).order_by(it.c.created_at.desc(), it.c.id.desc()).limit(max(1, int(limit)))
    if conversation_id is not None:
        q = q.where(it.c.conversation_id == conversation_id)
    with store.connect() as conn:
        return [_aware_row(r) for r in conn.execute(q)]


def emergency_history(store: Store, *, limit: int = 200) -> list[dict]:
    """Emergency actions audit rows, newest first (read-only: there is no edit or delete)."""
    e = schema.emergency_actions
    with store.connect() as conn:
        return [
            _aware_row(r)
            for r in conn.execute(
                sa.select(e).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(max(1, int(limit)))
            )
        ]


def _aware_row(row: Any) -> dict:
    d = dict(row._mapping)
    return {k: as_aware(v) if isinstance(v, datetime) else v for k, v in d.items()}
