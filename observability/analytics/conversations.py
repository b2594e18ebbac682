"""Conversation quality over the store: the listings and summaries of the scores the worker keeps
on each conversation, one conversation analysed on demand, VIP conversations, and the
effectiveness of handoffs between bots.

`scored_messages` is the one definition of which messages a conversation's scores are computed
from (its last `SCORED_MESSAGES`, oldest first): the worker's scoring step and the page's on-demand
analysis both call it, so the page shows the scores the worker stores. The scoring itself is
`observability.analytics.conversation_analytics`, which touches no store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.analytics.conversation_analytics import ConversationAnalytics
from observability.store import Store, schema
from observability.store.sqlhelpers import count_true
from observability.timeutil import Window, resolve_now, window_bounds

SCORED_MESSAGES = 500  # the most recent messages a conversation is scored on
SCORE_COLUMNS = ("conversation", "bot", "account", "state", "started", "last_activity", "messages", "sentiment",
                 "trend", "drift", "engagement", "resolved", "quality")  # fmt: skip
SUMMARY_COLUMNS = (
    "bot",
    "conversations",
    "scored",
    "quality",
    "sentiment",
    "engagement",
    "drift",
    "resolved",
)
HISTOGRAM_COLUMNS = ("bot", "bin", "conversations")
QUALITY_BINS = 20  # the quality histogram's bins: 5 points of quality each
VIP_COLUMNS = ("conversation", "account_name", "account", "bot", "state", "operator", "last_activity", "messages",
               "sentiment", "quality", "resolved")  # fmt: skip


def scored_messages(
    conn: sa.Connection, conversation_id: str, limit: int = SCORED_MESSAGES
) -> list[dict[str, Any]]:
    """The messages a conversation is scored on: its last `limit`, oldest first, as
    {"ts", "role", "text", "bot"}."""
    m = schema.messages
    rows = conn.execute(
        sa.select(m.c.ts, m.c.role, m.c.text, m.c.bot)
        .where(m.c.conversation_id == conversation_id)
        .order_by(m.c.ts.desc(), m.c.id.desc())
        .limit(limit)
    ).all()
    return [{"ts": r.ts, "role": r.role, "text": r.text, "bot": r.bot} for r in reversed(rows)]


def analyze_conversation(store: Store, conversation_id: str) -> dict[str, Any] | None:
    """`ConversationAnalytics.analyze` over the messages the worker scores (`scored_messages`):
    per-message sentiment and its trend, topic drift, engagement, resolution and quality score, with
    the messages. None when the conversation has no messages."""
    with store.connect() as conn:
        msgs = scored_messages(conn, conversation_id)
    if not msgs:
        return None
    scores = ConversationAnalytics().analyze(msgs)
    return {
        "messages": msgs,
        "sentiment_scores": [float(x) for x in scores.sentiment_scores],
        "sentiment_avg": float(scores.sentiment),
        "sentiment_trend": scores.sentiment_trend,
        "drift": float(scores.topic_drift),
        "engagement": float(scores.engagement),
        "resolved": bool(scores.resolved),
        "quality": float(scores.quality_score),
    }


def _active_in(window: Window, now: datetime | None, bots: Sequence[str] | None) -> sa.ColumnElement[bool]:
    """Conversations last active in [now - window, now] (of `bots` when given)."""
    c = schema.conversations
    start, end = window_bounds(window, now)
    conds = [c.c.last_activity_at >= start, c.c.last_activity_at <= end]
    if bots:
        conds.append(c.c.bot.in_(list(bots)))
    return sa.and_(*conds)


def conversation_scores(store: Store, window: Window = "24h", bots: Sequence[str] | None = None, limit: int = 200,
                        now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Recently active conversations, most recent first, with the latest scores the worker
    computed (keys: SCORE_COLUMNS)."""
    c = schema.conversations
    cols = [c.c.id, c.c.bot, c.c.account_id, c.c.state, c.c.started_at, c.c.last_activity_at, c.c.message_count,
            c.c.sentiment, c.c.sentiment_trend, c.c.topic_drift, c.c.engagement, c.c.resolved, c.c.quality_score]  # fmt: skip
    stmt = (
        sa.select(*cols)
        .where(_active_in(window, now, bots))
        .order_by(c.c.last_activity_at.desc())
        .limit(limit)
    )
    with store.connect() as conn:
        return [dict(zip(SCORE_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]


def quality_summary(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                    now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per bot (keys: SUMMARY_COLUMNS): conversations active in the window, how many are scored,
    mean quality, sentiment, engagement and drift, and how many are resolved."""
    c = schema.conversations
    stmt = (
        sa.select(c.c.bot, sa.func.count(), sa.func.count(c.c.quality_score), sa.func.avg(c.c.quality_score),
                  sa.func.avg(c.c.sentiment), sa.func.avg(c.c.engagement), sa.func.avg(c.c.topic_drift),
                  count_true(c.c.resolved))
        .where(_active_in(window, now, bots))
        .group_by(c.c.bot)
    )  # fmt: skip
    with store.connect() as conn:
        return [dict(zip(SUMMARY_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]


def quality_histogram(store: Store, window: Window = "24h", bots: Sequence[str] | None = None,
                      bins: int = QUALITY_BINS, now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """How many scored conversations active in the window fall in each quality bin, per bot (keys:
    HISTOGRAM_COLUMNS; bin k holds scores in [k/bins, (k+1)/bins), the last one 1.0 too; only the
    non-empty bins). Counted in SQL over every conversation, not a page of them. The bin is a CASE
    over the edges: portable, where CAST rounds on PostgreSQL and SQLite may lack floor()."""
    c = schema.conversations
    q = c.c.quality_score
    bin_ = sa.case(*((q < (k + 1) / bins, k) for k in range(bins - 1)), else_=bins - 1)
    stmt = (
        sa.select(c.c.bot, bin_.label("bin"), sa.func.count())
        .where(_active_in(window, now, bots), q.is_not(None))
        .group_by(c.c.bot, "bin")  # by its label: PostgreSQL takes a repeated CASE with new parameters
        .order_by(c.c.bot, "bin")  # for another expression
    )
    with store.connect() as conn:
        return [dict(zip(HISTOGRAM_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]


def vip_conversations(
    store: Store, limit: int = 50, now: datetime | None = None, days: int = 7
) -> list[dict[str, Any]]:
    """Conversations of VIP accounts active in the last `days` days, most recently active first
    (keys: VIP_COLUMNS)."""
    c, acc = schema.conversations, schema.accounts
    since = resolve_now(now) - timedelta(days=days)
    cols = [c.c.id, acc.c.name, c.c.account_id, c.c.bot, c.c.state, c.c.operator, c.c.last_activity_at,
            c.c.message_count, c.c.sentiment, c.c.quality_score, c.c.resolved]  # fmt: skip
    stmt = (
        sa.select(*cols).select_from(c.join(acc, acc.c.id == c.c.account_id))
        .where(acc.c.vip == sa.true(), c.c.last_activity_at >= since)
        .order_by(c.c.last_activity_at.desc()).limit(limit)
    )  # fmt: skip
    with store.connect() as conn:
        return [dict(zip(VIP_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]


def handed_off_conversations(store: Store, window: Window = "24h", limit: int = 200,
                             now: datetime | None = None) -> tuple[list[list[dict]], list[int]]:  # fmt: skip
    """Recent conversations served by more than one bot, their messages and the index of the first
    message after the bot changed (the handoff), for ConversationAnalytics.handoff_effectiveness.
    Reads at most `limit` conversations."""
    m = schema.messages
    start, end = window_bounds(window, now)
    multi = (
        sa.select(m.c.conversation_id)
        .where(m.c.ts >= start, m.c.ts <= end, m.c.bot.is_not(None))
        .group_by(m.c.conversation_id)
        .having(sa.func.count(sa.distinct(m.c.bot)) > 1)
        .limit(limit)
    )
    with store.connect() as conn:
        ids = [r[0] for r in conn.execute(multi)]
        if not ids:
            return [], []
        rows = conn.execute(
            sa.select(m.c.conversation_id, m.c.role, m.c.text, m.c.bot)
            .where(m.c.conversation_id.in_(ids))
            .order_by(m.c.conversation_id, m.c.ts, m.c.id)
        ).all()
    convs: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        convs[r.conversation_id].append({"role": r.role, "text": r.text, "bot": r.bot})
    conversations, indices = [], []
    for msgs in convs.values():
        idx = _first_handoff(msgs)
        if idx is not None:
            conversations.append(msgs)
            indices.append(idx)
    return conversations, indices


def _first_handoff(msgs: Sequence[dict]) -> int | None:
    """Index of the first message from a bot other than the first bot that spoke."""
    first_bot = None
    for i, msg in enumerate(msgs):
        if msg["bot"]:
            if first_bot is None:
                first_bot = msg["bot"]
            elif msg["bot"] != first_bot:
                return i
    return None


def handoff_effectiveness(
    store: Store, window: Window = "24h", limit: int = 50, now: datetime | None = None
) -> dict[str, Any] | None:
    """`ConversationAnalytics.handoff_effectiveness` over recent handed-off conversations (at most
    `limit`), as a plain dict; None without such conversations."""
    convs, idx = handed_off_conversations(store, window, limit, now)
    if not convs:
        return None
    return asdict(ConversationAnalytics().handoff_effectiveness(convs, idx))
