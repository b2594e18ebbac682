"""Retention: how long each kind of row is kept, and daily partitions on PostgreSQL.

| rows | kept for | setting |
|---|---|---|
| raw events (`llm_calls`, `bot_operations`, `bot_interactions`, `handoffs`, `messages`, `activity_events`) | 90 days | `MONITORING_DB_RETENTION_DAYS` |
| raw `system_metrics` | 72 hours | `MONITORING_METRICS_RETENTION_HOURS` |
| delivered or dead `notifications`, ended `silences`, `activity_reads`, stale `worker_heartbeats` | 90 days | `MONITORING_DB_RETENTION_DAYS` |
| per-minute, per-hour and per-day rollups (also `rollup_conversation_hour`, `rollup_account_hour` and `rollup_unpriced_hour`; a day row goes once the whole day has expired) | 400 days | `ROLLUP_RETENTION_DAYS` |
| ended console `sessions` (revoked, idle or past their lifetime) and quiet `sign_in_throttle` rows (no lock in force, no attempt for a day) | 1 day after they ended | `SESSION_IDLE_TIMEOUT_S` (always on) |
| audit trails (`interventions`, `emergency_actions`, `alert_events`) and what they refer to (`alerts`), entities (conversations, accounts, users, rules, control state) | forever | - |

A setting of 0 keeps that class forever. A row is expired when its time is strictly before
`now - retention`; exactly those rows go.

On PostgreSQL the raw event tables are partitioned by day (see the initial migration): one
partition `<table>_pYYYYMMDD` per UTC day plus a DEFAULT partition. `ensure_partitions` creates
day partitions ahead (yesterday .. today+3); when the default partition already holds rows of a
day being created (data that arrived before its partition existed), they are moved into the new
partition in the same transaction. `purge` drops every day partition that lies wholly before the
cutoff (no row-by-row delete, no table bloat), then deletes the few remaining expired rows (the
default partition and the day the cutoff falls in) in small batches. SQLite keeps plain tables
and deletes in batches.

Deleting per-hour rollups would make the cumulative counters of `/metrics` go down; so before an
hour rollup is deleted its sums are added to an offset kept in `control_state` (key
`ROLLUP_PURGED_KEY`), in the same transaction, and the exporter adds that offset back.

The worker runs `step` (registered in `observability.worker.steps.STEPS`) on the leader: partitions are
checked hourly and when the UTC day changes, expired rows are purged every minute, each run within a
time budget (a first purge of a large backlog continues on the next runs).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import utcnow

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
PARTITION_DAYS_BACK = 1
PARTITION_DAYS_AHEAD = 3
BATCH_ROWS = 5000
PURGE_EVERY = timedelta(minutes=1)
PARTITIONS_EVERY = timedelta(hours=1)
STEP_TIME_BUDGET_S = 20.0
LOCK_TIMEOUT = "3s"
ROLLUP_PURGED_KEY = "metrics.rollup_purged_totals"
# an ended session is kept this long (its sign-in page can still say why it ended), and a throttle row
# this long after its last attempt: at least auth.throttle.QUIET_RESET, after which it counts for nothing
AUTH_ROWS_GRACE = timedelta(days=1)

PARTITIONED_TABLES: tuple[sa.Table, ...] = schema.RAW_EVENT_TABLES
_PARTITION_RE = re.compile(r"^(?P<table>.+)_p(?P<day>\d{8})$")

# per-hour rollup -> (label columns, summed columns) kept as an offset when rows are purged
PURGED_SUMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rollup_ops_hour": (("bot", "operation"), ("count", "errors", "cache_hits", "sum_ms")),
    "rollup_llm_hour": (
        ("bot", "model", "provider"),
        ("count", "errors", "cache_hits", "sum_ms", "input_tokens", "output_tokens",
         "cache_read_tokens", "cache_write_tokens", "cost_usd", "cost_saved_usd"),
    ),
}  # fmt: skip


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows deleted one by one
    dropped_partitions: list[str] = field(default_factory=list)  # whole expired days (PostgreSQL)
    complete: bool = True  # False: the time budget ran out; the next run continues

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())


def _day(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _lit(value: datetime) -> str:
    return f"'{value:%Y-%m-%d %H:%M:%S}'"


def partition_name(table: str, day: datetime) -> str:
    return f"{table}_p{day:%Y%m%d}"


# ---- partitions (PostgreSQL) ------------------------------------------------------------------


def is_partitioned(conn: sa.Connection, table: str) -> bool:
    return bool(
        conn.execute(
            sa.text("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t)"),
            {"t": f'"{table}"'},
        ).first()
    )


def list_partitions(conn: sa.Connection, table: str) -> dict[datetime, str]:
    """Day partitions of `table` by their first day (the default partition is not listed)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": f'"{table}"'},
    ).scalars()
    out: dict[datetime, str] = {}
    for name in rows:
        m = _PARTITION_RE.match(name)
        if m and m.group("table") == table:
            out[datetime.strptime(m.group("day"), "%Y%m%d")] = name
    return out


def _create_day_partition(conn: sa.Connection, table: str, day: datetime) -> int:
    """Create the partition of `day`, moving its rows out of the default partition first."""
    lo, hi = day, day + DAY
    name = partition_name(table, day)
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    default = f'"{table}_default"'
    where = f"ts >= {_lit(lo)} AND ts < {_lit(hi)}"
    moved = 0
    if conn.exec_driver_sql(f"SELECT 1 FROM {default} WHERE {where} LIMIT 1").first():
        # no new rows for that day may reach the default partition while we move them
        conn.exec_driver_sql(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE')
        tmp = f'"_move_{table}"'
        conn.exec_driver_sql(f'CREATE TEMP TABLE {tmp} (LIKE "{table}") ON COMMIT DROP')
        moved = conn.exec_driver_sql(
            f"WITH m AS (DELETE FROM {default} WHERE {where} RETURNING *) INSERT INTO {tmp} SELECT * FROM m"
        ).rowcount
    conn.exec_driver_sql(
        f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM ({_lit(lo)}) TO ({_lit(hi)})'
    )
    if moved:
        conn.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM "_move_{table}"')
        log.info("partition %s created; %d rows moved out of the default partition", name, moved)
    return moved


def ensure_partitions(
    store: Store,
    now: datetime | None = None,
    *,
    days_back: int = PARTITION_DAYS_BACK,
    days_ahead: int = PARTITION_DAYS_AHEAD,
    days: Iterable[datetime] | None = None,
) -> list[str]:
    """Create missing day partitions (today-days_back .. today+days_ahead, or `days`).

    Returns the names created. A no-op on SQLite and for tables that are not partitioned. A day
    that cannot be created now (a lock held too long) is logged and retried on the next run.
    """
    if not store.is_postgres:
        return []
    today = _day(now or utcnow())
    wanted = sorted({_day(d) for d in days} if days is not None else
                    {today + timedelta(days=k) for k in range(-days_back, days_ahead + 1)})  # fmt: skip
    created: list[str] = []
    for table in PARTITIONED_TABLES:
        with store.connect() as conn:
            if not is_partitioned(conn, table.name):
                continue
            existing = list_partitions(conn, table.name)
        for day in wanted:
            if day in existing:
                continue
            try:
                with store.begin() as conn:
                    _create_day_partition(conn, table.name, day)
                created.append(partition_name(table.name, day))
            except sa.exc.DBAPIError as exc:
                log.warning("cannot create partition %s yet: %s", partition_name(table.name, day), exc.orig)
    return created


def _drop_expired_partitions(store: Store, table: str, cutoff: datetime, report: RetentionReport) -> None:
    with store.connect() as conn:
        if not is_partitioned(conn, table):
            return
        parts = list_partitions(conn, table)
    for day, name in sorted(parts.items()):
        if day + DAY > cutoff:
            continue
        try:
            with store.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                conn.exec_driver_sql(f'DROP TABLE "{name}"')
            report.dropped_partitions.append(name)
        except sa.exc.DBAPIError as exc:
            log.warning("cannot drop expired partition %s yet: %s", name, exc.orig)
            report.complete = False


# ---- row deletes --------------------------------------------------------------------------


def _delete_batches(
    store: Store, table: sa.Table, where: sa.ColumnElement, deadline: float | None, batch: int
) -> tuple[int, bool]:
    """Delete rows matching `where` in batches (short transactions); returns (rows, finished)."""
    total = 0
    if store.is_postgres:
        pk = list(table.primary_key.columns)
        target = sa.tuple_(*pk) if len(pk) > 1 else pk[0]
        stmt = sa.delete(table).where(target.in_(sa.select(*pk).where(where).limit(batch)))
    else:
        rowid = sa.literal_column("rowid")
        stmt = sa.delete(table).where(
            rowid.in_(sa.select(rowid).select_from(table).where(where).limit(batch))
        )
    while True:
        with store.begin() as conn:
            n = conn.execute(stmt).rowcount
        total += n
        if n < batch:
            return total, True
        if deadline is not None and time.monotonic() >= deadline:
            return total, False


def _add_purged_offsets(store: Store, conn: sa.Connection, table: sa.Table, cutoff: datetime) -> None:
    """Fold the sums of the hour rollups about to be deleted into the exporter's offsets."""
    labels, sums = PURGED_SUMS[table.name]
    rows = conn.execute(
        sa.select(*[table.c[c] for c in labels], *[sa.func.sum(table.c[c]) for c in sums])
        .where(table.c.bucket < cutoff)
        .group_by(*[table.c[c] for c in labels])
    ).all()
    if not rows:
        return
    cs = schema.control_state
    current = conn.execute(sa.select(cs.c.value).where(cs.c.key == ROLLUP_PURGED_KEY)).scalar()
    offsets: dict[str, Any] = dict(current or {})
    part: dict[str, list[float]] = dict(offsets.get(table.name) or {})
    for r in rows:
        key = "\x1f".join(str(v or "") for v in r[: len(labels)])
        old = part.get(key) or [0] * len(sums)
        part[key] = [float(a or 0) + float(b or 0) for a, b in zip(old, r[len(labels) :], strict=True)]
    offsets[table.name] = part
    values = {"key": ROLLUP_PURGED_KEY, "value": offsets, "updated_by": "retention", "updated_at": utcnow()}
    stmt = store.insert(cs).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}
    )
    conn.execute(stmt)


def purged_offsets(
    store: Store, conn: sa.Connection | None = None
) -> dict[str, dict[tuple[str, ...], list[float]]]:
    """Sums of purged hour rollups: {table: {label values: [sums in PURGED_SUMS order]}}."""
    cs = schema.control_state
    q = sa.select(cs.c.value).where(cs.c.key == ROLLUP_PURGED_KEY)
    if conn is None:
        with store.connect() as c:
            raw = c.execute(q).scalar()
    else:
        raw = conn.execute(q).scalar()
    out: dict[str, dict[tuple[str, ...], list[float]]] = {}
    for table, part in (raw or {}).items():
        out[table] = {tuple(k.split("\x1f")): [float(x) for x in v] for k, v in part.items()}
    return out


def _purge_hour_rollup(store: Store, table: sa.Table, cutoff: datetime) -> int:
    """Delete expired hour rollups in one transaction with their offsets (exact counters)."""
    with store.begin() as conn:
        _add_purged_offsets(store, conn, table, cutoff)
        return conn.execute(sa.delete(table).where(table.c.bucket < cutoff)).rowcount


def plan(settings: Settings, now: datetime) -> list[tuple[sa.Table, sa.ColumnElement, datetime]]:
    """(table, expired-row condition, cutoff) for every table retention touches."""
    out: list[tuple[sa.Table, sa.ColumnElement, datetime]] = []
    if settings.monitoring_db_retention_days > 0:
        cut = now - timedelta(days=settings.monitoring_db_retention_days)
        for t in schema.RAW_EVENT_TABLES:
            if t is not schema.system_metrics:
                out.append((t, t.c.ts < cut, cut))
        n = schema.notifications
        out.append((n, sa.and_(n.c.status.in_(("sent", "dead")), n.c.created_at < cut), cut))
        out.append((schema.silences, schema.silences.c.ends_at < cut, cut))
        out.append((schema.activity_reads, schema.activity_reads.c.read_at < cut, cut))
        out.append((schema.worker_heartbeats, schema.worker_heartbeats.c.last_tick_at < cut, cut))
    if settings.monitoring_metrics_retention_hours > 0:
        cut = now - timedelta(hours=settings.monitoring_metrics_retention_hours)
        out.append((schema.system_metrics, schema.system_metrics.c.ts < cut, cut))
    if settings.rollup_retention_days > 0:
        cut = now - timedelta(days=settings.rollup_retention_days)
        for t in (schema.rollup_ops_minute, schema.rollup_llm_minute, schema.rollup_ops_hour,
                  schema.rollup_llm_hour, schema.rollup_conversation_hour, schema.rollup_account_hour,
                  schema.rollup_unpriced_hour):  # fmt: skip
            out.append((t, t.c.bucket < cut, cut))
        day_cut = _day(cut) - timedelta(days=1)  # a day row still answers for the hours it merged
        for t in (schema.rollup_ops_day, schema.rollup_llm_day, schema.rollup_account_day):
            out.append((t, t.c.bucket < day_cut, day_cut))
    out.extend(_auth_plan(settings, now))
    never = {t.name for t in schema.AUDIT_TABLES}
    assert not any(t.name in never for t, _, _ in out), "audit tables are never purged"
    return out


def _auth_plan(settings: Settings, now: datetime) -> list[tuple[sa.Table, sa.ColumnElement, datetime]]:
    """Ended sessions and throttle rows that count for nothing any more (always purged: they grow
    with every sign-in attempt, and a stale session row is no use to anyone)."""
    cut = now - AUTH_ROWS_GRACE
    s, t = schema.sessions, schema.sign_in_throttle
    idle_cut = cut - timedelta(seconds=settings.session_idle_timeout_s)
    ended = sa.or_(s.c.expires_at < cut, s.c.revoked_at < cut, s.c.last_seen_at < idle_cut)
    quiet = sa.and_(t.c.updated_at < cut, sa.or_(t.c.locked_until.is_(None), t.c.locked_until < now))
    return [(s, ended, cut), (t, quiet, cut)]


def purge(
    store: Store,
    settings: Settings | None = None,
    now: datetime | None = None,
    *,
    time_budget_s: float | None = None,
    batch_rows: int = BATCH_ROWS,
) -> RetentionReport:
    """Remove every expired row (see the module docstring); audit tables are never touched."""
    settings = settings or get_settings()
    now = now or utcnow()
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    report = RetentionReport()
    partitioned = {t.name for t in PARTITIONED_TABLES}
    for table, where, cutoff in plan(settings, now):  # each table gets at least one batch per run
        if store.is_postgres and table.name in partitioned:
            _drop_expired_partitions(store, table.name, cutoff, report)
        if table.name in PURGED_SUMS:
            n, done = _purge_hour_rollup(store, table, cutoff), True
        else:
            n, done = _delete_batches(store, table, where, deadline, batch_rows)
        report.complete &= done
        if n:
            report.deleted[table.name] = report.deleted.get(table.name, 0) + n
    if report.total_deleted or report.dropped_partitions:
        log.info(
            "retention: %d rows deleted, %d partitions dropped%s",
            report.total_deleted,
            len(report.dropped_partitions),
            "" if report.complete else " (more next run)",
        )
    return report


def step(ctx: Any) -> None:
    """The worker step: partitions ahead (hourly and on a new day), then the purge (every minute)."""
    state = ctx.state
    now: datetime = ctx.now
    last_parts = state.get("retention_partitions_at")
    if last_parts is None or now - last_parts >= PARTITIONS_EVERY or _day(now) != _day(last_parts):
        ensure_partitions(ctx.store, now)
        state["retention_partitions_at"] = now
    last_purge = state.get("retention_purge_at")
    if last_purge is None or now - last_purge >= PURGE_EVERY or not state.get("retention_complete", True):
        report = purge(ctx.store, ctx.settings, now, time_budget_s=STEP_TIME_BUDGET_S)
        state["retention_purge_at"] = now
        state["retention_complete"] = report.complete
