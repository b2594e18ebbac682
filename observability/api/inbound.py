"""Inbound webhooks from PagerDuty and Opsgenie (no API token: the signature or shared secret is
the credential). The work is `observability.alerting.inbound`; this only reads the raw body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from observability.alerting.inbound import InboundRejected, handle_opsgenie, handle_pagerduty
from observability.api.context import ApiContext
from observability.api.deps import context
from observability.api.models import Error

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Ctx = Annotated[ApiContext, Depends(context)]
JSON_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "malformed body"},
    401: {"model": Error, "description": "bad or missing signature or secret (or not configured)"},
    413: {"model": Error, "description": "body too large"},
}


class InboundOut(BaseModel):
    status: str
    action: str | None
    alert_id: int | None
    detail: str | None


async def _deliver(
    request: Request, ctx: ApiContext, handle: Callable[..., Any], credential_header: str
) -> Any:
    """Hand the raw body and its credential header to `handle`; a refusal is its status and reason."""
    body = await request.body()
    credential = request.headers.get(credential_header)
    try:
        result = await run_in_threadpool(handle, ctx.store, ctx.settings, body, credential)
    except InboundRejected as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    return asdict(result)


@router.post("/pagerduty", response_model=InboundOut, responses=ERRORS, openapi_extra=JSON_BODY,
             summary="PagerDuty v3 webhook: incident acknowledged/resolved → our alert")  # fmt: skip
async def pagerduty(request: Request, ctx: Ctx) -> Any:
    return await _deliver(request, ctx, handle_pagerduty, "x-pagerduty-signature")


@router.post("/opsgenie", response_model=InboundOut, responses=ERRORS, openapi_extra=JSON_BODY,
             summary="Opsgenie webhook: alert acknowledged/closed → our alert")  # fmt: skip
async def opsgenie(request: Request, ctx: Ctx) -> Any:
    return await _deliver(request, ctx, handle_opsgenie, "x-opsgenie-secret")
