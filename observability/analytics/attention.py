"""Needs attention: the live conversations most likely in trouble, ranked by a trouble score the
store can compute in one SQL statement, each with the reasons it is on the list.

A conversation is *live* when the AI has it (state `ai`, not resolved) and it was active within
`window_s` (default one hour). Held and stopped conversations already have a person on them and
are left out; during a system-wide stop the list is kept, so operators know where to look first.

The trouble score (points add up; the signals all come from the last `window_s`):

| signal | source | points |
|---|---|---|
| lowest safety score below the critical / warning threshold | `system_metrics.safety_score` | 40 / 20 |
| lowest AI confidence below the critical / warning threshold | `system_metrics.ai_confidence` | 25 / 12 |
| the user asked for a person ("human", "real person", "an agent", ...) | `messages` (role `user`) | 30 |
| the user's last message unanswered for 10 / 5 / 1 minutes | `messages` | 30 / 20 / 10 |
| sentiment declining / overall negative (below -0.3) | `conversations` (the worker's scores) | 15 / 15 |
| a failed handoff / a circular handoff that was blocked | `activity_events` | 20 / 15 |

Thresholds are those of `ALERT_THRESHOLDS_CONFIG` (the ones alerts use). Ties are broken by VIP
first, then the longest wait, then the most recent activity, then the id, so the order is stable
across reruns. Only conversations with at least one signal (a score above 0) are listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.analytics.thresholds import thresholds_or_defaults
from observability.conversation_state import STATE_AI
from observability.settings import get_settings
from observability.store import Store, schema
from observability.timeutil import as_aware, resolve_now

LIVE_WINDOW_S = 3600
PERSON_PATTERNS = (
    "%human%",
    "%real person%",
    "%a person%",
    "%an agent%",
    "%representative%",
    "%speak to someone%",
    "%talk to someone%",
    "%operator%",
)
NEGATIVE_SENTIMENT = -0.3
WAIT_POINTS = ((600, 30), (300, 20), (60, 10))  # (seconds unanswered, points), longest first
POINTS = {
    "safety_critical": 40,
    "safety_warning": 20,
    "confidence_critical": 25,
    "confidence_warning": 12,
    "asked_for_person": 30,
    "sentiment_declining": 15,
    "sentiment_negative": 15,
    "handoff_failed": 20,
    "handoff_circular": 15,
}


def needs_attention(
    store: Store,
    *,
    limit: int = 10,
    window_s: int = LIVE_WINDOW_S,
    bots: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The live conversations in trouble, worst first: id, bot, account, vip, score, reasons
    (plain-text phrases), waiting_s (None unless the user waits for a reply) and the signals'
    values (min_safety, min_confidence, sentiment, sentiment_trend)."""
    now = resolve_now(now)
    start = now - timedelta(seconds=int(window_s))
    levels = thresholds_or_defaults(get_settings().alert_thresholds_config)
    safety, confidence = levels["safety_score"], levels["ai_confidence"]
    c, a, m, sm, ae = (schema.conversations, schema.accounts, schema.messages, schema.system_metrics,
                       schema.activity_events)  # fmt: skip

    metric = (
        sa.select(
            sm.c.conversation_id.label("cid"),
            sa.func.min(sa.case((sm.c.metric_name == "safety_score", sm.c.value))).label("min_safety"),
            sa.func.min(sa.case((sm.c.metric_name == "ai_confidence", sm.c.value))).label("min_confidence"),
        )
        .where(
            sm.c.metric_name.in_(["safety_score", "ai_confidence"]),
            sm.c.ts >= start,
            sm.c.conversation_id.is_not(None),
        )  # fmt: skip
        .group_by(sm.c.conversation_id)
        .subquery("metric")
    )
    asks = sa.or_(*(sa.func.lower(m.c.text).like(p) for p in PERSON_PATTERNS))
    msg = (
        sa.select(
            m.c.conversation_id.label("cid"),
            sa.func.max(sa.case((m.c.role == "user", m.c.ts))).label("last_user"),
            sa.func.max(sa.case((m.c.role != "user", m.c.ts))).label("last_reply"),
            sa.func.max(sa.case((sa.and_(m.c.role == "user", asks), 1), else_=0)).label("asked"),
        )
        .where(m.c.ts >= start)
        .group_by(m.c.conversation_id)
        .subquery("msg")
    )
    act = (
        sa.select(
            ae.c.conversation_id.label("cid"),
            sa.func.sum(sa.case((ae.c.event_type == "handoff_failed", 1), else_=0)).label("failed"),
            sa.func.sum(sa.case((ae.c.event_type == "handoff_blocked", 1), else_=0)).label("circular"),
        )
        .where(
            ae.c.ts >= start,
            ae.c.event_type.in_(["handoff_failed", "handoff_blocked"]),
            ae.c.conversation_id.is_not(None),
        )  # fmt: skip
        .group_by(ae.c.conversation_id)
        .subquery("act")
    )

    waiting = sa.and_(
        msg.c.last_user.is_not(None),
        sa.or_(msg.c.last_reply.is_(None), msg.c.last_user > msg.c.last_reply),
    )
    wait_pts = sa.case(
        *((sa.and_(waiting, msg.c.last_user <= now - timedelta(seconds=s)), p) for s, p in WAIT_POINTS),
        else_=0,
    )
    parts = {
        "safety": sa.case(
            (metric.c.min_safety < safety["critical"], POINTS["safety_critical"]),
            (metric.c.min_safety < safety["warning"], POINTS["safety_warning"]),
            else_=0,
        ),
        "confidence": sa.case(
            (metric.c.min_confidence < confidence["critical"], POINTS["confidence_critical"]),
            (metric.c.min_confidence < confidence["warning"], POINTS["confidence_warning"]),
            else_=0,
        ),
        "asked": sa.case((msg.c.asked == 1, POINTS["asked_for_person"]), else_=0),
        "wait": wait_pts,
        "declining": sa.case((c.c.sentiment_trend == "declining", POINTS["sentiment_declining"]), else_=0),
        "negative": sa.case((c.c.sentiment < NEGATIVE_SENTIMENT, POINTS["sentiment_negative"]), else_=0),
        "failed": sa.case((act.c.failed > 0, POINTS["handoff_failed"]), else_=0),
        "circular": sa.case((act.c.circular > 0, POINTS["handoff_circular"]), else_=0),
    }
    score = sum(parts.values()).label("score")  # type: ignore[arg-type]
    vip = sa.func.coalesce(a.c.vip, sa.false())
    inner = (
        sa.select(
            c.c.id,
            c.c.bot,
            c.c.account_id,
            a.c.name.label("account_name"),
            vip.label("vip"),
            c.c.last_activity_at,
            c.c.sentiment,
            c.c.sentiment_trend,
            metric.c.min_safety,
            metric.c.min_confidence,
            msg.c.asked,
            sa.case((waiting, msg.c.last_user)).label("waiting_since"),
            sa.func.coalesce(act.c.failed, 0).label("failed"),
            sa.func.coalesce(act.c.circular, 0).label("circular"),
            score,
        )
        .select_from(
            c.outerjoin(a, a.c.id == c.c.account_id)
            .outerjoin(metric, metric.c.cid == c.c.id)
            .outerjoin(msg, msg.c.cid == c.c.id)
            .outerjoin(act, act.c.cid == c.c.id)
        )
        .where(
            c.c.last_activity_at >= start,
            c.c.state == STATE_AI,
            sa.or_(c.c.resolved.is_(None), c.c.resolved == sa.false()),
        )
    )
    if bots:
        inner = inner.where(c.c.bot.in_(list(bots)))
    sub = inner.subquery("scored")
    q = (
        sa.select(sub)
        .where(sub.c.score > 0)
        .order_by(
            sub.c.score.desc(),
            sub.c.vip.desc(),
            sa.func.coalesce(sub.c.waiting_since, now).asc(),
            sub.c.last_activity_at.desc(),
            sub.c.id,
        )
        .limit(max(1, min(int(limit), 500)))
    )
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    out = []
    for r in rows:
        since = as_aware(r.pop("waiting_since"))
        r["waiting_s"] = max(0.0, (as_aware(now) - since).total_seconds()) if since else None
        r["vip"] = bool(r["vip"])
        r["score"] = int(r["score"])
        r["last_activity_at"] = as_aware(r["last_activity_at"])
        r["reasons"] = _reasons(r, safety, confidence)
        out.append(r)
    return out


def _down(value: float) -> str:
    """A score below its threshold, written with two decimals rounded down: 0.5996 rounded to
    "0.60" read "AI confidence 0.60 (warning, below 0.6)"."""
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"  # (0.29 * 100 is 28.999...)


def _reasons(r: dict, safety: dict, confidence: dict) -> list[str]:
    """Why a conversation is on the list, worst signal first, in plain words."""
    out = []
    if r["min_safety"] is not None and r["min_safety"] < safety["warning"]:
        level = "critical" if r["min_safety"] < safety["critical"] else "warning"
        out.append(f"safety score {_down(r['min_safety'])} ({level}, below {safety[level]:g})")
    if r["asked"]:
        out.append("the user asked for a person")
    wait = r["waiting_s"]
    if wait is not None and wait >= WAIT_POINTS[-1][0]:
        out.append(f"waiting {wait / 60:.0f} min for a reply")
    if r["min_confidence"] is not None and r["min_confidence"] < confidence["warning"]:
        level = "critical" if r["min_confidence"] < confidence["critical"] else "warning"
        out.append(f"AI confidence {_down(r['min_confidence'])} ({level}, below {confidence[level]:g})")
    if r["failed"]:
        out.append(f"{r['failed']} failed handoff{'s' if r['failed'] > 1 else ''}")
    if r["circular"]:
        out.append(f"{r['circular']} circular handoff{'s' if r['circular'] > 1 else ''} blocked")
    if r["sentiment_trend"] == "declining":
        out.append("sentiment declining")
    if r["sentiment"] is not None and r["sentiment"] < NEGATIVE_SENTIMENT:
        out.append(f"negative sentiment ({r['sentiment']:.2f})")
    return out
