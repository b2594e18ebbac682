"""Intervention: take control, reply, release control, status, suggest a response. Each endpoint calls
the same `observability.control` function as the Conversations page (role check, audit rows,
Redis publish), with the token's user as the acting user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from observability import control
from observability.api import models as m
from observability.api.context import ApiContext
from observability.api.deps import context, require, threaded
from observability.auth.api_tokens import Principal

router = APIRouter(prefix="/intervention", tags=["intervention"], responses=m.ERRORS)
Ctx = Annotated[ApiContext, Depends(context)]
ConversationId = Annotated[str, Path(min_length=1, max_length=100)]
CONTROL = require("conversations.control")


def act(ctx: ApiContext, service: Callable[..., control.ActionResult], *args: Any) -> dict:
    """Call a control service (store first, then `args`; Redis and settings from `ctx`) and answer
    with its `ActionResult` as an `ActionOut`."""
    r = service(ctx.store, *args, redis=ctx.redis, settings=ctx.settings)
    return {"action_id": r.audit_id, "action": r.action, "outcome": r.outcome, "user": r.user,
            "conversation_id": r.conversation_id, "message_id": r.message_id, "published": r.published}  # fmt: skip


@router.post("/take-control/{conversation_id}", response_model=m.ActionOut,
             summary="A human operator takes control of a conversation")  # fmt: skip
@threaded
def take_control(
    conversation_id: ConversationId, body: m.TakeControl, ctx: Ctx, p: Annotated[Principal, Depends(CONTROL)]
) -> dict:
    return act(ctx, control.take_control, conversation_id, p.user, body.reason, body.priority, body.notify_user,
               body.preserve_ai_suggestions)  # fmt: skip


@router.post("/reply/{conversation_id}", response_model=m.ActionOut,
             summary="The operator holding a conversation replies to its end user")  # fmt: skip
@threaded
def reply(
    conversation_id: ConversationId, body: m.Reply, ctx: Ctx, p: Annotated[Principal, Depends(CONTROL)]
) -> dict:
    """Stored (personal data masked) for the bot to deliver, as a reply from the console is: only
    while the token's user holds the conversation (409 otherwise; take it over first)."""
    return act(ctx, control.send_operator_message, conversation_id, p.user, body.text)


@router.post("/release-control/{conversation_id}", response_model=m.ActionOut,
             summary="Release a conversation back to the AI")  # fmt: skip
@threaded
def release_control(
    conversation_id: ConversationId,
    body: m.ReleaseControl,
    ctx: Ctx,
    p: Annotated[Principal, Depends(CONTROL)],
) -> dict:
    return act(ctx, control.release_control, conversation_id, p.user, body.summary, body.ai_handoff_instructions,
               body.mark_resolved)  # fmt: skip


@router.get(
    "/status/{conversation_id}", response_model=m.Status, summary="Intervention status of a conversation"
)
@threaded
def status(
    conversation_id: ConversationId, ctx: Ctx, p: Annotated[Principal, Depends(require("dashboards.view"))]
) -> dict:
    st = control.intervention_status(ctx.store, conversation_id, p.user, settings=ctx.settings)
    return {**asdict(st), "effective_state": st.effective_state}


@router.post("/suggest-response", response_model=m.SuggestionOut,
             summary="A draft reply for the operator, labelled with its source")  # fmt: skip
@threaded
def suggest_response(body: m.SuggestRequest, ctx: Ctx, p: Annotated[Principal, Depends(CONTROL)]) -> dict:
    s = control.suggest_response(ctx.store, body.conversation_id, p.user, settings=ctx.settings)
    d = asdict(s)
    d["suggestion"] = d.pop("text")
    return {"conversation_id": body.conversation_id, **d}
