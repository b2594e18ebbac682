"""Roles and the permission table: which role may do which action.

Pages only hide what a role cannot do; every state-changing service function calls
`observability.auth.authorize(store, user_name, action)` with one of the actions named here, so a
forged request is refused all the same. Pure data and functions: nothing here touches the store.
"""

from __future__ import annotations

ROLES = ("analyst", "operator", "manager", "admin")

ANALYST, OPERATOR, MANAGER, ADMIN = ROLES
_ALL = frozenset(ROLES)
_OPS = frozenset({OPERATOR, ADMIN})
_MGR = frozenset({MANAGER, ADMIN})
_ADM = frozenset({ADMIN})

# action -> roles allowed. Every state-changing service function names one of these.
PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboards.view": _ALL,
    "activity.mark_read": _ALL,
    "alerts.acknowledge": _OPS,
    "alerts.resolve": _OPS,
    "alerts.escalate": _OPS,
    "rules.toggle": _OPS,
    "rules.edit": _OPS,
    "rules.delete": _ADM,
    "silences.manage": _OPS,
    "notifications.test": _OPS,
    "conversations.control": _OPS,  # take over, reply, release, suggest
    "conversations.stop": _OPS,  # stop or reset one conversation
    "system.stop": _ADM,  # system-wide stop and resume
    "budget.set": _MGR,
    "users.manage": _ADM,
}


class PermissionDenied(PermissionError):
    """The acting user may not do this (unknown, disabled, or the role lacks the permission)."""


def role_can(role: str, action: str) -> bool:
    return role in PERMISSIONS.get(action, frozenset())


def roles_for(action: str) -> list[str]:
    """The roles that may do `action`, in ROLES order."""
    allowed = PERMISSIONS.get(action, frozenset())
    return [r for r in ROLES if r in allowed]
