"""What the console reads about conversations and people's actions on them: the conversation list
(held and stopped ones first), a transcript, and the two audit trails.

Reads only: the audit rows are append-only, and this package offers no function that edits or
deletes `interventions` or `emergency_actions`. Times come back timezone-aware (UTC).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability.conversation_state import STATE_HUMAN, STATE_STOPPED, shown_state
from observability.store import Store, schema
from observability.store.control_state import system_stopped
from observability.timeutil import as_aware


def list_conversations(
    store: Store,
    *,
    states: tuple[str, ...] | list[str] | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[dict]:
    """Conversations by last activity (held and stopped ones first, then VIP accounts), with scores.

    Each row's `effective_state` is what the console shows: `stopped` for every conversation while
    the system-wide stop holds, else the stored `state`."""
    c, a, m = schema.conversations, schema.accounts, schema.messages
    order_state = sa.case((c.c.state == STATE_HUMAN, 0), (c.c.state == STATE_STOPPED, 1), else_=2)
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
        stopped_all = system_stopped(conn)
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
        r["effective_state"] = shown_state(stopped_all, r["state"])
        for k in ("control_since", "started_at", "last_activity_at"):
            r[k] = as_aware(r[k])
    return rows


def transcript(store: Store, conversation_id: str, *, limit: int = 200) -> list[dict]:
    """The last `limit` messages of a conversation, oldest first (text as stored: redacted)."""
    m = schema.messages
    q = sa.select(m.c.id, m.c.ts, m.c.role, m.c.author, m.c.bot, m.c.text).where(
        m.c.conversation_id == conversation_id
    )
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
    q = sa.select(e).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(max(1, int(limit)))
    with store.connect() as conn:
        return [_aware_row(r) for r in conn.execute(q)]


def _aware_row(row: Any) -> dict:
    return {k: as_aware(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}
