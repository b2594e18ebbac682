"""Inbound webhooks from PagerDuty and Opsgenie (no API token: the signature or shared secret is
the credential). The work is `observability.alerting.inbound`; this only reads the raw body."""

from __future__ import annotations

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


@router.post("/pagerduty", response_model=InboundOut, responses=ERRORS, openapi_extra=JSON_BODY,
             summary="PagerDuty v3 webhook: incident acknowledged/resolved → our alert")  # fmt: skip
async def pagerduty(request: Request, ctx: Ctx) -> Any:
    body = await request.body()
    sig = request.headers.get("x-pagerduty-signature")
    try:
        result = await run_in_threadpool(handle_pagerduty, ctx.store, ctx.settings, body, sig)
    except InboundRejected as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    return asdict(result)


@router.post("/opsgenie", response_model=InboundOut, responses=ERRORS, openapi_extra=JSON_BODY,
             summary="Opsgenie webhook: alert acknowledged/closed → our alert")  # fmt: skip
async def opsgenie(request: Request, ctx: Ctx) -> Any:
    body = await request.body()
    secret = request.headers.get("x-opsgenie-secret")
    try:
        result = await run_in_threadpool(handle_opsgenie, ctx.store, ctx.settings, body, secret)
    except InboundRejected as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    return asdict(result)
