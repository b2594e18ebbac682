"""PostgreSQL keeps raw events in daily partitions, and everything that writes them still works.

The initial migration creates each raw event table `PARTITION BY RANGE (ts)` with a default
partition and day partitions yesterday .. today+3. Ingest's COPY and its ON CONFLICT fallback work
on them; data older (or newer) than any day partition lands in the default partition; creating the
partition of a day whose rows sit in the default moves them; retention drops whole expired days.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from observability.settings import Settings
from observability.store import Store, retention, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch, utcnow

RAW = [t.name for t in schema.RAW_EVENT_TABLES]


def midnight(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def llm(ts: datetime, tid: str | None = None) -> list:
    return ["llm", tid or uuid.uuid4().hex, to_epoch(ts), "lead", None, None, "claude-sonnet-4-5",
            "anthropic", 100, 10, 0, 0, 250.0, False, None, "c1", True, None]  # fmt: skip


def count(store: Store, relation: str, where: str = "") -> int:
    with store.connect() as conn:
        return conn.exec_driver_sql(f'SELECT count(*) FROM "{relation}" {where}').scalar()


def partitions(store: Store, table: str) -> dict[datetime, str]:
    with store.connect() as conn:
        return retention.list_partitions(conn, table)


@pytest.fixture
def today() -> datetime:
    return midnight(utcnow())


def test_raw_tables_are_partitioned_by_day_with_a_default(pg_store: Store, today: datetime) -> None:
    with pg_store.connect() as conn:
        for name in RAW:
            assert retention.is_partitioned(conn, name), name
            days = sorted(retention.list_partitions(conn, name))
            assert days == [today + timedelta(days=k) for k in range(-1, 4)], name
            assert conn.exec_driver_sql(f"SELECT to_regclass('\"{name}_default\"')").scalar() is not None
        # other tables stay plain
        assert not retention.is_partitioned(conn, "alerts")
        assert not retention.is_partitioned(conn, "rollup_llm_minute")


def test_copy_and_on_conflict_work_on_partitioned_tables(pg_store: Store, today: datetime) -> None:
    now = utcnow()
    batch = [llm(now - timedelta(seconds=i)) for i in range(50)]
    write_batch(pg_store, batch)  # COPY straight into the partitioned parent
    assert count(pg_store, "llm_calls") == 50
    # the same batch again plus one new event: COPY hits the primary key, the fallback skips duplicates
    write_batch(pg_store, [*batch, llm(now)])
    assert count(pg_store, "llm_calls") == 51
    in_days = sum(count(pg_store, p) for p in partitions(pg_store, "llm_calls").values())
    assert in_days == 51 and count(pg_store, "llm_calls_default") == 0


def test_a_backfill_older_than_every_partition_lands_in_the_default(pg_store: Store, today: datetime) -> None:
    old = today - timedelta(days=200, hours=-3)
    future = today + timedelta(days=40)
    write_batch(pg_store, [llm(old), llm(old + timedelta(minutes=1)), llm(future), llm(utcnow())])
    assert count(pg_store, "llm_calls") == 4
    assert count(pg_store, "llm_calls_default") == 3
    # a duplicate of a backfilled event is still ignored
    with pg_store.connect() as conn:
        tid = conn.exec_driver_sql("SELECT trace_id FROM llm_calls_default LIMIT 1").scalar()
        ts = conn.exec_driver_sql(f"SELECT ts FROM llm_calls WHERE trace_id = '{tid}'").scalar()
    write_batch(pg_store, [llm(ts, tid)])
    assert count(pg_store, "llm_calls") == 4


def test_creating_a_day_moves_its_rows_out_of_the_default_partition(pg_store: Store, today: datetime) -> None:
    day = today - timedelta(days=10)
    write_batch(
        pg_store, [llm(day + timedelta(hours=h)) for h in range(24)] + [llm(day - timedelta(hours=1))]
    )
    assert count(pg_store, "llm_calls_default") == 25
    created = retention.ensure_partitions(pg_store, days=[day])
    assert set(created) == {retention.partition_name(t, day) for t in RAW}
    name = retention.partition_name("llm_calls", day)
    assert count(pg_store, name) == 24
    assert count(pg_store, "llm_calls_default") == 1  # the hour before that day stays
    assert count(pg_store, "llm_calls") == 25
    write_batch(pg_store, [llm(day + timedelta(minutes=30))])  # new rows of that day go there
    assert count(pg_store, name) == 25
    assert retention.ensure_partitions(pg_store, days=[day]) == []  # idempotent


def test_the_worker_step_creates_partitions_ahead(pg_store: Store, today: datetime) -> None:
    class Ctx:
        store = pg_store
        settings = Settings()
        now = today + timedelta(days=5, hours=1)
        state: dict = {}

    retention.step(Ctx)
    days = sorted(partitions(pg_store, "messages"))
    assert days[-1] == today + timedelta(days=8)
    assert all(today + timedelta(days=k) in days for k in range(4, 9))


def test_retention_drops_whole_expired_days_and_deletes_the_rest_exactly(
    pg_store: Store, today: datetime
) -> None:
    now = utcnow()
    cutoff = now - timedelta(days=90)
    days = [midnight(cutoff) - timedelta(days=k) for k in (5, 1, 0)] + [midnight(cutoff) + timedelta(days=1)]
    retention.ensure_partitions(pg_store, days=days)
    events = []
    for d in days:
        events += [llm(d + timedelta(hours=h)) for h in (0, 6, 12, 18, 23)]
    events += [llm(cutoff - timedelta(seconds=1)), llm(cutoff + timedelta(seconds=1))]
    events += [llm(now - timedelta(days=120)), llm(now - timedelta(days=300))]  # default partition
    write_batch(pg_store, events)
    with pg_store.connect() as conn:
        expected = conn.exec_driver_sql(f"SELECT count(*) FROM llm_calls WHERE ts >= '{cutoff}'").scalar()
    report = retention.purge(pg_store, Settings(), now)
    dropped = {retention.partition_name("llm_calls", d) for d in days[:2]}
    assert dropped <= set(report.dropped_partitions)
    left = partitions(pg_store, "llm_calls")
    assert not dropped & set(left.values())
    assert retention.partition_name("llm_calls", days[2]) in left.values()  # the cutoff's day stays
    assert count(pg_store, "llm_calls") == expected
    assert count(pg_store, "llm_calls", f"WHERE ts < '{cutoff}'") == 0
    assert count(pg_store, "llm_calls_default") == 0
