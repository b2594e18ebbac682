"""Request and response bodies of the HTTP API, in the shapes of source document 004.

Pydantic models, so the OpenAPI document (`/api/v1/openapi.json`) says exactly what a client sends
and receives, and FastAPI refuses a malformed body with 422 before any service is called.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from observability.alerting.model import SEVERITIES as ALERT_SEVERITIES
from observability.analytics.monitoring import METRICS, TIMEFRAMES
from observability.control.common import MAX_NOTE
from observability.events import SEVERITIES

MetricType = Enum("MetricType", {m: m for m in METRICS}, type=str)  # type: ignore[misc]
Timeframe = Enum("Timeframe", {t: t for t in TIMEFRAMES}, type=str)  # type: ignore[misc]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]  # activity events
AlertSeverity = Literal[ALERT_SEVERITIES]  # type: ignore[valid-type]  # alerts: info, warning, critical
Priority = Literal["low", "normal", "high", "critical"]
Note = Field(min_length=1, max_length=MAX_NOTE)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- monitoring ---------------------------------------------------------------------------------


class LiveMetrics(BaseModel):
    conversations_active: int
    conversations_total_today: int
    messages_processed: int
    ai_confidence_avg: float | None
    safety_score_avg: float | None
    human_interventions: int
    alert_count: int
    system_load: float | None
    response_time_avg: float | None
    claude_requests_today: int
    claude_cost_today: float
    timestamp: str


class Point(BaseModel):
    timestamp: str
    value: float | None


class Trend(BaseModel):
    direction: str
    percentage_change: float | None  # None: the earlier half was zero (a rise from nothing)
    is_concerning: bool


class DrillDown(BaseModel):
    metric_name: str
    current_value: float | None
    historical_data: list[Point]
    percentile_data: dict[str, float | None]
    thresholds: dict[str, float]
    trend_analysis: Trend


class Health(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, Any]
    timestamp: str


class Performance(BaseModel):
    window: str
    sla: list[dict[str, Any]]
    bots: dict[str, Any]
    timestamp: str


# ---- activity -----------------------------------------------------------------------------------


class ActivityEvent(BaseModel):
    id: str
    event_type: str
    title: str
    description: str | None
    severity: str
    category: str
    account_id: str | None
    vip: bool
    conversation_id: str | None
    created_at: datetime
    read: bool


class ActivityPage(BaseModel):
    events: list[ActivityEvent]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")
    limit: int


class MarkRead(Body):
    event_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=1000)


class MarkedRead(BaseModel):
    marked: int
    user: str


# ---- intervention -------------------------------------------------------------------------------


class TakeControl(Body):
    reason: str = Note
    priority: Priority = "normal"
    notify_user: bool = False
    preserve_ai_suggestions: bool = True


class ReleaseControl(Body):
    summary: str = Note
    ai_handoff_instructions: str | None = Field(default=None, max_length=MAX_NOTE)
    mark_resolved: bool = False


class ActionOut(BaseModel):
    """What an action did; `action_id` is its audit row (interventions or emergency_actions)."""

    action_id: int | None
    action: str
    outcome: str
    user: str
    conversation_id: str | None
    message_id: str | None = None
    published: bool | None = Field(description="published to Redis (null without Redis)")


class Status(BaseModel):
    conversation_id: str
    state: str
    effective_state: str
    operator: str | None
    reason: str | None
    priority: str | None
    since: datetime | None
    held_for_s: float | None
    handoff_instructions: str | None
    notify_user: bool | None
    preserve_ai_suggestions: bool | None
    system_stopped: bool
    ai_may_respond: bool
    bot: str | None
    account_id: str | None
    last_activity_at: datetime | None
    resolved: bool = Field(description="handed back resolved, or judged so by the worker's scoring")


class Reply(Body):
    text: str = Field(
        min_length=1, description="the operator's message to the end user (at most SDK_MAX_TEXT_BYTES, 64 kB)"
    )


class SuggestRequest(Body):
    conversation_id: str = Field(min_length=1, max_length=100)


class SuggestionOut(BaseModel):
    conversation_id: str
    suggestion: str | None
    source: str
    label: str
    model: str | None
    similar_conversation_id: str | None
    similarity: float | None
    notes: list[str]


# ---- alerts and emergency -----------------------------------------------------------------------


class AlertNote(Body):
    note: str | None = Field(default=None, max_length=MAX_NOTE)


class Resolve(AlertNote):
    only_if_clear: bool = Field(
        default=False,
        description="refuse (409) while the alert's condition still holds: resolved then, it would fire "
        "again at the next evaluation and its acknowledgement would be lost (silence it instead)",
    )


class SilenceIn(Body):
    reason: str = Note
    duration_minutes: float = Field(
        description="how long the silence lasts; the bounds (ALERT_SILENCE_MAX_S) are named in the 422"
    )


class SilenceOut(BaseModel):
    """A silence: alerts matching its rule and label matchers notify nobody between its start and end."""

    id: int
    rule_name: str | None
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    active: bool


class SilencedBy(BaseModel):
    id: int
    ends_at: datetime
    reason: str


class Alert(BaseModel):
    """An alert as the Alerts page shows it (times in UTC). Its `state`: pending (condition seen,
    its `for` not yet over), firing, acknowledged, resolved."""

    id: int
    rule_name: str
    dedup_key: str
    labels: dict[str, str]
    state: Literal["pending", "firing", "acknowledged", "resolved"]
    severity: AlertSeverity
    value: float | None
    threshold: float | None
    message: str | None
    pending_since: datetime | None
    fired_at: datetime | None
    clear_since: datetime | None = Field(
        description="since when the last evaluations found the condition clear"
    )
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    escalation_level: int
    next_escalation_at: datetime | None
    escalation_started_at: datetime | None
    suppressed_by: str | None = Field(description="what held its last due notification: a silence, an inhibition, "
                                                   "the rule's cooldown")  # fmt: skip
    last_notified_at: datetime | None
    created_at: datetime
    condition_holds: bool = Field(
        description="open and its condition still holds: resolved now, it would fire again at the next evaluation"
    )
    silenced_by: SilencedBy | None = Field(
        default=None, description="the active silence holding it (in GET /alerts/active; null elsewhere)"
    )


class AlertsOut(BaseModel):
    alerts: list[Alert]
    count: int


class AlertOut(BaseModel):
    alert: Alert


class Reason(Body):
    reason: str = Note


class SystemStop(Body):
    reason: str = Note
    confirmation: str | None = Field(
        default=None, max_length=50, description='"STOP ALL" when confirmation is required'
    )


class SystemResume(Body):
    reason: str | None = Field(default=None, max_length=MAX_NOTE)
    confirmation: str | None = Field(
        default=None, max_length=50, description='"RESUME ALL" when confirmation is required'
    )


class Whoami(BaseModel):
    user: str
    role: str
    scope: str


class Error(BaseModel):
    detail: Any


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "a typed confirmation is missing"},
    401: {
        "model": Error,
        "description": "no token, or a malformed, expired or revoked one, or a disabled user",
    },
    403: {"model": Error, "description": "the token's scope or the user's role does not allow this"},
    404: {"model": Error, "description": "no such conversation, alert or silence"},
    409: {"model": Error, "description": "the conversation's or alert's state does not allow this now"},
    422: {"model": Error, "description": "invalid input; nothing was changed"},
    429: {"model": Error, "description": "rate limit; see Retry-After"},
}
