"""People taking over from the AI: take-over and hand-back, operator replies, reply suggestions,
stopping one conversation or every bot, the gate mirror in Redis, and their history.

May import `observability.store`, `observability.auth` and the contract modules (settings, events,
keys, timeutil, conversation_state, redis_client, redaction), never the SDK: the store is the
truth, and bots learn of a change through Redis or by polling the store. Every function that
changes state takes the acting user's name, checks its role itself (`auth.authorize`, raising
`auth.PermissionDenied`) and leaves an audit row and an activity event in the same transaction;
pages only hide buttons. Callers use the names below as `control.X`.

| module | holds |
|---|---|
| `takeover` | `take_control`, `send_operator_message`, `release_control`, `intervention_status` |
| `suggestions` | `suggest_response`: a draft reply by Claude, or from a similar resolved conversation |
| `emergency` | `stop_conversation`, `reset_conversation`, `system_wide_stop`, `system_resume`, `system_status` |
| `history` | `browse_conversations` (filters, true counts, keyset paging), `conversation_matches`, `conversation_footprint`, `list_conversations`, `transcript`, `intervention_history`, `emergency_history` (reads) |
| `mirror` | the Redis gate mirror: publish after commit, `sync_gates` (the worker's step), `redis_client` |
| `common` | what actions share: argument checks, conversation lookup, audit rows, `ActionResult` |
| `errors` | `ControlError` and its subclasses, whose messages are safe to show |
"""

from observability.control.common import ActionResult, shown_id
from observability.control.emergency import (
    RESUME_PHRASE,
    STOP_PHRASE,
    reset_conversation,
    stop_conversation,
    system_resume,
    system_status,
    system_wide_stop,
)
from observability.control.errors import (
    ConfirmationRequired,
    ControlConflict,
    ControlError,
    ConversationNotFound,
    RateLimited,
)
from observability.control.history import (
    ConversationPage,
    browse_conversations,
    conversation_footprint,
    conversation_matches,
    emergency_history,
    intervention_history,
    list_conversations,
    transcript,
)
from observability.control.mirror import redis_client, sync_gates
from observability.control.suggestions import Suggestion, suggest_response
from observability.control.takeover import (
    NOTIFY_USER_TEXT,
    PRIORITIES,
    InterventionStatus,
    intervention_status,
    release_control,
    send_operator_message,
    take_control,
)

__all__ = [
    "shown_id",
    "PRIORITIES",
    "STOP_PHRASE",
    "RESUME_PHRASE",
    "NOTIFY_USER_TEXT",
    "ControlError",
    "ConversationNotFound",
    "ControlConflict",
    "ConfirmationRequired",
    "RateLimited",
    "ActionResult",
    "InterventionStatus",
    "Suggestion",
    "redis_client",
    "sync_gates",
    "take_control",
    "send_operator_message",
    "release_control",
    "intervention_status",
    "suggest_response",
    "stop_conversation",
    "reset_conversation",
    "system_wide_stop",
    "system_resume",
    "system_status",
    "list_conversations",
    "browse_conversations",
    "conversation_footprint",
    "conversation_matches",
    "ConversationPage",
    "transcript",
    "intervention_history",
    "emergency_history",
]
