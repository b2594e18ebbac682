"""Worker steps (registered in `observability.worker.runner.STEPS`, leader only): evaluate the rules,
run due escalation steps, deliver the outbox. The first run in a process seeds the default rules
when the rules table is empty."""

from __future__ import annotations

from typing import Any

from observability.alerting.service import AlertingService


def _service(ctx: Any) -> AlertingService:
    svc = ctx.state.get("alerting_service")
    if svc is None or svc.store is not ctx.store:
        svc = AlertingService(ctx.store, ctx.settings)
        ctx.state["alerting_service"] = svc
    return svc


def step_evaluate(ctx: Any) -> None:
    result = _service(ctx).evaluate(ctx.now)
    ctx.state["alerting_last_evaluation"] = {
        "fired": len(result.fired), "resolved": len(result.resolved), "problems": result.problems[:10],
    }  # fmt: skip


def step_escalate(ctx: Any) -> None:
    _service(ctx).process_escalations(ctx.now)


def step_deliver(ctx: Any) -> None:
    _service(ctx).deliver_pending(ctx.now)
