"""A draft reply for the operator who holds a conversation, always labelled with where it came from.

With ANTHROPIC_API_KEY (or an `anthropic_client`) Claude drafts it from the transcript, and the
call is recorded as an LLM call of bot `console` so its cost shows beside the bots'. Without a key,
or when Claude fails, the draft is the reply that followed the most similar customer message in a
resolved conversation of the store (scikit-learn TF-IDF, cosine similarity): never presented as
AI-written.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from observability import auth
from observability import events as ev
from observability.control.common import check_conversation_id, require_conversation
from observability.control.errors import ControlConflict
from observability.control.history import transcript
from observability.conversation_state import STATE_HUMAN
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.store.ingest import write_batch

log = logging.getLogger(__name__)

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
# below this, the best match shares only a word or two ("house", "what is"): an unrelated reply, offered as
# a draft, is worse than none (a seller asking what a townhouse is worth was offered an open house's times)
SIMILAR_MIN_SCORE = 0.25


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
    conversation of the store (TF-IDF, cosine similarity). Refused (`ControlConflict`) while the
    conversation is held by a take-over that chose `preserve_ai_suggestions=False`.
    """
    s = settings or get_settings()
    auth.authorize(store, user, "conversations.control", s)
    cid = check_conversation_id(conversation_id)
    it = schema.interventions
    with store.connect() as conn:
        row = require_conversation(conn, cid)
        take = conn.execute(
            sa.select(it.c.preserve_ai_suggestions)
            .where(it.c.conversation_id == cid, it.c.action == "take_control")
            .order_by(it.c.created_at.desc(), it.c.id.desc())
            .limit(1)
        ).first()
    if row.state == STATE_HUMAN and take is not None and take.preserve_ai_suggestions is False:
        raise ControlConflict(
            f"AI suggestions are off for conversation {cid}: the take-over chose not to keep them"
        )
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
        suggestion = replace(suggestion, notes=notes + suggestion.notes)
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
    """Store Claude's call like any bot's (priced at ingest); bookkeeping never fails the draft."""
    try:
        input_tokens, output_tokens, cache_read, cache_write = ev.usage_tokens(response.usage)
        event = ev.llm_call(
            uuid.uuid4().hex,
            time.time(),
            bot="console",
            agent="operator_suggestion",
            decision_type="suggest_response",
            model=getattr(response, "model", None) or s.suggest_model,
            provider="anthropic",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            latency_ms=float(latency_ms),
            cache_hit=False,
            cost_usd=None,
            conversation_id=cid,
            success=True,
            error_type=None,
        )
        write_batch(store, [event], s)
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
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode", stop_words="english"
        )
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
