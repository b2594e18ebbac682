"""Per-user API tokens: signed JWTs for the HTTP API and its WebSocket (`/api/v1`).

A token is a JWT (HS256, PyJWT) signed with a key derived from the console's secret
(`auth.secret.secret_key`), carrying the user (`sub`), a scope (a role no wider than the user's),
an expiry and a random `jti`. The token itself is shown once, when it is created; the store keeps
only the SHA-256 of its `jti`, so a stolen database cannot be turned into tokens, and revoking a
row ends the token. `verify_token` reads the row and the user, so a revoked token, an expired one or
a disabled user gets 401; a scope or role without the permission gets 403.

`VerifiedTokens` lets the API skip that read for a token it verified in the last API_TOKEN_CACHE_S
seconds (5): a revocation, a disable or a role change made in this process (the console's Admin
page, its API) ends the cached verdicts at once; one made elsewhere (the CLI, another console
process) takes effect within API_TOKEN_CACHE_S. The WebSocket's periodic re-check reads the store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
import sqlalchemy as sa

from observability.auth.audit import audit_event
from observability.auth.roles import ADMIN, PERMISSIONS, ROLES, PermissionDenied
from observability.auth.secret import secret_key
from observability.auth.users import User, access_changes, authorize, get_user, note_access_change
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import as_aware, resolve_now, to_naive_utc

ALGORITHM = "HS256"
ISSUER = "observability-console"
AUDIENCE = "observability-api"
MAX_NAME = 100


class TokenInvalid(Exception):
    """The request's token cannot be used (missing, malformed, expired, revoked, user disabled):
    HTTP 401. The message says which, and never echoes the token."""


@dataclass(frozen=True)
class Principal:
    """Who a valid token acts for: the user, their current role and the token's scope."""

    user: str
    role: str
    scope: str
    jti_hash: str
    expires_at: datetime | None = None  # aware UTC (None: not known)

    def may(self, action: str) -> bool:
        """True when both the token's scope and the user's current role allow `action`."""
        allowed = PERMISSIONS.get(action, frozenset())
        return self.scope in allowed and self.role in allowed


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; never stored
    name: str
    user: str
    scope: str
    expires_at: datetime  # aware UTC


def _signing_key(settings: Settings | None) -> bytes:
    """A key of its own for API tokens, derived from the console secret (cookies use another)."""
    s = settings or get_settings()
    if s.session_secret:
        return _derive(s.session_secret)
    path = str(s.session_secret_file)
    key = _file_keys.get(path)
    if key is None:  # read SESSION_SECRET_FILE once per process, not on every request
        key = _file_keys[path] = _derive(secret_key(s))
    return key


_file_keys: dict[str, bytes] = {}


@lru_cache(maxsize=8)
def _derive(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"api-token-v1", hashlib.sha256).digest()


def _acting(store: Store, actor: str | None) -> User:
    if actor is None:
        return User("cli", ADMIN)
    acting = get_user(store, actor)
    if acting is None or acting.disabled:
        raise PermissionDenied(f"api tokens: unknown or disabled user {actor!r}")
    return acting


def _hash(jti: str) -> str:
    return hashlib.sha256(jti.encode()).hexdigest()


def _permissions(role: str) -> set[str]:
    return {a for a, roles in PERMISSIONS.items() if role in roles}


def scopes_for(role: str) -> list[str]:
    """The scopes a user of `role` may give a token: roles whose permissions are a subset of theirs."""
    mine = _permissions(role)
    return [r for r in ROLES if _permissions(r) <= mine]


def create_token(
    store: Store,
    actor: str | None,
    user: str,
    name: str,
    *,
    scope: str | None = None,
    days: float | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> IssuedToken:
    """Issue a token for `user` (the actor themself, or anyone when the actor is an admin;
    `actor=None` is the trusted CLI, which acts with the store's own credentials).

    `scope` defaults to the user's role and may only narrow it; `days` defaults to
    API_TOKEN_DEFAULT_DAYS and is capped by API_TOKEN_MAX_DAYS. Raises ValueError for bad input,
    PermissionDenied when the actor may not issue it.
    """
    s = settings or get_settings()
    acting = _acting(store, actor)
    target = get_user(store, user)
    if target is None:
        raise ValueError(f"no user {user!r}")
    if target.disabled:
        raise ValueError(f"user {target.name!r} is disabled")
    if actor is not None and target.name.lower() != acting.name.lower():
        authorize(store, actor, "users.manage", s)
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a token needs a name (what will use it)")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ValueError(f"the token name is longer than {MAX_NAME} characters")
    scope = scope or target.role
    if scope not in ROLES:
        raise ValueError(f"scope must be one of {', '.join(ROLES)}")
    if scope not in scopes_for(target.role):
        raise ValueError(f"scope {scope!r} is wider than the role {target.role!r} of {target.name!r}")
    days = float(s.api_token_default_days if days is None else days)
    if not 0 < days <= s.api_token_max_days:
        raise ValueError(f"a token lives more than 0 and at most {s.api_token_max_days} days")
    now = resolve_now(now)
    expires = now + timedelta(days=days)
    jti = secrets.token_urlsafe(24)
    claims = {
        "sub": target.name,
        "scope": scope,
        "jti": jti,
        "iat": int(as_aware(now).timestamp()),
        "exp": int(as_aware(expires).timestamp()),
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    token = jwt.encode(claims, _signing_key(s), algorithm=ALGORITHM)
    with store.begin() as conn:
        conn.execute(
            sa.insert(schema.api_tokens).values(
                jti_hash=_hash(jti), user_name=target.name, name=name, scope=scope,
                created_at=to_naive_utc(now), created_by=acting.name, expires_at=to_naive_utc(expires),
            )
        )  # fmt: skip
        audit_event(
            conn, "api_token.created", f"{acting.name} created API token {name!r} for {target.name}",
            user=acting.name, metadata={"user": target.name, "scope": scope, "expires_at": expires}, now=now,
        )  # fmt: skip
    return IssuedToken(token, name, target.name, scope, as_aware(expires))


def list_tokens(store: Store, user: str | None = None) -> list[dict[str, Any]]:
    """Tokens (never the token itself), newest first; `id` is the stored hash, used to revoke."""
    t = schema.api_tokens
    stmt = sa.select(t).order_by(t.c.created_at.desc())
    if user:
        stmt = stmt.where(sa.func.lower(t.c.user_name) == user.lower())
    with store.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        {"id": r.jti_hash, "user": r.user_name, "name": r.name, "scope": r.scope,
         "created_at": as_aware(r.created_at), "created_by": r.created_by,
         "expires_at": as_aware(r.expires_at), "revoked_at": as_aware(r.revoked_at)}
        for r in rows
    ]  # fmt: skip


def revoke_token(
    store: Store,
    actor: str | None,
    token_id: str,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> bool:
    """Revoke a token by its id (from `list_tokens`): its owner or an admin may. True when it
    was active; False when it was already revoked. Raises LookupError for an unknown id."""
    s = settings or get_settings()
    acting = _acting(store, actor)
    now = resolve_now(now)
    t = schema.api_tokens
    with store.begin() as conn:
        row = conn.execute(sa.select(t).where(t.c.jti_hash == str(token_id))).first()
        if row is None:
            raise LookupError(f"no API token {token_id!r}")
        if actor is not None and row.user_name.lower() != acting.name.lower():
            authorize(store, actor, "users.manage", s)
        if row.revoked_at is not None:
            return False
        conn.execute(
            sa.update(t)
            .where(t.c.jti_hash == row.jti_hash)
            .values(revoked_at=to_naive_utc(now), revoked_by=acting.name)
        )
        audit_event(
            conn, "api_token.revoked", f"{acting.name} revoked API token {row.name!r} of {row.user_name}",
            user=acting.name, metadata={"user": row.user_name}, now=now,
        )  # fmt: skip
    note_access_change()
    return True


def verify_token(
    store: Store, token: str | None, *, now: datetime | None = None, settings: Settings | None = None
) -> Principal:
    """The principal of a bearer token, or TokenInvalid saying why (HTTP 401)."""
    if not token:
        raise TokenInvalid("no API token: send 'Authorization: Bearer <token>'")
    s = settings or get_settings()
    try:
        claims = jwt.decode(
            token, _signing_key(s), algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["exp", "jti", "sub", "scope"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("the API token has expired: create a new one") from None
    except jwt.PyJWTError:
        raise TokenInvalid("the API token is not valid (malformed or not signed by this console)") from None
    t, u = schema.api_tokens, schema.users
    stmt = (
        sa.select(t.c.jti_hash, t.c.user_name, t.c.scope, t.c.expires_at, t.c.revoked_at,
                  u.c.name.label("current_name"), u.c.role, u.c.disabled)
        .select_from(t.outerjoin(u, sa.func.lower(u.c.name) == sa.func.lower(t.c.user_name)))
        .where(t.c.jti_hash == _hash(str(claims["jti"])))
    )  # fmt: skip
    with store.connect() as conn:  # one query per request: the token row and its user's current state
        row = conn.execute(stmt).first()
    if row is None:
        raise TokenInvalid("the API token is unknown to this console")
    if row.revoked_at is not None:
        raise TokenInvalid("the API token was revoked")
    if row.expires_at <= resolve_now(now):
        raise TokenInvalid("the API token has expired: create a new one")
    if row.current_name is None or row.disabled:
        raise TokenInvalid(f"user {row.user_name!r} is disabled or removed")
    return Principal(row.current_name, row.role, row.scope, row.jti_hash, as_aware(row.expires_at))


class VerifiedTokens:
    """Principals of tokens verified in the last `ttl_s` seconds, so a request with a token seen a
    moment ago needs neither the signature check nor the store.

    An entry ends after `ttl_s`, at its token's expiry, or at the next access change made in this
    process (`users.note_access_change`: a revocation, a disable, a role change), whichever comes
    first. Keyed by the token's SHA-256; refusals are never cached. `ttl_s <= 0`: nothing is kept.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float, clock: Any = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal, float, float, int]] = {}  # key -> (p, until, exp, changes)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str | None) -> Principal | None:
        """The cached principal of `token`, or None (verify it with `verify_token`, then `put`)."""
        if not token or self.ttl_s <= 0:
            return None
        entry = self._entries.get(self._key(token))
        if entry is None:
            return None
        principal, until, exp, changes = entry
        if self.clock() >= until or time.time() >= exp or changes != access_changes():
            return None
        return principal

    def put(self, token: str, principal: Principal, changes: int) -> None:
        """Keep `principal`, verified by a store read that began when `access_changes()` was
        `changes` (a change during the read leaves an entry that is never used)."""
        if self.ttl_s <= 0:
            return
        exp = principal.expires_at.timestamp() if principal.expires_at is not None else float("inf")
        now = self.clock()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                current = access_changes()
                self._entries = {k: e for k, e in self._entries.items() if e[1] > now and e[3] == current}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[self._key(token)] = (principal, now + self.ttl_s, exp, changes)
