"""Live messages for the API's WebSocket clients: one small publish helper and the wire shape.

Services call `publish` after their change commits (take-over, release, stops: through
`control.mirror.publish_after_commit`). With Redis it is one PUBLISH on `keys.live_channel`, which
every console process's WebSocket hub reads, so a take-over reaches a dashboard in milliseconds.
Without Redis nothing is sent here: the hubs poll the store's activity feed, where every such change
already has its row (written in the change's own transaction), so no change is ever missed.

Message types and rooms follow source document 004 (`intervention_update`, `alert_notification`,
`metrics_update`; rooms `interventions_monitoring`, `emergency_monitoring`, `alerts_monitoring`,
`conversation:<id>` ...).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from observability import keys
from observability.settings import Settings

log = logging.getLogger(__name__)

INTERVENTION_UPDATE = "intervention_update"
ALERT_NOTIFICATION = "alert_notification"
METRICS_UPDATE = "metrics_update"
ACTIVITY_UPDATE = "activity_update"


def conversation_room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def message(kind: str, rooms: Sequence[str], data: dict[str, Any], ts: str) -> dict[str, Any]:
    """The one wire shape: {"type", "rooms", "data", "timestamp"} (ISO UTC timestamp)."""
    return {"type": kind, "rooms": list(rooms), "data": data, "timestamp": ts}


def control_message(change: dict[str, Any], ts: str) -> dict[str, Any]:
    """An `intervention_update` for a committed control change (`action`, `conversation_id`,
    `state`, `user`, `reason`), to the rooms that watch it."""
    rooms = ["interventions_monitoring"]
    if change.get("action") in ("stop", "reset", "system_stop", "system_resume"):
        rooms.append("emergency_monitoring")
    if change.get("conversation_id"):
        rooms.append(conversation_room(str(change["conversation_id"])))
    return message(INTERVENTION_UPDATE, rooms, change, ts)


def publish(redis: Any | None, settings: Settings, payload: dict[str, Any]) -> bool | None:
    """PUBLISH one live message. True when sent, False when Redis failed (logged, never raised: the
    change is stored and the hubs' store poll is the fallback), None without Redis."""
    if redis is None:
        return None
    try:
        redis.publish(keys.live_channel(settings.redis_prefix), json.dumps(payload, default=str))
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("live message %s not published (%s)", payload.get("type"), type(exc).__name__)
        return False
