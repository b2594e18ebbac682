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
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from observability.auth import throttle
from observability.auth.audit import audit_event
from observability.auth.roles import ADMIN, PERMISSIONS, ROLES, PermissionDenied
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import to_naive_utc, utcnow

log = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5  # the default of SIGN_IN_MAX_FAILURES
LOCKOUT = timedelta(minutes=15)  # the default of SIGN_IN_LOCKOUT_S
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 100
# The one answer to every refused sign-in: wrong name, wrong password, disabled, locked or throttled
# all read the same, so the form tells nothing about an account to a stranger.
SIGN_IN_REFUSED = "wrong user name or password, or too many attempts from here (wait and try again)"
BUSY = "the console is busy checking other sign-ins; try again in a moment"
PASSWORD_OFF = "password sign-in is switched off; use single sign-on"
HASH_WAIT_S = 10.0  # longest wait for a free hashing slot during sign-in
NAME_CHARS = "letters a-z, digits and . _ - @"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]*\Z")

# bumped by every change of a user's role or disabled flag and every API token revocation in this
# process: what was verified before (the API's cache of verified tokens) must be checked again
_access_changes = 0


def access_changes() -> int:
    """How many access changes this process has made (compare two readings: equal, none since)."""
    return _access_changes


def note_access_change() -> None:
    """Say that this process changed who may do what (a role, a disable, a revoked token)."""
    global _access_changes
    _access_changes += 1


@lru_cache(maxsize=4)
def _hasher_for(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hasher() -> PasswordHasher:
    """The argon2id hasher at the cost the settings ask for (`PASSWORD_HASH_*`)."""
    s = get_settings()
    return _hasher_for(s.password_hash_time_cost, s.password_hash_memory_kib)


_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def hash_slots() -> threading.BoundedSemaphore:
    """At most `PASSWORD_HASH_CONCURRENCY` argon2 computations at once in this process: each costs
    `PASSWORD_HASH_MEMORY_KIB` (64 MiB), so a burst of sign-ins queues instead of eating memory."""
    n = max(1, get_settings().password_hash_concurrency)
    with _slots_lock:
        return _slots.setdefault(n, threading.BoundedSemaphore(n))


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher_for(time_cost, memory_kib).hash(secrets.token_urlsafe(16))


def normalize_name(name: Any) -> str:
    """The canonical form of a user name: Unicode NFKC, lower case (lookups ignore case)."""
    if not isinstance(name, str):
        raise ValueError("user name must be text")
    return unicodedata.normalize("NFKC", name).lower()


class AuthError(Exception):
    """Sign-in failed; the message is safe to show (it never says which part was wrong)."""


class AccountLocked(AuthError):
    """Refused because this name (from this client) or this client is throttled. The message is
    the same as for a wrong password; `until` is for logs and tests, never shown."""

    def __init__(self, until: datetime | None) -> None:
        super().__init__(SIGN_IN_REFUSED)
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
    with hash_slots():
        return hasher().hash(password)


def _verify(password_hash: str, password: str) -> bool:
    """Check a password (the caller holds a hashing slot)."""
    try:
        return hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _by_name(name: str) -> sa.ColumnElement[bool]:
    """Case-insensitive match of a (normalised) user name."""
    try:
        canonical = normalize_name(name)
    except ValueError:
        return sa.false()
    return sa.func.lower(schema.users.c.name) == canonical


def _check_name(name: Any) -> str:
    """A new user's name, normalised (NFKC, lower case) and limited to a safe character set, so
    look-alike, zero-width, bidi and markdown characters cannot spoof another name in the audit
    trail. Returns the stored form; raises ValueError with the reason."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH or name != name.strip():
        raise ValueError(
            f"user name must be 1 to {MAX_NAME_LENGTH} characters without leading or trailing spaces"
        )
    canonical = normalize_name(name)
    if not _NAME_RE.match(canonical) or len(canonical) > MAX_NAME_LENGTH:
        bad = sorted({ch for ch in canonical if not re.match(r"[a-z0-9._@-]", ch)})
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad) or "the first character"
        raise ValueError(
            f"user name may only use {NAME_CHARS} (starting with a letter or digit); refused: {shown}"
        )
    return canonical


def _check_role(role: Any) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


# ---- reading and authorising ------------------------------------------------------------------


def get_user(store: Store, name: str) -> User | None:
    with store.connect() as conn:
        row = conn.execute(
            sa.select(schema.users.c.name, schema.users.c.role, schema.users.c.disabled).where(_by_name(name))
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
        throttled = throttle.account_states(conn)
    out = []
    for r in rows:
        attempts, until = throttled.get(throttle.account_key(normalize_name(r.name)), (0, None))
        out.append(UserInfo(r.name, r.role, bool(r.disabled), attempts, until, r.created_at, r.last_login_at))
    return out


# The role an API token acts with: its scope, the user's role or a narrower one. Set around a
# request's work (`acting_as`, by the API), it narrows the user `authorize` returns, so every
# "holder or admin" decision a service makes sees the token's scope: an admin's operator-scoped
# token overrode another operator's take-over, the role being read from the store.
ACTING_SCOPE: ContextVar[str | None] = ContextVar("acting_scope", default=None)


@contextmanager
def acting_as(scope: str | None) -> Iterator[None]:
    token = ACTING_SCOPE.set(scope)
    try:
        yield
    finally:
        ACTING_SCOPE.reset(token)


def authorize(store: Store, user_name: str | None, action: str, settings: Settings | None = None) -> User:
    """Resolve the acting user and check the action; raises PermissionDenied. Under `acting_as`
    (an API token), the user acts with the token's scope."""
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
    scope = ACTING_SCOPE.get()
    if scope is not None and scope != user.role:
        user = User(user.name, scope, user.disabled)
    if not user.can(action):
        raise PermissionDenied(f"{action}: role {user.role!r} of {user_name!r} may not do this")
    return user


def revoke_user_sessions(conn: sa.Connection, name: str, reason: str, *, now: datetime) -> int:
    """Revoke every open console session of a user inside the caller's transaction."""
    t = schema.sessions
    result = conn.execute(
        sa.update(t)
        .where(sa.func.lower(t.c.user_name) == name.lower(), t.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return result.rowcount or 0


# ---- trusted user management (CLI, bootstrap) -------------------------------------------------


def create_user(
    store: Store, name: str, role: str, password: str, *, now: datetime | None = None, by: str = "cli"
) -> User:
    """Add a user (console callers use `add_user`, which checks `users.manage` for the actor)."""
    _check_role(role)
    name = _check_name(name)
    pw_hash = hash_password(password)
    now = to_naive_utc(now) or utcnow()
    try:
        with store.begin() as conn:
            if conn.execute(sa.select(schema.users.c.name).where(_by_name(name))).first():
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
        row = conn.execute(sa.select(t.c.name, t.c.role, t.c.disabled).where(_by_name(name))).first()
        if row is None:
            raise ValueError(f"no user named {name!r}")
        name = row.name
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
        if pw_hash is not None or unlock:
            throttle.forget_account(conn, normalize_name(name))
        # open sessions end with a change of password, role or a disable (other tabs too)
        for changed, reason in (
            ("password_hash" in values, "password reset"),
            (values.get("disabled") is True, "disabled"),
            ("role" in values, "role changed"),
        ):
            if changed:
                ended = revoke_user_sessions(conn, name, reason, now=now)
                if ended:
                    events.append(
                        ("auth.sessions_revoked", f"{ended} session(s) of {name} ended: {reason}",
                         {"target": name, "reason": reason, "sessions": ended})
                    )  # fmt: skip
                break
        if values:
            conn.execute(sa.update(t).where(t.c.name == name).values(**values))
        for kind, title, meta in events:
            audit_event(conn, kind, title, user=by, severity="medium", metadata=meta, now=now)
        final = conn.execute(sa.select(t.c.name, t.c.role, t.c.disabled).where(t.c.name == name)).one()
    if "role" in values or "disabled" in values:
        note_access_change()
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


def authenticate(
    store: Store,
    name: str,
    password: str,
    *,
    client: str | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> User:
    """Check a sign-in from `client` (the caller's address); returns the user or raises AuthError.

    The attempt is counted first, atomically (`throttle.count_attempt`), for this (name, client)
    pair and for the client; an attempt beyond either limit is refused without checking any
    password, so concurrent guesses can check at most `SIGN_IN_MAX_FAILURES` passwords. The
    attempt that reaches the limit and fails locks the pair for `SIGN_IN_LOCKOUT_S` (doubling with
    each further lock); other client addresses are not affected. Unknown names are counted and
    locked the same way, and unknown, disabled, locked and wrong all give the one message
    `SIGN_IN_REFUSED`; each attempt that gets a check costs one argon2 verification (a dummy one
    for an unknown name), inside the bounded hashing slots.
    """
    s = settings or get_settings()
    if s.oidc_enabled and not s.password_sign_in:  # every door, not only the form (PASSWORD_SIGN_IN)
        raise AuthError(PASSWORD_OFF)
    now = to_naive_utc(now) or utcnow()
    client = (client or "unknown")[:200]
    t = schema.users
    if not isinstance(name, str) or not isinstance(password, str):
        raise AuthError(SIGN_IN_REFUSED)
    canonical = normalize_name(name.strip())[: 4 * MAX_NAME_LENGTH]
    window = timedelta(seconds=s.sign_in_lockout_s)
    pk, ck = throttle.pair_key(canonical, client), throttle.client_key(client)
    with store.begin() as conn:  # committed before any check: concurrent attempts all count
        c_count = throttle.count_attempt(conn, ck, "", now=now, window=window)
        p_count = throttle.count_attempt(conn, pk, throttle.account_key(canonical), now=now, window=window)
    if c_count.attempts > s.sign_in_client_max_failures or p_count.attempts > s.sign_in_max_failures:
        log.info("sign-in refused from %s: too many attempts", client)
        raise AccountLocked(p_count.locked_until or c_count.locked_until)
    with store.connect() as conn:
        row = conn.execute(sa.select(t).where(_by_name(canonical))).first() if canonical else None
    if not hash_slots().acquire(timeout=HASH_WAIT_S):
        log.warning("sign-in refused from %s: no hashing slot free for %.0f s", client, HASH_WAIT_S)
        raise AuthError(BUSY)
    new_hash = None
    try:
        if row is None:
            _verify(_dummy_hash(s.password_hash_time_cost, s.password_hash_memory_kib), password)
            ok = False
        else:
            ok = _verify(row.password_hash, password)
            if ok and hasher().check_needs_rehash(row.password_hash):
                new_hash = hasher().hash(password)
    finally:
        hash_slots().release()
    held = row is not None and row.locked_until is not None and row.locked_until > now  # an admin's lock
    if ok and row is not None and not row.disabled and not held:
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if new_hash is not None:
            values["password_hash"] = new_hash
        with store.begin() as conn:
            throttle.forget_pair(conn, pk)
            throttle.uncount_client(conn, ck)
            conn.execute(sa.update(t).where(t.c.name == row.name).values(**values))
        log.info("user %r signed in from %s", row.name, client)
        return User(row.name, row.role)
    locked = None
    with store.begin() as conn:
        if p_count.attempts == s.sign_in_max_failures:
            locked = throttle.lock(conn, pk, p_count, now=now, base=window)
            who = f"User {row.name}" if row is not None else "An unknown user name"
            audit_event(
                conn,
                "auth.locked",
                f"{who}: sign-in from {client} paused after {p_count.attempts} failed attempts",
                user=row.name if row is not None else None,
                severity="high",
                metadata={"client": client, "until": locked},
                now=now,
            )
        if c_count.attempts == s.sign_in_client_max_failures:
            until = throttle.lock(conn, ck, c_count, now=now, base=window)
            locked = locked or until
            audit_event(
                conn,
                "auth.client_locked",
                f"Sign-in from {client} paused after {c_count.attempts} failed attempts",
                user=None,
                severity="high",
                metadata={"client": client, "until": until},
                now=now,
            )
    if row is None:
        log.info("sign-in refused from %s: unknown user name", client)  # the name may be a password
    elif row.disabled or held:
        log.info("sign-in refused for %r from %s: account disabled or held", row.name, client)
    else:
        log.info(
            "sign-in failed for %r from %s (%d of %d)",
            row.name,
            client,
            p_count.attempts,
            s.sign_in_max_failures,
        )
    if locked is None and held:
        locked = row.locked_until
    if locked is not None:
        log.warning("sign-in from %s paused until %s UTC", client, f"{locked:%Y-%m-%d %H:%M}")
        raise AccountLocked(locked)
    raise AuthError(SIGN_IN_REFUSED)


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
