"""The SQL store: one engine over SQLite (embedded default) or PostgreSQL (psycopg 3).

Services are query objects over a `Store`; nothing keeps state the console cannot see. Bulk
writes go through `insert_ignore`: COPY on PostgreSQL (falling back to COPY into a temporary table
plus `INSERT ... ON CONFLICT DO NOTHING` only when a batch holds an already stored id), and
`INSERT OR IGNORE` executemany on SQLite. Either way re-delivered events do not duplicate rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from observability.localfiles import ensure_private_file, open_private
from observability.settings import PROJECT_ROOT, Settings, get_settings
from observability.store import schema

log = logging.getLogger(__name__)

ALEMBIC_DIR = PROJECT_ROOT / "alembic"


class StoreUnavailable(RuntimeError):
    """The database refused or dropped the connection; callers retry later."""


class SchemaNotReady(RuntimeError):
    """The store's schema is missing or older than this code's: the message says what to run."""


MIGRATE_COMMAND = "python -m observability.bootstrap"  # migrates (and seeds) the store


def revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every Alembic revision shipped with this code, the newest ones), read from the migration
    files without importing Alembic, so that a bot checking its store's schema stays light."""
    revs: set[str] = set()
    downs: set[str] = set()
    for f in (ALEMBIC_DIR / "versions").glob("*.py"):
        text = f.read_text()
        for name, into in (("revision", revs), ("down_revision", downs)):
            m = re.search(rf"^{name}\s*(?::[^=\n]*)?=\s*(.+)$", text, re.M)
            if m:
                into.update(re.findall(r"[\"']([^\"']+)[\"']", m.group(1)))
    return frozenset(revs), frozenset(revs - downs)


def _sqlite_ln(x: float | None) -> float | None:
    return None if x is None or x <= 0 else math.log(x)


def _sqlite_ceil(x: float | None) -> float | None:
    return None if x is None else float(math.ceil(x))


def _sqlite_path(url: sa.URL) -> Path | None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


class Store:
    """A SQLAlchemy engine plus the few dialect-specific operations the project needs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name  # "sqlite" | "postgresql"
        self._namespace: str | None = None

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str | None = None, **engine_kwargs: Any) -> "Store":
        """Open a store; `url` defaults to DATABASE_URL (or the embedded SQLite file)."""
        url = url or get_settings().database_url
        parsed = sa.make_url(url)
        if parsed.drivername == "postgresql" or parsed.drivername == "postgres":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() == "sqlite":
            path = _sqlite_path(parsed)
            if path is not None:  # private: 0600 in a 0700 directory (SQLite gives its WAL the same mode)
                ensure_private_file(path)
            engine = sa.create_engine(
                parsed,
                connect_args={"check_same_thread": False, "timeout": 30},
                **engine_kwargs,
            )

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                try:  # rollups need ln() and ceil(); some SQLite builds lack the math functions
                    cur.execute("SELECT ln(2.0), ceil(1.5)")
                except sqlite3.OperationalError:
                    dbapi_conn.create_function("ln", 1, _sqlite_ln, deterministic=True)
                    dbapi_conn.create_function("ceil", 1, _sqlite_ceil, deterministic=True)
                cur.close()

        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
            engine_kwargs.setdefault("pool_size", 5)
            engine_kwargs.setdefault("max_overflow", 10)
            if "connect_timeout" not in parsed.query:  # an unreachable host fails in seconds, not minutes
                connect_args = dict(engine_kwargs.get("connect_args") or {})
                connect_args.setdefault("connect_timeout", 10)
                engine_kwargs["connect_args"] = connect_args
            engine = sa.create_engine(parsed, **engine_kwargs)
        return cls(engine)

    @classmethod
    def for_reads(cls, settings: Settings | None = None) -> "Store":
        """A store for reads only: DATABASE_READ_URL (a hot standby) when set, else DATABASE_URL.

        The console reads through it so dashboards load a replica, not the primary that ingest and
        the worker write to. Never migrate it or write through it: a standby refuses writes.
        """
        return cls.from_url(read_url(settings))

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def dispose(self) -> None:
        self.engine.dispose()

    # ---- schema -------------------------------------------------------------------------------
    def schema_revisions(self) -> frozenset[str] | None:
        """The Alembic revision(s) the store is at; None when it has never been migrated."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return frozenset(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())

    def check_schema(self) -> None:
        """Raise `SchemaNotReady`, saying what to run, unless the store is migrated to this code's
        newest revision (or to a newer one, by newer code). Never changes the schema."""
        current = self.schema_revisions()
        known, heads = revisions()
        where = self.engine.url.render_as_string(hide_password=True)
        if not current:
            raise SchemaNotReady(
                f"the store {where} has no schema yet: run `{MIGRATE_COMMAND}` with DATABASE_URL set to it"
            )
        if current != heads and current <= known:  # not at the newest, and not newer
            raise SchemaNotReady(
                f"the store {where} is at schema revision {', '.join(sorted(current))}, this code needs "
                f"{', '.join(sorted(heads))}: run `{MIGRATE_COMMAND}` with DATABASE_URL set to it"
            )

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision (safe to call concurrently)."""
        from alembic.config import Config

        from alembic import command

        cfg = Config()
        cfg.set_main_option("script_location", str(ALEMBIC_DIR))
        with self._migration_lock():
            with self.engine.begin() as conn:
                if self.is_postgres:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.lock_key("migrate")})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    def ensure_migrated(self) -> None:
        """`migrate()` unless the store is already at this code's newest revision: one query, where
        `migrate()` loads Alembic and its migration scripts (seconds on a console's first page run)."""
        if self.schema_revisions() == revisions()[1]:
            return
        self.migrate()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        path = _sqlite_path(self.engine.url) if not self.is_postgres else None
        if path is None:
            yield
            return
        lock_path = path.with_name(path.name + ".migrate.lock")
        with os.fdopen(open_private(lock_path), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- identity for locks -------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        """What identifies this store among others on the same server (database and schema)."""
        if self._namespace is None:
            if self.is_postgres:
                with self.engine.connect() as conn:
                    return self.namespace_on(conn)
            self._namespace = f"sqlite:{self.engine.url.database}"
        return self._namespace

    def namespace_on(self, conn: Connection) -> str:
        """`namespace`, asked on a connection the caller already holds (the first query of a new
        process would otherwise open a second connection just for it)."""
        if self._namespace is None:
            if not self.is_postgres:
                return self.namespace
            db, sch = conn.execute(sa.text("SELECT current_database(), current_schema()")).one()
            self._namespace = f"pg:{db}:{sch}"
        return self._namespace

    def lock_key(self, purpose: str) -> int:
        """A stable signed 64-bit key for PostgreSQL advisory locks, per store and purpose."""
        digest = hashlib.blake2b(f"{self.namespace}:{purpose}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    # ---- connections --------------------------------------------------------------------------
    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; connection errors surface as StoreUnavailable."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            if _is_connection_error(exc):
                raise StoreUnavailable(str(exc.orig)) from exc
            raise
        except sa.exc.InterfaceError as exc:
            raise StoreUnavailable(str(exc.orig)) from exc

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if isinstance(exc, sa.exc.InterfaceError) or _is_connection_error(exc):
                raise StoreUnavailable(str(exc.orig)) from exc
            raise

    def replica_lag_s(self) -> float | None:
        """How many seconds this store's server replays behind its primary: None on a primary (or
        SQLite), 0.0 on a standby that has replayed all it received from a connected primary, and
        `math.inf` when a standby has never replayed a transaction and cannot say.

        Lag is the age of the last replayed transaction while WAL is waiting to be replayed (or the
        standby's WAL receiver is not running): an idle primary does not make a standby look late.
        """
        if not self.is_postgres:
            return None
        with self.connect() as conn:
            standby, caught_up, seconds = conn.execute(sa.text(_LAG_SQL)).one()
        if not standby:
            return None
        if caught_up:
            return 0.0
        return math.inf if seconds is None else max(float(seconds), 0.0)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False

    # ---- dialect helpers ----------------------------------------------------------------------
    def insert(self, table: sa.Table):  # noqa: ANN201 - dialect Insert
        """A dialect insert construct, so callers can use `.on_conflict_do_nothing/update`."""
        return (postgresql.insert if self.is_postgres else sqlite.insert)(table)

    def greatest(self, a: Any, b: Any) -> Any:
        return sa.func.greatest(a, b) if self.is_postgres else sa.func.max(a, b)

    def least(self, a: Any, b: Any) -> Any:
        return sa.func.least(a, b) if self.is_postgres else sa.func.min(a, b)

    def insert_ignore(
        self,
        conn: Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[tuple],
        *,
        savepoint: bool = True,
    ) -> None:
        """Insert rows (tuples in `columns` order); rows whose primary key exists are skipped.

        `savepoint=False` (PostgreSQL): the COPY runs without the savepoint that lets a duplicate
        undo only this attempt, two round trips fewer; a duplicate then raises `DuplicateRows` with
        the transaction failed, for the caller to run it again with the savepoint."""
        if not rows:
            return
        if self.is_postgres:
            _pg_copy_ignore(conn, table, columns, rows, savepoint)
        else:
            stmt = sqlite.insert(table).on_conflict_do_nothing()
            conn.execute(stmt, [dict(zip(columns, r, strict=True)) for r in rows])


def read_url(settings: Settings | None = None) -> str:
    """Where reads go: DATABASE_READ_URL when set, else DATABASE_URL."""
    s = settings or get_settings()
    return s.database_read_url or s.database_url


_LAG_SQL = """
SELECT pg_is_in_recovery(),
       pg_is_in_recovery()
         AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
         AND pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
       EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())
"""


def _is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    msg = str(exc.orig).lower()
    return any(
        s in msg
        for s in (
            "connection refused",
            "could not connect",
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "the database system is",
            "consuming input failed",
            "no such host",
            "connection timeout",
            "connection failed",
        )
    )


def _json_cols(table: sa.Table, columns: Sequence[str]) -> list[int]:
    return [i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.JSON)]


def _pg_type_name(t: sa.types.TypeEngine) -> str | None:
    """The PostgreSQL type a binary COPY must send for a column (None: not known here)."""
    if isinstance(t, sa.JSON):
        return "json"
    if isinstance(t, sa.String):
        return "text"  # varchar's binary form is the text's, length limits still apply
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.BigInteger):
        return "int8"
    if isinstance(t, sa.SmallInteger):
        return "int2"
    if isinstance(t, sa.Integer):
        return "int4"
    if isinstance(t, sa.Float):  # Float, Double, REAL (a plain Numeric falls back to text COPY)
        return "float4" if (t.precision or 53) <= 24 else "float8"
    if isinstance(t, sa.DateTime):
        return "timestamptz" if t.timezone else "timestamp"
    return None


_copy_types: dict[tuple[str, tuple[str, ...]], list[str] | None] = {}


def _binary_types(table: sa.Table, columns: Sequence[str]) -> list[str] | None:
    key = (table.name, tuple(columns))
    if key not in _copy_types:
        names = [_pg_type_name(table.c[c].type) for c in columns]
        _copy_types[key] = None if None in names else names
    return _copy_types[key]


def _copy(cur: Any, target: str, cols: str, types: list[str] | None, rows: Sequence[tuple]) -> None:
    if types is None:
        with cur.copy(f'COPY "{target}" ({cols}) FROM STDIN') as copy:
            for r in rows:
                copy.write_row(r)
        return
    # binary COPY: about 6x less client CPU per row than text, and no text parsing on the server
    with cur.copy(f'COPY "{target}" ({cols}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types(types)
        for r in rows:
            copy.write_row(r)


class DuplicateRows(Exception):
    """A COPY without savepoint met a row already stored; the transaction must be run again."""


def _pg_copy_ignore(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple], savepoint: bool = True
) -> None:
    types = _binary_types(table, columns)
    if types is None:
        jcols = _json_cols(table, columns)
        if jcols:
            rows = [
                tuple(json.dumps(v) if i in jcols and v is not None else v for i, v in enumerate(r))
                for r in rows
            ]
    raw = conn.connection.driver_connection  # psycopg.Connection, inside SQLAlchemy's transaction
    cols = ", ".join(f'"{c}"' for c in columns)
    import psycopg

    if not savepoint:
        try:
            with raw.cursor() as cur:
                _copy(cur, table.name, cols, types, rows)
            return
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateRows(str(exc)) from exc
    try:
        with raw.transaction():  # a savepoint: a duplicate only undoes this attempt
            with raw.cursor() as cur:
                _copy(cur, table.name, cols, types, rows)
        return
    except psycopg.errors.UniqueViolation:
        pass
    tmp = f"_tmp_{table.name}"
    with raw.cursor() as cur:
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{tmp}" (LIKE "{table.name}" INCLUDING DEFAULTS) '
            "ON COMMIT DELETE ROWS"
        )
        cur.execute(f'TRUNCATE "{tmp}"')
        _copy(cur, tmp, cols, types, rows)
        cur.execute(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{tmp}" ON CONFLICT DO NOTHING')
        cur.execute(f'TRUNCATE "{tmp}"')


ALL_TABLES = tuple(schema.metadata.sorted_tables)
