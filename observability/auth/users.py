"""Users: accounts, password hashes, sign-in with lockout, and the acting-user check.

Roles: `analyst` reads every dashboard; `operator` also acts on alerts and conversations;
`manager` is an analyst who also sets budgets and cost settings; `admin` may do everything
(users, system-wide stop, rule deletion). Pages only hide what a role cannot do; the services
call `authorize(store, user_name, action)` so a forged request is refused all the same.

Passwords are stored as argon2id hashes (salted). Five failed sign-ins lock an account for 15
minutes. With `AUTH_MODE=none` (local single-user use) a name that is not in the store acts as
`admin`; the console shows a red banner in that mode.

Nothing here logs a password or a hash, and a user name is logged only once it is known to be
one (people type passwords into the name field).

User management:
- acting-user functions for the console (`add_user`, `set_role`, `reset_password`,
  `disable_user`, `enable_user`, `unlock_user`) check `users.manage` for the actor;
- the CLI (`python -m observability.users`) has the store's credentials anyway and calls the
  trusted functions (`create_user`, `update_user`) with `by="cli"`.
Either way the change leaves an activity-feed event (category `security`), and the last active
admin can be neither demoted nor disabled.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from observability.auth.audit import audit_event
from observability.auth.roles import ADMIN, PERMISSIONS, ROLES, PermissionDenied
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import to_naive_utc, utcnow

log = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 8


@lru_cache(maxsize=4)
def _hasher_for(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hasher() -> PasswordHasher:
    """The argon2id hasher at the cost the settings ask for (`PASSWORD_HASH_*`)."""
    s = get_settings()
    return _hasher_for(s.password_hash_time_cost, s.password_hash_memory_kib)


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


@dataclass(frozen=True)
class UserInfo:
    """What the console and the CLI may show about a user (never the hash)."""

    name: str
    role: str
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime | None
    last_login_at: datetime | None

    def locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (to_naive_utc(now) or utcnow())

    def status(self, now: datetime | None = None) -> str:
        if self.disabled:
            return "disabled"
        if self.locked(now):
            return f"locked until {self.locked_until:%Y-%m-%d %H:%M} UTC"
        return "active"


def hash_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise ValueError("password must have at most 1024 characters")
    return hasher().hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or name != name.strip():
        raise ValueError("user name must be 1 to 100 characters without leading or trailing spaces")
    if any(ord(ch) < 32 for ch in name):
        raise ValueError("user name must not contain control characters")
    return name


def _check_role(role: Any) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


# ---- reading and authorising ------------------------------------------------------------------


def get_user(store: Store, name: str) -> User | None:
    with store.connect() as conn:
        row = conn.execute(
            sa.select(schema.users.c.name, schema.users.c.role, schema.users.c.disabled).where(
                schema.users.c.name == name
            )
        ).first()
    return User(row.name, row.role, bool(row.disabled)) if row else None


def list_users(store: Store) -> list[UserInfo]:
    """Every user, by name, without password hashes."""
    t = schema.users
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.c.name,
                t.c.role,
                t.c.disabled,
                t.c.failed_logins,
                t.c.locked_until,
                t.c.created_at,
                t.c.last_login_at,
            ).order_by(t.c.name)
        ).all()
    return [
        UserInfo(
            r.name,
            r.role,
            bool(r.disabled),
            r.failed_logins or 0,
            r.locked_until,
            r.created_at,
            r.last_login_at,
        )
        for r in rows
    ]


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


# ---- trusted user management (CLI, bootstrap) -------------------------------------------------


def create_user(
    store: Store, name: str, role: str, password: str, *, now: datetime | None = None, by: str = "cli"
) -> User:
    """Add a user (console callers use `add_user`, which checks `users.manage` for the actor)."""
    _check_role(role)
    _check_name(name)
    pw_hash = hash_password(password)
    now = to_naive_utc(now) or utcnow()
    try:
        with store.begin() as conn:
            if conn.execute(sa.select(schema.users.c.name).where(schema.users.c.name == name)).first():
                raise ValueError(f"user {name!r} already exists")
            conn.execute(
                sa.insert(schema.users).values(
                    name=name,
                    role=role,
                    password_hash=pw_hash,
                    disabled=False,
                    failed_logins=0,
                    created_at=now,
                )
            )
            audit_event(
                conn,
                "user.created",
                f"User {name} created ({role})",
                user=by,
                severity="medium",
                metadata={"target": name, "role": role},
                now=now,
            )
    except sa.exc.IntegrityError as exc:  # created concurrently
        raise ValueError(f"user {name!r} already exists") from exc
    log.info("user %r created with role %s by %s", name, role, by)
    return User(name, role)


def update_user(
    store: Store,
    name: str,
    *,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
    unlock: bool = False,
    by: str = "cli",
    now: datetime | None = None,
) -> User:
    """Change a user's role, password, disabled flag or lock; one audit event per change.

    A new password also clears the lock and the failure count. The last active admin cannot be
    demoted or disabled (nobody could manage users any more).
    """
    if role is not None:
        _check_role(role)
    pw_hash = hash_password(password) if password is not None else None
    now = to_naive_utc(now) or utcnow()
    t = schema.users
    with store.begin() as conn:
        row = conn.execute(sa.select(t.c.name, t.c.role, t.c.disabled).where(t.c.name == name)).first()
        if row is None:
            raise ValueError(f"no user named {name!r}")
        demotes = (
            row.role == ADMIN
            and not row.disabled
            and ((role is not None and role != ADMIN) or disabled is True)
        )
        if demotes:
            others = conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(t.c.role == ADMIN, t.c.disabled == sa.false(), t.c.name != name)
            ).scalar()
            if not others:
                raise ValueError(f"{name!r} is the last active admin; add another admin first")
        values: dict[str, Any] = {}
        events: list[tuple[str, str, dict]] = []
        if role is not None and role != row.role:
            values["role"] = role
            events.append(
                (
                    "user.role_changed",
                    f"User {name}: role {row.role} -> {role}",
                    {"target": name, "from": row.role, "to": role},
                )
            )
        if pw_hash is not None:
            values.update(password_hash=pw_hash, failed_logins=0, locked_until=None)
            events.append(("user.password_reset", f"Password of {name} reset", {"target": name}))
        if disabled is not None and bool(disabled) != bool(row.disabled):
            values["disabled"] = bool(disabled)
            kind = "user.disabled" if disabled else "user.enabled"
            events.append((kind, f"User {name} {'disabled' if disabled else 'enabled'}", {"target": name}))
        if unlock and pw_hash is None:
            values.update(failed_logins=0, locked_until=None)
            events.append(("user.unlocked", f"User {name} unlocked", {"target": name}))
        if values:
            conn.execute(sa.update(t).where(t.c.name == name).values(**values))
        for kind, title, meta in events:
            audit_event(conn, kind, title, user=by, severity="medium", metadata=meta, now=now)
        final = conn.execute(sa.select(t.c.name, t.c.role, t.c.disabled).where(t.c.name == name)).one()
    for kind, _title, _meta in events:
        log.info("%s: %r by %s", kind, name, by)
    return User(final.name, final.role, bool(final.disabled))


# ---- acting-user user management (the console) ------------------------------------------------


def add_user(
    store: Store, actor: str, name: str, role: str, password: str, *, settings: Settings | None = None
) -> User:
    authorize(store, actor, "users.manage", settings)
    return create_user(store, name, role, password, by=actor)


def set_role(store: Store, actor: str, name: str, role: str, *, settings: Settings | None = None) -> User:
    authorize(store, actor, "users.manage", settings)
    return update_user(store, name, role=role, by=actor)


def reset_password(
    store: Store, actor: str, name: str, password: str, *, settings: Settings | None = None
) -> User:
    authorize(store, actor, "users.manage", settings)
    return update_user(store, name, password=password, by=actor)


def disable_user(store: Store, actor: str, name: str, *, settings: Settings | None = None) -> User:
    authorize(store, actor, "users.manage", settings)
    if name == actor:
        raise ValueError("you cannot disable yourself")
    return update_user(store, name, disabled=True, by=actor)


def enable_user(store: Store, actor: str, name: str, *, settings: Settings | None = None) -> User:
    authorize(store, actor, "users.manage", settings)
    return update_user(store, name, disabled=False, by=actor)


def unlock_user(store: Store, actor: str, name: str, *, settings: Settings | None = None) -> User:
    authorize(store, actor, "users.manage", settings)
    return update_user(store, name, unlock=True, by=actor)


# ---- sign-in ----------------------------------------------------------------------------------


def authenticate(store: Store, name: str, password: str, *, now: datetime | None = None) -> User:
    """Check a sign-in; counts failures and locks the account after five for 15 minutes.

    While locked, even the right password is refused. When the lock has expired the count starts
    again from zero. The error never says whether the name or the password was wrong.
    """
    now = to_naive_utc(now) or utcnow()
    t = schema.users
    if not isinstance(name, str) or not isinstance(password, str) or not name or len(name) > 100:
        raise AuthError("wrong user name or password")
    with store.begin() as conn:
        row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is None:
            hasher().hash("timing-equaliser")  # do not reveal which names exist by timing
            log.info("sign-in refused: unknown user name")  # the name may be a mistyped password
            raise AuthError("wrong user name or password")
        if row.locked_until is not None and row.locked_until > now:
            log.info("sign-in refused for %r: account locked", name)
            raise AccountLocked(row.locked_until)
        if not _verify(row.password_hash, password):
            # a lock that has expired starts a fresh count
            failed = (0 if row.locked_until is not None else row.failed_logins or 0) + 1
            locked = now + LOCKOUT if failed >= MAX_FAILED_LOGINS else None
            conn.execute(
                sa.update(t).where(t.c.name == name).values(failed_logins=failed, locked_until=locked)
            )
            if locked:
                audit_event(
                    conn,
                    "auth.locked",
                    f"User {name} locked after {failed} failed sign-ins",
                    user=name,
                    severity="high",
                    metadata={"until": locked.isoformat()},
                    now=now,
                )
        elif row.disabled:
            failed = locked = None
        else:
            values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
            if hasher().check_needs_rehash(row.password_hash):
                values["password_hash"] = hasher().hash(password)
            conn.execute(sa.update(t).where(t.c.name == name).values(**values))
            log.info("user %r signed in", name)
            return User(row.name, row.role)
    if locked:
        log.warning("user %r locked for %s after %d failed sign-ins", name, LOCKOUT, failed)
        raise AccountLocked(locked)
    if failed is None:
        log.info("sign-in refused for %r: account disabled", name)
        raise AuthError("this account is disabled")
    log.info("sign-in failed for %r (%d of %d)", name, failed, MAX_FAILED_LOGINS)
    raise AuthError("wrong user name or password")


def random_password() -> str:
    return secrets.token_urlsafe(12)


def ensure_first_admin(store: Store) -> str | None:
    """With no user yet, create `admin` with a random password and return it (printed once)."""
    with store.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(schema.users)).scalar():
            return None
    password = random_password()
    try:
        create_user(store, "admin", ADMIN, password, by="bootstrap")
    except ValueError:  # another process created it first
        return None
    return password
