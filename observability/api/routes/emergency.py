"""Emergency: stop and reset one conversation, the system-wide stop (admin) and its resume.

A stop is never rate-limited (neither by the API's limit nor by the emergency one): stopping is
always safe. Resets and the resume count against API_EMERGENCY_RATE_LIMIT_PER_MIN too, and the
resume also against the service's own EMERGENCY_RATE_LIMIT_PER_MIN."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from observability import control
from observability.api import models as m
from observability.api.context import ApiContext
from observability.api.deps import EMERGENCY, NEVER, context, require
from observability.api.routes.intervention import action_out
from observability.auth.api_tokens import Principal

router = APIRouter(prefix="/emergency", tags=["emergency"], responses=m.ERRORS)
Ctx = Annotated[ApiContext, Depends(context)]
ConversationId = Annotated[str, Path(min_length=1, max_length=100)]


@router.post(
    "/stop/{conversation_id}", response_model=m.ActionOut, summary="Emergency stop of one conversation"
)
def stop(
    conversation_id: ConversationId, body: m.Reason, ctx: Ctx,
    p: Annotated[Principal, Depends(require("conversations.stop", NEVER))],
) -> dict:  # fmt: skip
    return action_out(control.stop_conversation(ctx.store, conversation_id, p.user, body.reason, redis=ctx.redis,
                                                settings=ctx.settings))  # fmt: skip


@router.post(
    "/reset/{conversation_id}", response_model=m.ActionOut, summary="Emergency reset of a conversation"
)
def reset(
    conversation_id: ConversationId, body: m.Reason, ctx: Ctx,
    p: Annotated[Principal, Depends(require("conversations.stop", EMERGENCY))],
) -> dict:  # fmt: skip
    return action_out(control.reset_conversation(ctx.store, conversation_id, p.user, body.reason, redis=ctx.redis,
                                                 settings=ctx.settings))  # fmt: skip


@router.post("/system-wide-stop", response_model=m.ActionOut, summary="Stop every conversation (admin)")
def system_wide_stop(
    body: m.SystemStop, ctx: Ctx, p: Annotated[Principal, Depends(require("system.stop", NEVER))]
) -> dict:
    return action_out(control.system_wide_stop(ctx.store, p.user, body.reason, body.confirmation, redis=ctx.redis,
                                               settings=ctx.settings))  # fmt: skip


@router.post("/system-resume", response_model=m.ActionOut, summary="Lift the system-wide stop (admin)")
def system_resume(
    body: m.SystemResume, ctx: Ctx, p: Annotated[Principal, Depends(require("system.stop", EMERGENCY))]
) -> dict:
    return action_out(control.system_resume(ctx.store, p.user, body.reason, body.confirmation, redis=ctx.redis,
                                            settings=ctx.settings))  # fmt: skip
