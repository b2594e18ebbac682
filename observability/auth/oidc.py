"""Single sign-on users: who an OpenID Connect identity is in the console, and with which role.

Streamlit's `st.login` does the OIDC flow (Authlib) and `st.user` carries the ID token's claims;
this module turns those claims into a console user without Streamlit, so tests call it directly:

- a user is matched by OIDC subject (`sub`), else by a verified e-mail (the `email` column, or a
  user named by that address, which is then linked to the subject), else created;
- the role comes from the claim `OIDC_ROLE_CLAIM` (default `groups`), mapped by `OIDC_ROLE_MAP`
  (`ops-admins=admin,ops-oncall=operator`); the highest mapped role wins, none gives
  `OIDC_DEFAULT_ROLE` (analyst). The identity provider is the source of truth: the role is applied
  again at every SSO sign-in (a changed role ends the user's other sessions, as any role change);
- a disabled user stays refused.

SSO users have no password (their hash is not a valid hash, so password sign-in always fails).

The page run that saw `st.user` cannot set the console's HttpOnly cookie, so it hands the browser a
short-lived ticket (`issue_ticket`) for `/auth/oidc/complete`, which opens the ordinary console
session. The ticket is signed, expires after `TICKET_MAX_AGE_S` and is bound to the browser's
Streamlit identity cookie (`binding`): a copied URL is useless in another browser.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from observability.auth.audit import audit_event
from observability.auth.roles import ROLES
from observability.auth.secret import secret_key
from observability.auth.users import (
    MAX_NAME_LENGTH,
    SIGN_IN_REFUSED,
    AuthError,
    User,
    _check_name,
    update_user,
)
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import to_naive_utc, utcnow

log = logging.getLogger(__name__)

NO_PASSWORD = "!sso"  # stored instead of a password hash: no password ever matches it
TICKET_MAX_AGE_S = 120
IDENTITY_COOKIE = "_streamlit_user"  # Streamlit's signed identity cookie (set by /oauth2callback)


def claim_values(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The values of a claim as a list of strings (a list claim, or one string split on commas/spaces)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value) if v]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, (str, int))]
    return []


def role_from_claims(claims: Mapping[str, Any], settings: Settings | None = None) -> str:
    """The console role an identity gets: the highest role its claim values map to, else the default."""
    s = settings or get_settings()
    mapped = [s.oidc_role_map[v] for v in claim_values(claims, s.oidc_role_claim) if v in s.oidc_role_map]
    return max(mapped, key=ROLES.index) if mapped else s.oidc_default_role


def _verified_email(claims: Mapping[str, Any]) -> str | None:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or claims.get("email_verified") is False:
        return None
    return unicodedata.normalize("NFKC", email).strip().lower()[:320] or None


def _new_name(conn: sa.Connection, claims: Mapping[str, Any], email: str | None, subject: str) -> str:
    """A free, valid user name for a new SSO user: the e-mail (or preferred name) made safe."""
    t = schema.users
    raw = email or claims.get("preferred_username") or ""
    base = re.sub(r"[^a-z0-9._@-]+", "-", unicodedata.normalize("NFKC", str(raw)).lower()).strip("-._@")
    if not base:
        base = "sso-" + hashlib.sha256(subject.encode("utf-8")).hexdigest()[:12]
    base = base[: MAX_NAME_LENGTH - 4]
    for n in range(1, 100):
        name = _check_name(base if n == 1 else f"{base}-{n}")
        if conn.execute(sa.select(t.c.name).where(sa.func.lower(t.c.name) == name)).first() is None:
            return name
    raise AuthError(SIGN_IN_REFUSED)


def sign_in_oidc(store: Store, claims: Mapping[str, Any], *, settings: Settings | None = None,
                 now: datetime | None = None) -> User:  # fmt: skip
    """The console user of a signed-in OIDC identity (matched, linked or created; role from claims).

    Raises AuthError for an identity without a subject or for a disabled user."""
    s = settings or get_settings()
    now = to_naive_utc(now) or utcnow()
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise AuthError(SIGN_IN_REFUSED)
    email = _verified_email(claims)
    role = role_from_claims(claims, s)
    t = schema.users
    cols = (t.c.name, t.c.role, t.c.disabled, t.c.oidc_subject)
    try:
        with store.begin() as conn:
            row = conn.execute(sa.select(*cols).where(t.c.oidc_subject == subject)).first()
            if row is None and email is not None:
                row = conn.execute(
                    sa.select(*cols)
                    .where(
                        t.c.oidc_subject.is_(None),
                        sa.or_(sa.func.lower(t.c.email) == email, sa.func.lower(t.c.name) == email),
                    )
                    .order_by(t.c.name)
                ).first()
                if row is not None:
                    conn.execute(sa.update(t).where(t.c.name == row.name).values(oidc_subject=subject))
                    audit_event(conn, "user.sso_linked", f"User {row.name} linked to single sign-on",
                                user="oidc", severity="medium", metadata={"target": row.name}, now=now)  # fmt: skip
            if row is None:
                name = _new_name(conn, claims, email, subject)
                conn.execute(
                    sa.insert(t).values(
                        name=name, role=role, password_hash=NO_PASSWORD, disabled=False, failed_logins=0,
                        created_at=now, oidc_subject=subject, email=email,
                    )
                )  # fmt: skip
                audit_event(conn, "user.created", f"User {name} created by single sign-on ({role})",
                            user="oidc", severity="medium", metadata={"target": name, "role": role}, now=now)  # fmt: skip
                log.info("SSO user %r created with role %s", name, role)
                return User(name, role)
            if row.disabled:
                log.info("SSO sign-in refused for %r: disabled", row.name)
                raise AuthError(SIGN_IN_REFUSED)
            conn.execute(sa.update(t).where(t.c.name == row.name).values(last_login_at=now, email=email))
    except sa.exc.IntegrityError:  # the same identity signed in twice at once: the other one created it
        return sign_in_oidc(store, claims, settings=s, now=now)
    if row.role != role:
        try:
            return update_user(store, row.name, role=role, by="oidc", now=now)
        except ValueError as exc:  # the last active admin is not demoted by a claim
            log.warning("SSO role of %r kept as %s: %s", row.name, row.role, exc)
    return User(row.name, row.role)


def binding(identity_cookie: str | None) -> str:
    """What a ticket is bound to: a digest of the browser's Streamlit identity cookie."""
    return hashlib.sha256((identity_cookie or "").encode("utf-8")).hexdigest()


def _serializer(settings: Settings | None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(settings), salt="oidc-complete")


def issue_ticket(user: User, identity_cookie: str | None, settings: Settings | None = None) -> str:
    """A signed ticket for `/auth/oidc/complete` naming the user, bound to the identity cookie."""
    if not identity_cookie:
        raise AuthError(SIGN_IN_REFUSED)
    return _serializer(settings).dumps({"u": user.name, "b": binding(identity_cookie)})


def redeem_ticket(ticket: str | None, identity_cookie: str | None, *, settings: Settings | None = None,
                  max_age: float = TICKET_MAX_AGE_S) -> str | None:  # fmt: skip
    """The user name in a valid, fresh ticket presented with the same identity cookie, else None."""
    if not ticket or not identity_cookie:
        return None
    try:
        data = _serializer(settings).loads(ticket, max_age=max_age)
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict) or data.get("b") != binding(identity_cookie):
        return None
    name = data.get("u")
    return name if isinstance(name, str) else None
