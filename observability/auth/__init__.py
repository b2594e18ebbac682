"""Who may do what: users and sign-in, roles and permissions, and the one activity/audit writer.

May import the contract modules and `observability.store`. Every state-changing service function
elsewhere calls `authorize(store, user_name, action)` from here and records what it did with
`audit_event`, so a forged request is refused and every change leaves one kind of row.
"""

from observability.auth.audit import audit_event, jsonable
from observability.auth.roles import (
    ADMIN,
    ANALYST,
    MANAGER,
    OPERATOR,
    PERMISSIONS,
    ROLES,
    PermissionDenied,
    role_can,
    roles_for,
)
from observability.auth.users import (
    LOCKOUT,
    MAX_FAILED_LOGINS,
    MIN_PASSWORD_LENGTH,
    NAME_CHARS,
    SIGN_IN_REFUSED,
    AccountLocked,
    AuthError,
    User,
    UserInfo,
    add_user,
    authenticate,
    authorize,
    create_user,
    disable_user,
    enable_user,
    ensure_first_admin,
    get_user,
    hash_password,
    list_users,
    normalize_name,
    random_password,
    reset_password,
    set_role,
    unlock_user,
    update_user,
)

__all__ = [
    "ADMIN", "ANALYST", "LOCKOUT", "MANAGER", "MAX_FAILED_LOGINS", "MIN_PASSWORD_LENGTH", "NAME_CHARS", "OPERATOR",
    "PERMISSIONS", "ROLES", "AccountLocked", "AuthError", "PermissionDenied", "User", "UserInfo",
    "add_user", "audit_event", "authenticate", "authorize", "create_user", "disable_user", "enable_user",
    "ensure_first_admin", "get_user", "hash_password", "jsonable", "list_users", "random_password",
    "normalize_name", "reset_password", "role_can", "SIGN_IN_REFUSED", "roles_for", "set_role", "unlock_user", "update_user",
]  # fmt: skip
