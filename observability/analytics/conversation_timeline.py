"""Everything about one conversation on one timeline: its messages, the LLM calls made for it
(model, tokens, cost, latency), handoffs, take-overs and replies, stops and resets, the alerts
about its bot while it was live, and its activity events, interleaved by time.

One SQL statement (a UNION ALL over the tables that hold each kind, each part using the table's
conversation index and its own bound), newest `limit` entries, returned oldest first. The console's
conversation view draws it; a test calls it without Streamlit. `conversation_overview` is the
at-a-glance line above it: state, holder, messages, and the conversation's LLM spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.conversation_state import shown_state
from observability.store import Store, schema
from observability.store.control_state import system_stopped

MAX_LIMIT = 1000
KINDS = ("message", "llm_call", "handoff", "intervention", "emergency", "alert", "activity")
HANDOFF_TROUBLE = ("handoff_failed", "handoff_blocked")  # activity events that repeat a handoff row
SAME_HANDOFF_S = 5.0  # an activity event this close to a failed or blocked handoff row is the same handoff
AUDITED_ELSEWHERE = ("intervention", "emergency")  # their own tables are on the timeline already
RESOLVED_HAND_BACK = "release_control_resolved"  # an intervention's `ref` when it was handed back resolved
ALERT_MARGIN = timedelta(minutes=5)  # alerts about its bot that opened around the conversation


@dataclass(frozen=True)
class ConversationOverview:
    """A conversation at a glance (times naive UTC, as stored)."""

    id: str
    state: str  # ai | human | stopped, the system-wide stop included
    operator: str | None
    bot: str | None
    account_id: str | None
    account_name: str | None
    vip: bool
    started_at: datetime
    last_activity_at: datetime
    messages: int
    resolved: bool | None
    llm_calls: int
    failed_calls: int
    tokens: int
    cost_usd: float
    p95_hint_ms: float | None  # the slowest call's latency (a conversation has few calls)


def _cols(
    ts: Any, kind: str, who: Any, text: Any, *, model: Any = None, in_tok: Any = None, out_tok: Any = None,
    cost: Any = None, latency: Any = None, ok: Any = None, ref: Any = None,
) -> list[Any]:  # fmt: skip
    def typed(value: Any, type_: Any) -> Any:
        return sa.cast(value if value is not None else sa.null(), type_)

    return [
        ts.label("ts"),
        sa.literal(kind).label("kind"),
        typed(who, sa.String).label("who"),
        typed(text, sa.Text).label("text"),
        typed(model, sa.String).label("model"),
        typed(in_tok, sa.Integer).label("input_tokens"),
        typed(out_tok, sa.Integer).label("output_tokens"),
        typed(cost, sa.Float).label("cost_usd"),
        typed(latency, sa.Float).label("latency_ms"),
        typed(ok, sa.Boolean).label("ok"),
        typed(ref, sa.String).label("ref"),
    ]


def _error_text(c: sa.Table) -> Any:
    """A failed call's error type, and beside it the error as the client named it when kept."""
    return sa.case((c.c.error_raw.is_not(None), c.c.error_type + " · " + c.c.error_raw), else_=c.c.error_type)


def _handoff_text(h: sa.Table) -> Any:
    """ "to buyer_bot", "to buyer_bot · blocked: <reason>", "to buyer_bot · failed: <reason>"."""
    to = sa.literal("to ") + h.c.target
    why = sa.func.coalesce(sa.literal(": ") + h.c.reason, sa.literal(""))
    return sa.case(
        (h.c.blocked, to + sa.literal(" · blocked") + why),
        (sa.not_(h.c.success), to + sa.literal(" · failed") + why),
        else_=to,
    )


def conversation_timeline(store: Store, conversation_id: str, *, limit: int = 300) -> list[dict[str, Any]]:
    """The newest `limit` (at most 1000) entries about the conversation, oldest first. Each entry:
    ts, kind (one of KINDS), who, text, and for LLM calls model, input/output tokens, cost_usd,
    latency_ms and ok; `ref` is the trace id of a call, the id of an alert, the action of an
    intervention or emergency row (take_control, reply, release_control or RESOLVED_HAND_BACK; stop,
    reset, system_stop, system_resume) or an activity event's type. Unknown id: []."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    cid = str(conversation_id)
    m, c, ae, h = schema.messages, schema.llm_calls, schema.activity_events, schema.handoffs
    iv, em, al, cv = schema.interventions, schema.emergency_actions, schema.alerts, schema.conversations
    with store.connect() as conn:
        conv = conn.execute(
            sa.select(cv.c.bot, cv.c.started_at, cv.c.last_activity_at).where(cv.c.id == cid)
        ).first()
        if conv is None:
            return []
        author = sa.case((m.c.role == "operator", m.c.author), (m.c.role == "bot", m.c.bot), else_=m.c.role)
        parts = [
            sa.select(*_cols(m.c.ts, "message", author, m.c.text, ref=m.c.role)).where(m.c.conversation_id == cid)
            .order_by(m.c.ts.desc()).limit(limit),
            sa.select(*_cols(c.c.ts, "llm_call", sa.func.coalesce(c.c.agent, c.c.bot), _error_text(c), model=c.c.model,
                             in_tok=c.c.input_tokens, out_tok=c.c.output_tokens, cost=c.c.cost_usd,
                             latency=c.c.latency_ms, ok=c.c.success, ref=c.c.trace_id))
            .where(c.c.conversation_id == cid).order_by(c.c.ts.desc()).limit(limit),
            sa.select(*_cols(h.c.ts, "handoff", h.c.source, _handoff_text(h), latency=h.c.duration_ms,
                             ok=sa.and_(h.c.success, sa.not_(h.c.blocked))))
            .where(h.c.conversation_id == cid).order_by(h.c.ts.desc()).limit(limit),
            sa.select(*_cols(ae.c.ts, "activity", ae.c.user_id, ae.c.title, ref=ae.c.event_type))
            .where(ae.c.conversation_id == cid, ae.c.category.not_in(AUDITED_ELSEWHERE))
            .order_by(ae.c.ts.desc()).limit(limit),
            sa.select(*_cols(iv.c.created_at, "intervention", iv.c.user_name,
                             sa.func.coalesce(iv.c.summary, iv.c.reason, iv.c.ai_handoff_instructions),
                             ref=sa.case((iv.c.outcome == "resolved", RESOLVED_HAND_BACK), else_=iv.c.action)))
            # a reply is the operator's message, on the timeline already with its text
            .where(iv.c.conversation_id == cid, iv.c.action != "reply").order_by(iv.c.created_at.desc()).limit(limit),
            sa.select(*_cols(em.c.created_at, "emergency", em.c.user_name, em.c.reason, ref=em.c.action))
            .where(sa.or_(em.c.conversation_id == cid, em.c.scope == "system"),
                   em.c.created_at >= conv.started_at - ALERT_MARGIN)
            .order_by(em.c.created_at.desc()).limit(limit),
        ]  # fmt: skip
        if conv.bot:
            # alerts about its bot (label bot=<bot>) that opened while it was live; the JSON labels
            # are matched as text so SQLite and PostgreSQL run the same statement
            bot_label = sa.cast(al.c.labels, sa.Text).like(f'%"bot": "{conv.bot}"%')
            compact = sa.cast(al.c.labels, sa.Text).like(f'%"bot":"{conv.bot}"%')
            parts.append(
                sa.select(*_cols(sa.func.coalesce(al.c.fired_at, al.c.created_at), "alert", al.c.rule_name,
                                 al.c.message, ok=al.c.state == "resolved", ref=sa.cast(al.c.id, sa.String)))
                .where(al.c.created_at.between(conv.started_at - ALERT_MARGIN, conv.last_activity_at + ALERT_MARGIN),
                       sa.or_(bot_label, compact))
                .order_by(al.c.created_at.desc()).limit(limit)
            )  # fmt: skip
        union = sa.union_all(*(sa.select(p.subquery()) for p in parts)).subquery()
        rows = conn.execute(sa.select(union).order_by(union.c.ts.desc(), union.c.kind).limit(limit)).all()
    return _without_repeats([dict(r._mapping) for r in reversed(rows)])


def _without_repeats(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A failed or blocked handoff is said once: a bot that records it (`record_handoff`) and also
    logs it as activity (`handoff_failed`, `handoff_blocked`) gets the handoff row, which says more
    (target, reason, duration); the activity event stays when no handoff row is near it (a bot that
    records handoffs without their conversation)."""
    unhappy = [i["ts"] for i in items if i["kind"] == "handoff" and not i["ok"]]
    if not unhappy:
        return items
    return [
        i for i in items
        if not (i["kind"] == "activity" and i["ref"] in HANDOFF_TROUBLE
                and any(abs((i["ts"] - ts).total_seconds()) <= SAME_HANDOFF_S for ts in unhappy))
    ]  # fmt: skip


def conversation_overview(store: Store, conversation_id: str) -> ConversationOverview | None:
    """State, holder, account and the conversation's LLM calls in one read; None for an unknown id."""
    cv, ac, c = schema.conversations, schema.accounts, schema.llm_calls
    calls = (
        sa.select(
            sa.func.count().label("n"),
            sa.func.sum(sa.case((c.c.success.is_(False), 1), else_=0)).label("failed"),
            sa.func.coalesce(sa.func.sum(c.c.input_tokens + c.c.output_tokens), 0).label("tokens"),
            sa.func.coalesce(sa.func.sum(c.c.cost_usd), 0.0).label("cost"),
            sa.func.max(c.c.latency_ms).label("slowest"),
        )
        .where(c.c.conversation_id == str(conversation_id))
        .subquery()
    )
    m = schema.messages
    # counted from the messages, as the Conversations list counts them: `message_count` is what the
    # worker's scoring step saw last, 0 until it has scored the conversation
    n_messages = (
        sa.select(sa.func.count()).where(m.c.conversation_id == str(conversation_id)).scalar_subquery()
    )
    q = (
        sa.select(cv, ac.c.name.label("account_name"), ac.c.vip, calls, n_messages.label("n_messages"))
        .select_from(cv.outerjoin(ac, ac.c.id == cv.c.account_id).join(calls, sa.true()))
        .where(cv.c.id == str(conversation_id))
    )
    with store.connect() as conn:
        r = conn.execute(q).first()
        stopped = system_stopped(conn) if r is not None else False
    if r is None:
        return None
    return ConversationOverview(
        id=r.id, state=shown_state(stopped, r.state) or r.state, operator=r.operator, bot=r.bot, account_id=r.account_id,
        account_name=r.account_name, vip=bool(r.vip), started_at=r.started_at, last_activity_at=r.last_activity_at,
        messages=int(r.n_messages or 0), resolved=r.resolved, llm_calls=int(r.n or 0), failed_calls=int(r.failed or 0),
        tokens=int(r.tokens or 0), cost_usd=float(r.cost or 0.0), p95_hint_ms=r.slowest,
    )  # fmt: skip


__all__ = ["KINDS", "ConversationOverview", "conversation_overview", "conversation_timeline"]
