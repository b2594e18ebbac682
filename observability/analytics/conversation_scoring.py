"""Worker step: score conversations that have new messages and store the scores on them.

Each tick the leader picks conversations whose last activity is newer than their last scoring
(plus, within `LATE_SLACK`, recently scored ones, to catch messages that arrived late), counts
their messages, and rescores those whose count differs from `scored_message_count`. Scores
(sentiment, trend, topic drift, engagement, resolved, quality) come from
`observability.analytics.conversation_analytics` over `conversations.scored_messages` (the last
`SCORED_MESSAGES`, the same messages the console's on-demand analysis reads) and are written with
`message_count`, `scored_message_count` and `scored_at` in one transaction per batch.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.analytics.conversation_analytics import ConversationAnalytics
from observability.analytics.conversations import scored_messages
from observability.store import Store, schema

log = logging.getLogger(__name__)

BATCH = 500  # conversations considered per tick
LATE_SLACK = timedelta(minutes=10)

_analytics: ConversationAnalytics | None = None


def _get_analytics() -> ConversationAnalytics:
    global _analytics
    if _analytics is None:
        _analytics = ConversationAnalytics()
    return _analytics


def _candidates(
    conn: sa.Connection, now: datetime, batch: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(fresh, late): conversations active since their last scoring, and recently scored ones that
    are re-checked for late messages (those with an older timestamp do not move last_activity_at)."""
    c = schema.conversations
    fresh = conn.execute(
        sa.select(c.c.id, c.c.scored_message_count)
        .where(sa.or_(c.c.scored_at.is_(None), c.c.last_activity_at > c.c.scored_at))
        .order_by(c.c.last_activity_at.desc())
        .limit(batch)
    ).all()
    late: list[Any] = []
    if len(fresh) < batch:
        late = conn.execute(
            sa.select(c.c.id, c.c.scored_message_count)
            .where(
                c.c.scored_at.is_not(None),
                c.c.last_activity_at <= c.c.scored_at,
                c.c.scored_at >= now - LATE_SLACK,
            )  # fmt: skip
            .order_by(c.c.scored_at.desc())
            .limit(batch - len(fresh))
        ).all()
    return [(r[0], int(r[1] or 0)) for r in fresh], [(r[0], int(r[1] or 0)) for r in late]


def operator_resolved(conn: sa.Connection, ids: list[str]) -> set[str]:
    """The conversations an operator handed back marked resolved, with no take-over since: they
    stay resolved whatever later messages say, until someone takes them over again."""
    if not ids:
        return set()
    it = schema.interventions
    rows = conn.execute(
        sa.select(it.c.conversation_id, it.c.action, it.c.outcome)
        .where(it.c.conversation_id.in_(ids), it.c.action.in_(["take_control", "release_control"]))
        .order_by(it.c.conversation_id, it.c.created_at.desc(), it.c.id.desc())
    ).all()
    latest: dict[str, tuple[str, str | None]] = {}
    for cid, action, outcome in rows:
        latest.setdefault(cid, (action, outcome))
    return {
        cid
        for cid, (action, outcome) in latest.items()
        if action == "release_control" and outcome == "resolved"
    }


def score_pending(store: Store, now: datetime, *, batch: int = BATCH) -> int:
    """Rescore conversations with new messages; returns how many were scored."""
    m = schema.messages
    with store.connect() as conn:
        fresh, late = _candidates(conn, now, batch)
        candidates = fresh + late
        if not candidates:
            return 0
        ids = [cid for cid, _ in candidates]
        counts = dict(
            conn.execute(
                sa.select(m.c.conversation_id, sa.func.count())
                .where(m.c.conversation_id.in_(ids))
                .group_by(m.c.conversation_id)
            ).all()
        )
        todo = {
            cid: int(counts.get(cid, 0)) for cid, scored in candidates if int(counts.get(cid, 0)) != scored
        }
        texts = {cid: scored_messages(conn, cid) for cid in todo}
        kept_resolved = operator_resolved(conn, list(todo))
    c = schema.conversations
    # scored_at never falls behind the last activity, so a conversation leaves the fresh set even
    # when a client clock ran ahead of ours
    scored_at = store.greatest(c.c.last_activity_at, sa.literal(now, sa.DateTime))
    analytics = _get_analytics()
    updates = []
    for cid, count in todo.items():
        scores = analytics.analyze(texts[cid])
        updates.append({
            "b_id": cid, "sentiment": scores.sentiment, "sentiment_trend": scores.sentiment_trend,
            "topic_drift": scores.topic_drift, "engagement": scores.engagement,
            "resolved": True if cid in kept_resolved else scores.resolved,
            "quality_score": scores.quality_score, "scored_message_count": count, "message_count": count,
        })  # fmt: skip
    unchanged = [cid for cid, _ in fresh if cid not in todo]
    with store.begin() as conn:
        if updates:
            values = {k: sa.bindparam(k) for k in updates[0] if k != "b_id"}
            stmt = (
                sa.update(c).where(c.c.id == sa.bindparam("b_id")).values({**values, "scored_at": scored_at})
            )
            conn.execute(stmt, updates)
        if unchanged:  # checked, nothing new: leave the fresh set without rescoring
            conn.execute(sa.update(c).where(c.c.id.in_(unchanged)).values(scored_at=scored_at))
    return len(updates)
