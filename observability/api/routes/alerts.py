"""Alerts: the active alerts, and acknowledge, resolve, escalate, silence, through `AlertingService`
(the same calls as the Alerts page: role check, timeline and activity rows, outbox)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from observability.alerting import AlertingService
from observability.api import models as m
from observability.api.context import ApiContext
from observability.api.deps import context, require, threaded
from observability.auth.api_tokens import Principal
from observability.auth.audit import jsonable

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=m.ERRORS)
Ctx = Annotated[ApiContext, Depends(context)]
AlertId = Annotated[int, Path(ge=1, le=2**62)]


def _service(ctx: ApiContext) -> AlertingService:
    return AlertingService(ctx.store, ctx.settings)


def _utc(value: Any) -> Any:
    """`jsonable`, with times in UTC and saying so ("…Z"), as every other endpoint writes them:
    alert times came without a zone."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): _utc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utc(v) for v in value]
    return jsonable(value)


def _alert_out(alert: dict) -> dict:
    return {"alert": _utc(alert)}


@router.get("/active", response_model=m.AlertsOut, summary="Firing and acknowledged alerts")
@threaded
def active(
    ctx: Ctx,
    p: Annotated[Principal, Depends(require("dashboards.view"))],
    severity: m.AlertSeverity | None = None,
) -> dict:
    alerts = [a for a in _service(ctx).active_alerts() if severity is None or a.get("severity") == severity]
    return {"alerts": _utc(alerts), "count": len(alerts)}


@router.post("/acknowledge/{alert_id}", response_model=m.AlertOut, summary="Acknowledge an alert")
@threaded
def acknowledge(
    alert_id: AlertId, ctx: Ctx, p: Annotated[Principal, Depends(require("alerts.acknowledge"))],
    body: m.AlertNote | None = None,
) -> dict:  # fmt: skip
    return _alert_out(_service(ctx).acknowledge_alert(alert_id, p.user, note=body.note if body else None))


@router.post("/resolve/{alert_id}", response_model=m.AlertOut, summary="Resolve an alert")
@threaded
def resolve(
    alert_id: AlertId, ctx: Ctx, p: Annotated[Principal, Depends(require("alerts.resolve"))],
    body: m.Resolve | None = None,
) -> dict:  # fmt: skip
    body = body or m.Resolve()
    return _alert_out(
        _service(ctx).resolve_alert(alert_id, p.user, note=body.note, only_if_clear=body.only_if_clear)
    )


@router.post("/escalate/{alert_id}", response_model=m.AlertOut, summary="Escalate an alert one level now")
@threaded
def escalate(
    alert_id: AlertId, ctx: Ctx, p: Annotated[Principal, Depends(require("alerts.escalate"))]
) -> dict:
    return _alert_out(_service(ctx).escalate_alert(alert_id, p.user))


@router.post("/silence/{alert_id}", response_model=m.SilenceOut,
             summary="Silence this alert (its rule and labels) for a while")  # fmt: skip
@threaded
def silence(
    alert_id: AlertId,
    body: m.SilenceIn,
    ctx: Ctx,
    p: Annotated[Principal, Depends(require("silences.manage"))],
) -> dict:
    """What to do instead of resolving an alert whose condition still holds: it stays open, and
    neither it nor a new alert of the same rule and labels notifies anyone until the silence ends."""
    return _utc(
        _service(ctx).silence_alert(alert_id, p.user, reason=body.reason, duration_min=body.duration_minutes)
    )


@router.post("/silences/expire/{silence_id}", response_model=m.SilenceOut, summary="End a silence now")
@threaded
def expire_silence(
    silence_id: AlertId, ctx: Ctx, p: Annotated[Principal, Depends(require("silences.manage"))]
) -> dict:
    """The alerts it held are looked at again at once (a firing one notifies, as the rule says)."""
    return _utc(_service(ctx).expire_silence(silence_id, p.user))
