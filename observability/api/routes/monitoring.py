"""Monitoring: live metrics and drill-down, health, performance, and the activity feed
(keyset-paged, filtered), the VIP feed and mark-as-read. Every read needs `dashboards.view`."""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from observability.analytics import activity, monitoring
from observability.analytics.bot_metrics import BotMetricsCollector
from observability.analytics.performance import PerformanceTracker
from observability.api import models as m
from observability.api.context import ApiContext
from observability.api.deps import context, require, threaded
from observability.auth.api_tokens import Principal
from observability.auth.audit import jsonable
from observability.control import system_status
from observability.store import heartbeats
from observability.timeutil import as_aware, window_seconds

router = APIRouter(prefix="/monitoring", tags=["monitoring"], responses=m.ERRORS)
VIEW = require("dashboards.view")
Ctx = Annotated[ApiContext, Depends(context)]


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get("/metrics", response_model=m.LiveMetrics, summary="Live conversation metrics and system status",
            description="The Live monitoring page's figures, at most API_METRICS_MAX_AGE_S (1 s) old.")  # fmt: skip
async def live_metrics(ctx: Ctx, p: Annotated[Principal, Depends(VIEW)]) -> dict:
    return await ctx.metrics.get()


@router.get("/metrics/detailed/{metric_type}", response_model=m.DrillDown, summary="Drill-down of one metric")
@threaded
def drill_down(
    metric_type: m.MetricType, ctx: Ctx, p: Annotated[Principal, Depends(VIEW)], timeframe: m.Timeframe = "1h"
) -> dict:
    tf = timeframe.value if hasattr(timeframe, "value") else timeframe
    return monitoring.drill_down(ctx.store, metric_type.value, tf).as_dict()


@router.get("/health", response_model=m.Health, summary="System health: store, Redis, worker, stop, alerts")
@threaded
def health(ctx: Ctx, p: Annotated[Principal, Depends(VIEW)]) -> dict:
    checks: dict = {}
    try:
        pulse = heartbeats.worker_pulse(ctx.store, ctx.settings)  # /healthz's limit, the console's banner
        checks["store"] = {"ok": True, "dialect": ctx.store.engine.dialect.name}
        checks["worker"] = {"ok": not pulse.behind, "last_heartbeat_age_s": pulse.age_s}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["store"] = {"ok": False, "error": type(exc).__name__}
        checks["worker"] = {"ok": False, "last_heartbeat_age_s": None}
    if ctx.redis is not None:
        try:
            checks["redis"] = {"ok": bool(ctx.redis.ping())}
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = {"ok": False, "error": type(exc).__name__}
    else:
        checks["redis"] = {"ok": True, "configured": False}
    if checks["store"]["ok"]:
        stop = system_status(ctx.store)
        checks["system_stop"] = {"stopped": stop["stopped"], "by": stop["by"]}
        checks["alerts_open"] = monitoring.firing_alert_count(ctx.store)
    status = "healthy"
    if not checks["store"]["ok"]:
        status = "unhealthy"
    elif not (checks["worker"]["ok"] and checks["redis"]["ok"]) or checks["system_stop"]["stopped"]:
        status = "degraded"
    return {"status": status, "checks": checks, "timestamp": _iso_now()}


@router.get("/performance", response_model=m.Performance, summary="Performance against SLA targets, per bot")
@threaded
def performance(
    ctx: Ctx, p: Annotated[Principal, Depends(VIEW)], window: Literal["1h", "24h", "7d"] = "1h"
) -> dict:
    """SLA compliance and the per-bot summary over the same window (6h and 30d were answered with
    the last hour's figures, and the per-bot block was always the last hour)."""
    sla = PerformanceTracker(ctx.store).check_sla_compliance(window)
    bots = BotMetricsCollector(ctx.store).get_system_summary(window_seconds(window) / 60)
    w = window
    return {"window": w, "sla": _jsonable(sla), "bots": _jsonable(bots), "timestamp": _iso_now()}


def _jsonable(value: Any) -> Any:
    """Service results as JSON types: datetimes as ISO text, numpy scalars as numbers, NaN as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return jsonable(value)


# ---- activity feed -----------------------------------------------------------------------------


def encode_cursor(ts: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, event_id = raw.split("|", 1)
        return datetime.fromisoformat(ts), event_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        detail = [{"loc": ["query", "cursor"], "msg": "not a cursor this API returned (pass next_cursor as given)",
                   "type": "value_error"}]  # fmt: skip
        raise HTTPException(422, detail) from None


def _event(row: dict) -> dict:
    return {"id": row["id"], "event_type": row["type"], "title": row["title"], "description": row["description"],
            "severity": row["severity"], "category": row["category"], "account_id": row["account"],
            "vip": row["vip"], "conversation_id": row["conversation"], "created_at": as_aware(row["ts"]),
            "read": row["read"]}  # fmt: skip


@router.get("/activity/feed", response_model=m.ActivityPage, tags=["activity"], summary="Activity stream")
@threaded
def activity_feed(
    ctx: Ctx,
    p: Annotated[Principal, Depends(VIEW)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    severity: m.Severity | None = None,
    event_type: Annotated[str | None, Query(max_length=100)] = None,
    account_id: Annotated[str | None, Query(max_length=100)] = None,
) -> dict:
    after = decode_cursor(cursor) if cursor else None
    rows, nxt = activity.feed_after(ctx.store, p.user, after, limit, [severity] if severity else None,
                                    event_type, account_id)  # fmt: skip
    return {"events": [_event(r) for r in rows], "next_cursor": encode_cursor(*nxt) if nxt else None,
            "limit": limit}  # fmt: skip


@router.get("/activity/vip", response_model=m.ActivityPage, tags=["activity"],
            summary="VIP accounts' events and high/critical events first (last 24 h)")  # fmt: skip
@threaded
def activity_vip(
    ctx: Ctx, p: Annotated[Principal, Depends(VIEW)], limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict:
    rows, _ = activity.feed_page(ctx.store, p.user, page_size=limit, vip_first=True, window="24h")
    rows = [r for r in rows if r["vip"] or r["severity"] in activity.HIGH_SEVERITIES]
    return {"events": [_event(r) for r in rows], "next_cursor": None, "limit": limit}


@router.post("/activity/mark-read", response_model=m.MarkedRead, tags=["activity"],
             summary="Mark events as read for the current user")  # fmt: skip
@threaded
def mark_read(
    body: m.MarkRead, ctx: Ctx, p: Annotated[Principal, Depends(require("activity.mark_read"))]
) -> dict:
    return {"marked": activity.mark_read(ctx.store, p.user, body.event_ids), "user": p.user}
