"""Users, roles and the permission check every state-changing service function makes itself.

Roles: `analyst` reads every dashboard; `operator` also acts on alerts and conversations;
`manager` is an analyst who also sets budgets and cost settings; `admin` may do everything
(users, system-wide stop, rule deletion). Pages only hide what a role cannot do; the services
call `authorize(store, user_name, action)` so a forged request is refused all the same.

Passwords are stored as argon2id hashes (salted). Five failed logins lock an account for 15 minutes.
With `AUTH_MODE=none` (local single-user use) a name that is not in the store acts as `admin`; the
console shows a red banner in that mode.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from observability import schema
from observability.settings import Settings, get_settings
from observability.store import Store
from observability.timeutil import utcnow

ROLES = ("analyst", "operator", "manager", "admin")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)

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

_hasher = PasswordHasher()


class PermissionDenied(PermissionError):
    """The acting user may not do this (unknown, disabled, or the role lacks the permission)."""


class AuthError(Exception):
    """Sign-in failed; the message is safe to show (it never says which part was wrong)."""


class AccountLocked(AuthError):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"account locked until {until:%H:%M} UTC after too many failed sign-ins")
        self.until = until


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool = False

    def can(self, action: str) -> bool:
        return not self.disabled and self.role in PERMISSIONS.get(action, frozenset())


def role_can(role: str, action: str) -> bool:
    return role in PERMISSIONS.get(action, frozenset())


def hash_password(password: str) -> str:
    if not password or len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def get_user(store: Store, name: str) -> User | None:
    with store.connect() as conn:
        row = conn.execute(
            sa.select(schema.users.c.name, schema.users.c.role, schema.users.c.disabled).where(
                schema.users.c.name == name
            )
        ).first()
    return User(row.name, row.role, bool(row.disabled)) if row else None


def authorize(store: Store, user_name: str | None, action: str, settings: Settings | None = None) -> User:
    """Resolve the acting user and check the action; raises PermissionDenied."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}")
    if not user_name or not isinstance(user_name, str):
        raise PermissionDenied(f"{action}: no acting user given")
    user = get_user(store, user_name)
    if user is None:
        if (settings or get_settings()).auth_mode == "none":
            return User(user_name, ADMIN)
        raise PermissionDenied(f"{action}: unknown user {user_name!r}")
    if user.disabled:
        raise PermissionDenied(f"{action}: user {user_name!r} is disabled")
    if not user.can(action):
        raise PermissionDenied(f"{action}: role {user.role!r} of {user_name!r} may not do this")
    return user


def create_user(store: Store, name: str, role: str, password: str, *, now: datetime | None = None) -> User:
    """Add a user (callers check `users.manage` for the acting user first; see `add_user`)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or not name.strip() or len(name) > 100:
        raise ValueError("user name must be 1 to 100 characters")
    pw_hash = hash_password(password)
    with store.begin() as conn:
        if conn.execute(sa.select(schema.users.c.name).where(schema.users.c.name == name)).first():
            raise ValueError(f"user {name!r} already exists")
        conn.execute(
            sa.insert(schema.users).values(
                name=name, role=role, password_hash=pw_hash, disabled=False, failed_logins=0,
                created_at=now or utcnow(),
            )  # fmt: skip
        )
    return User(name, role)


def add_user(store: Store, actor: str, name: str, role: str, password: str) -> User:
    authorize(store, actor, "users.manage")
    return create_user(store, name, role, password)


def authenticate(store: Store, name: str, password: str, *, now: datetime | None = None) -> User:
    """Check a sign-in; counts failures and locks the account after five for 15 minutes."""
    now = now or utcnow()
    t = schema.users
    with store.begin() as conn:
        row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is None:
            _hasher.hash("timing-equaliser")  # do not reveal which names exist by timing
            raise AuthError("wrong user name or password")
        if row.locked_until is not None and row.locked_until > now:
            raise AccountLocked(row.locked_until)
        if row.disabled:
            raise AuthError("this account is disabled")
        if not _verify(row.password_hash, password):
            failed = (row.failed_logins or 0) + 1
            locked = now + LOCKOUT if failed >= MAX_FAILED_LOGINS else None
            conn.execute(
                sa.update(t)
                .where(t.c.name == name)
                .values(failed_logins=0 if locked else failed, locked_until=locked)
            )
            if locked:
                raise AccountLocked(locked)
            raise AuthError("wrong user name or password")
        conn.execute(
            sa.update(t).where(t.c.name == name).values(failed_logins=0, locked_until=None, last_login_at=now)
        )
    return User(row.name, row.role)


def random_password() -> str:
    return secrets.token_urlsafe(12)


def ensure_first_admin(store: Store) -> str | None:
    """With no user yet, create `admin` with a random password and return it (printed once)."""
    with store.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(schema.users)).scalar():
            return None
    password = random_password()
    create_user(store, "admin", ADMIN, password)
    return password
