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
from observability.api.deps import EMERGENCY, NEVER, context, require, threaded
from observability.api.routes.intervention import act
from observability.auth.api_tokens import Principal

router = APIRouter(prefix="/emergency", tags=["emergency"], responses=m.ERRORS)
Ctx = Annotated[ApiContext, Depends(context)]
ConversationId = Annotated[str, Path(min_length=1, max_length=100)]


@router.post(
    "/stop/{conversation_id}", response_model=m.ActionOut, summary="Emergency stop of one conversation"
)
@threaded
def stop(
    conversation_id: ConversationId, body: m.Reason, ctx: Ctx,
    p: Annotated[Principal, Depends(require("conversations.stop", NEVER))],
) -> dict:  # fmt: skip
    return act(ctx, control.stop_conversation, conversation_id, p.user, body.reason)


@router.post(
    "/reset/{conversation_id}", response_model=m.ActionOut, summary="Emergency reset of a conversation"
)
@threaded
def reset(
    conversation_id: ConversationId, body: m.Reason, ctx: Ctx,
    p: Annotated[Principal, Depends(require("conversations.stop", EMERGENCY))],
) -> dict:  # fmt: skip
    return act(ctx, control.reset_conversation, conversation_id, p.user, body.reason)


@router.post("/system-wide-stop", response_model=m.ActionOut, summary="Stop every conversation (admin)")
@threaded
def system_wide_stop(
    body: m.SystemStop, ctx: Ctx, p: Annotated[Principal, Depends(require("system.stop", NEVER))]
) -> dict:
    return act(ctx, control.system_wide_stop, p.user, body.reason, body.confirmation)


@router.post("/system-resume", response_model=m.ActionOut, summary="Lift the system-wide stop (admin)")
@threaded
def system_resume(
    body: m.SystemResume, ctx: Ctx, p: Annotated[Principal, Depends(require("system.stop", EMERGENCY))]
) -> dict:
    return act(ctx, control.system_resume, p.user, body.reason, body.confirmation)
