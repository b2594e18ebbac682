"""The sign-in throttle: attempts counted atomically in the store, per (account, client) and per client.

Every sign-in attempt first runs one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` on
`sign_in_throttle` (SQLite >= 3.35 and PostgreSQL both have it), so N concurrent guesses count N:
the row lock of the upsert orders them and each sees its own count. Only attempts whose count is
within the limit go on to check a password; the others are refused before any hashing.

Keys are HMAC-SHA256 digests (under the console's secret) of the normalised user name and the client address, so a password typed
into the name field is never stored in clear, and an unknown name throttles (and "locks") exactly
like a real one. A pair (name, address) locks after `sign_in_max_failures` attempts; each further
lock of the same pair doubles, up to a day. A client address locks after
`sign_in_client_max_failures` failed attempts over all names (a spray). Another address is not
affected: a stranger cannot lock the admin out.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from observability.auth.secret import secret_key
from observability.store import schema

MAX_LOCK = timedelta(days=1)
QUIET_RESET = timedelta(days=1)  # a pair with no attempt for this long forgets its earlier locks


def digest(*parts: str) -> str:
    """HMAC-SHA256 under the console's secret: a password typed into the name field is not kept
    in a form a fast offline guess could reverse."""
    return hmac.new(
        secret_key().encode("utf-8"), "\0".join(parts).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def account_key(name: str) -> str:
    return digest("account", name)


def pair_key(name: str, client: str) -> str:
    return digest("pair", name, client)


def client_key(client: str) -> str:
    return digest("client", client)


@dataclass(frozen=True)
class Count:
    attempts: int
    lockouts: int
    locked_until: datetime | None


def count_attempt(conn: sa.Connection, key: str, acct: str, *, now: datetime, window: timedelta) -> Count:
    """Add one attempt to `key` atomically and return the new count.

    A lock that has expired, or a count with no attempt for `window`, starts again from 1."""
    t = schema.sign_in_throttle
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
    expired = sa.or_(
        sa.and_(t.c.locked_until.is_not(None), t.c.locked_until <= now),
        sa.and_(t.c.locked_until.is_(None), t.c.updated_at <= now - window),
    )
    stmt = insert(t).values(
        key=key, account_key=acct, attempts=1, lockouts=0, locked_until=None, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.key],
        set_={
            "attempts": sa.case((expired, 1), else_=t.c.attempts + 1),
            "locked_until": sa.case((expired, None), else_=t.c.locked_until),
            "lockouts": sa.case((t.c.updated_at <= now - QUIET_RESET, 0), else_=t.c.lockouts),
            "updated_at": now,
        },
    ).returning(t.c.attempts, t.c.lockouts, t.c.locked_until)
    row = conn.execute(stmt).one()
    return Count(row.attempts, row.lockouts, row.locked_until)


def lock(conn: sa.Connection, key: str, count: Count, *, now: datetime, base: timedelta) -> datetime:
    """Lock `key` (called once, by the attempt whose count reached the limit); returns the end."""
    until = now + min(base * (2**count.lockouts), MAX_LOCK)
    t = schema.sign_in_throttle
    conn.execute(sa.update(t).where(t.c.key == key).values(locked_until=until, lockouts=t.c.lockouts + 1))
    return until


def forget_pair(conn: sa.Connection, key: str) -> None:
    t = schema.sign_in_throttle
    conn.execute(sa.delete(t).where(t.c.key == key))


def uncount_client(conn: sa.Connection, key: str) -> None:
    """A successful sign-in does not count against its address."""
    t = schema.sign_in_throttle
    conn.execute(sa.update(t).where(t.c.key == key, t.c.attempts > 0).values(attempts=t.c.attempts - 1))


def forget_account(conn: sa.Connection, name: str) -> int:
    """Clear every lock and count of an account (unlock, password reset); returns rows removed."""
    t = schema.sign_in_throttle
    return conn.execute(sa.delete(t).where(t.c.account_key == account_key(name))).rowcount or 0


def account_states(conn: sa.Connection) -> dict[str, tuple[int, datetime | None]]:
    """account_key -> (largest attempt count, latest lock) over the account's client pairs."""
    t = schema.sign_in_throttle
    rows = conn.execute(
        sa.select(t.c.account_key, t.c.attempts, t.c.locked_until).where(t.c.account_key != "")
    ).all()
    out: dict[str, tuple[int, datetime | None]] = {}
    for r in rows:
        attempts, until = out.get(r.account_key, (0, None))
        if r.locked_until is not None and (until is None or r.locked_until > until):
            until = r.locked_until
        out[r.account_key] = (max(attempts, r.attempts), until)
    return out
