"""Why a control action was refused, as exceptions whose message is safe to show.

Pages catch `ControlError` and show its message as it is, so every refusal (a conversation that
does not exist, one held by someone else, a missing typed confirmation, too many emergency actions)
reaches the operator in plain words. Bad arguments raise `ValueError`, refused roles
`observability.auth.PermissionDenied`.
"""

from __future__ import annotations


class ControlError(Exception):
    """A control action that cannot be done now; the message says why and is safe to show."""


class ConversationNotFound(ControlError, LookupError):
    pass


class ControlConflict(ControlError):
    """The conversation's state does not allow the action (stopped, or held by someone else)."""


class ConfirmationRequired(ControlError):
    pass


class RateLimited(ControlError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
