"""The leader lock: exactly one worker runs the leader-only steps of the tick.

Many workers may drain the ingest stream, but rules, escalations and notifications must run once,
so a notification is never sent twice because two workers ran. On PostgreSQL the lock is a session
advisory lock on a connection held for as long as the worker leads; on SQLite it is an exclusive
`flock` on a file next to the database. Either is released by the server or the OS when the
process dies, even by SIGKILL, so another worker takes over at its next tick.
"""

from __future__ import annotations

import fcntl
import logging
import os
from typing import IO

import sqlalchemy as sa

from observability.localfiles import open_private
from observability.outages import OutageLog
from observability.settings import Settings
from observability.store import Store

log = logging.getLogger("observability.worker")


class LeaderLock:
    """Held for as long as the worker leads; lost if its connection or process dies."""

    def __init__(self, store: Store, settings: Settings, *, outages: OutageLog | None = None) -> None:
        self.store = store
        self.settings = settings
        self.outages = outages or OutageLog(log)
        self._conn: sa.Connection | None = None
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fh is not None

    def try_acquire(self) -> bool:
        """True while this worker leads: takes the lock if free, or checks that it still holds it."""
        try:
            held = self._pg() if self.store.is_postgres else self._file()
        except Exception as exc:  # noqa: BLE001
            self.outages.failure("leader lock", "leader lock check failed", exc)
            self.release()
            return False
        self.outages.recovered("leader lock", "leader lock check")
        return held

    def _pg(self) -> bool:
        if self._conn is not None:
            self._conn.execute(sa.text("SELECT 1"))  # still alive? (raises if not)
            self._conn.rollback()  # never sit "idle in transaction": that would hold back VACUUM
            return True
        conn = self.store.engine.connect()
        got = conn.execute(
            sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.store.lock_key("leader")}
        ).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _file(self) -> bool:
        if self._fh is not None:
            return True
        db = self.store.engine.url.database
        # one lock per SQLite file, next to it; an in-memory store uses the configured path
        path = (
            f"{os.path.abspath(db)}.leader.lock"
            if db and db != ":memory:"
            else str(self.settings.worker_lock_file)
        )
        fh = os.fdopen(open_private(path, os.O_RDWR | os.O_CREAT), "a+")  # 0600 in a 0700 directory
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
        if self._fh is not None:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_UN)
                self._fh.close()
            except Exception:  # noqa: BLE001
                pass
            self._fh = None
