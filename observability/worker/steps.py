"""Every step of the worker's tick, and `STEPS`, the one registration point.

A step is a function taking a `TickContext`; the services it calls know nothing of the worker.
Order matters: data first (rollups), then what reads it (scores, alerts), then delivery.
Steps marked `monitoring` (system load readings, alert evaluation, escalation: the "monitoring
service" of source document 004) are skipped while `MONITORING_ENABLED` is false; ingest, rollups,
retention, scoring, the gate mirror and delivery of notifications already queued go on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import events as ev
from observability.alerting.service import AlertingService
from observability.analytics.conversation_scoring import score_pending
from observability.control.mirror import sync_gates
from observability.settings import Settings
from observability.store import Store, retention, rollups, schema
from observability.store.ingest import write_batch

log = logging.getLogger("observability.worker")


@dataclass
class TickContext:
    store: Store
    settings: Settings
    redis: Any | None
    worker_id: str
    is_leader: bool
    now: datetime
    state: dict = field(default_factory=dict)  # per-worker memory shared by steps across ticks


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[TickContext], Any]
    leader_only: bool = True
    monitoring: bool = False  # part of live monitoring: skipped while MONITORING_ENABLED is false


# ---- built-in steps ---------------------------------------------------------------------------


def step_rollups(ctx: TickContext) -> None:
    rollups.run(ctx.store)


def step_system_load(ctx: TickContext) -> None:
    """Record the host's CPU load as the `system_load` metric (percent), like any other metric."""
    import psutil

    value = psutil.cpu_percent(interval=None)
    if "cpu_primed" not in ctx.state:  # psutil's first reading has no interval to compare with
        ctx.state["cpu_primed"] = True
        value = psutil.cpu_percent(interval=0.1)
    event = ev.metric(uuid.uuid4().hex, time.time(), metric_name="system_load", metric_type="gauge",
                      value=float(value), account_id=None, conversation_id=None,
                      metadata={"host": socket.gethostname(), "worker_id": ctx.worker_id})  # fmt: skip
    write_batch(ctx.store, [event], ctx.settings)


def step_heartbeat(ctx: TickContext) -> None:
    t = schema.worker_heartbeats
    values = {
        "worker_id": ctx.worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "is_leader": ctx.is_leader,
        "last_tick_at": ctx.now,
        "last_tick_ms": ctx.state.get("last_tick_ms"),
        "ingested_total": ctx.state.get("ingested_total", 0),
        "stream_pending": ctx.state.get("stream_pending"),
        "started_at": ctx.state.setdefault("started_at", ctx.now),
    }
    stmt = ctx.store.insert(t).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["worker_id"], set_={k: v for k, v in values.items() if k != "worker_id"}
    )
    with ctx.store.begin() as conn:
        conn.execute(stmt)
        if ctx.is_leader:  # the lock is exclusive: any other claim is a dead or deposed leader's
            conn.execute(
                sa.update(t)
                .where(t.c.is_leader == sa.true(), t.c.worker_id != ctx.worker_id)
                .values(is_leader=False)
            )


def step_control_sync(ctx: TickContext) -> None:
    """Re-mirror the control state into Redis (every worker), so a Redis restart reopens no gate."""
    if ctx.redis is not None:
        sync_gates(ctx.store, ctx.redis, ctx.settings.redis_prefix)


def step_conversation_scoring(ctx: TickContext) -> int:
    """Score conversations with new messages (leader only)."""
    n = score_pending(ctx.store, ctx.now)
    if n:
        log.info("scored %d conversations", n)
    return n


def _service(ctx: TickContext) -> AlertingService:
    svc = ctx.state.get("alerting_service")
    if svc is None or svc.store is not ctx.store:
        svc = AlertingService(ctx.store, ctx.settings)
        ctx.state["alerting_service"] = svc
    return svc


def step_alerts_evaluate(ctx: TickContext) -> None:
    _service(ctx).evaluate(ctx.now)  # problems with its inputs are logged where they are found


def step_alerts_escalate(ctx: TickContext) -> None:
    _service(ctx).process_escalations(ctx.now)


def step_alerts_deliver(ctx: TickContext) -> None:
    _service(ctx).deliver_pending(ctx.now)


# The one registration point. Order matters: data first, then what reads it.
STEPS: list[Step] = [
    Step("rollups", step_rollups),
    Step("system_load", step_system_load, monitoring=True),
    Step("retention", retention.step),  # daily partitions ahead (PostgreSQL), expired rows out
    Step("control_sync", step_control_sync, leader_only=False),  # Redis mirror of gates
    Step("conversation_scoring", step_conversation_scoring),  # scores on conversations with new messages
    Step(
        "alerts_evaluate", step_alerts_evaluate, monitoring=True
    ),  # rules on this tick's metrics (seeds defaults)
    Step(
        "alerts_escalate", step_alerts_escalate, monitoring=True
    ),  # due escalation steps, held notifications
    Step("alerts_deliver", step_alerts_deliver),  # the notification outbox, with backoff
    Step("heartbeat", step_heartbeat, leader_only=False),
]
