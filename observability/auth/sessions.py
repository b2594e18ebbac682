"""Console sessions kept in the store, carried by a signed HttpOnly cookie.

A session id is 256 random bits; the cookie holds it signed (itsdangerous, with `SESSION_SECRET` or
a random key kept in `SESSION_SECRET_FILE`), the store holds only its SHA-256. Every page run
resolves the cookie here (`resolve`), so a session ends everywhere at once when it is revoked
(sign-out, password reset, disable, role change), unused for `SESSION_IDLE_TIMEOUT_S` or older than
`SESSION_LIFETIME_S`; the reason is returned so the sign-in page can say why.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from observability.auth.audit import audit_event
from observability.auth.secret import secret_key
from observability.auth.users import User, get_user, revoke_user_sessions
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import to_naive_utc, utcnow

log = logging.getLogger(__name__)

__all__ = ["revoke_user_sessions"]  # lives in users.py (update_user revokes)

COOKIE_NAME = "obs_session"
CSRF_COOKIE_NAME = "obs_csrf"
SEEN_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session

# why a session ended, as the sign-in page says it
EXPIRED_IDLE = "your session ended after a period without activity"
EXPIRED_LIFETIME = "your session reached its maximum lifetime"
REVOKED = {
    "signed out": "you signed out",
    "password reset": "your password was changed",
    "disabled": "your account was disabled",
    "role changed": "your role was changed",
}


@dataclass(frozen=True)
class Resolved:
    user: User | None
    reason: str | None = None  # why there is no user (None: no session at all)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _serializer(settings: Settings | None, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key(settings), salt=salt)


def sign(token: str, settings: Settings | None = None, *, salt: str = "session") -> str:
    return _serializer(settings, salt).dumps(token)


def unsign(value: str | None, settings: Settings | None = None, *, salt: str = "session") -> str | None:
    """The token inside a signed cookie value, or None when it is missing or forged."""
    if not value:
        return None
    try:
        token = _serializer(settings, salt).loads(value)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def start(store: Store, user: User, *, client: str | None = None, now: datetime | None = None,
          settings: Settings | None = None) -> str:  # fmt: skip
    """Open a session for a signed-in user; returns the token (sign it into the cookie)."""
    s = settings or get_settings()
    now = to_naive_utc(now) or utcnow()
    token = secrets.token_urlsafe(32)
    with store.begin() as conn:
        conn.execute(
            sa.insert(schema.sessions).values(
                id_hash=_hash(token),
                user_name=user.name,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=s.session_lifetime_s),
            )
        )
        audit_event(conn, "auth.signed_in", f"User {user.name} signed in", user=user.name,
                    metadata={"client": client or "unknown"}, now=now)  # fmt: skip
    log.info("session started for %r", user.name)
    return token


def resolve(store: Store, token: str | None, *, now: datetime | None = None,
            settings: Settings | None = None) -> Resolved:  # fmt: skip
    """The user of a session token, re-read from the store (a changed role applies at once)."""
    if not token:
        return Resolved(None)
    s = settings or get_settings()
    now = to_naive_utc(now) or utcnow()
    t = schema.sessions
    with store.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.id_hash == _hash(token))).first()
    if row is None:
        return Resolved(None, "your session is no longer known; please sign in again")
    if row.revoked_at is not None:
        return Resolved(None, REVOKED.get(row.revoked_reason or "", "your session was ended"))
    if row.expires_at <= now:
        return Resolved(None, EXPIRED_LIFETIME)
    if row.last_seen_at + timedelta(seconds=s.session_idle_timeout_s) <= now:
        return Resolved(None, EXPIRED_IDLE)
    user = get_user(store, row.user_name)
    if user is None or user.disabled:
        return Resolved(None, REVOKED["disabled"])
    if now - row.last_seen_at >= SEEN_EVERY:
        with store.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id_hash == row.id_hash).values(last_seen_at=now))
    return Resolved(user)


def end(store: Store, token: str | None, *, now: datetime | None = None) -> bool:
    """Sign out: revoke this session (every tab using it loses access on its next run)."""
    if not token:
        return False
    now = to_naive_utc(now) or utcnow()
    t = schema.sessions
    with store.begin() as conn:
        row = conn.execute(
            sa.select(t.c.user_name).where(t.c.id_hash == _hash(token), t.c.revoked_at.is_(None))
        ).first()
        if row is None:
            return False
        conn.execute(
            sa.update(t)
            .where(t.c.id_hash == _hash(token))
            .values(revoked_at=now, revoked_reason="signed out")
        )
        audit_event(conn, "auth.signed_out", f"User {row.user_name} signed out", user=row.user_name, now=now)
    log.info("session ended for %r", row.user_name)
    return True
