"""Retention removes exactly the expired rows and never an audit row, on SQLite and PostgreSQL.

Raw events live MONITORING_DB_RETENTION_DAYS (90), raw system metrics
MONITORING_METRICS_RETENTION_HOURS (72), rollups ROLLUP_RETENTION_DAYS (400); interventions,
emergency actions and the alert timeline (and the alerts it refers to) are kept forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from observability.settings import Settings
from observability.store import Store, retention, rollups, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch, utcnow
from observability.worker.runner import STEPS, Worker

SETTINGS = Settings().replace(
    monitoring_db_retention_days=90, monitoring_metrics_retention_hours=72, rollup_retention_days=400
)
EVENT_AGES = {  # id suffix -> age; the cutoff is 90 days
    "fresh": timedelta(minutes=5),
    "edge_kept": timedelta(days=90) - timedelta(seconds=30),
    "edge_gone": timedelta(days=90, seconds=30),
    "old": timedelta(days=200),
}
METRIC_AGES = {
    "fresh": timedelta(hours=1),
    "edge_kept": timedelta(hours=72) - timedelta(seconds=30),
    "edge_gone": timedelta(hours=72, seconds=30),
    "old": timedelta(days=10),
}
KEPT = {"fresh", "edge_kept"}


def events_at(now: datetime) -> list[list]:
    out: list[list] = []
    for name, age in EVENT_AGES.items():
        t = to_epoch(now - age)
        out += [
            ["llm", f"llm-{name}", t, "lead", None, None, "claude-sonnet-4-5", "anthropic", 100, 10, 0, 0,
             300.0, False, None, "c1", True, None],
            ["op", f"op-{name}", t, "lead", "qualify", 120.0, True, False, None],
            ["interaction", f"int-{name}", t, "lead", 900.0, True, False, None],
            ["handoff", f"ho-{name}", t, "lead", "buyer", True, 40.0, False, None],
            ["message", f"msg-{name}", t, "c1", "user", "hello", "lead", None, None],
            ["activity", f"act-{name}", t, "handoff", "Lead to buyer", None, "low", "system", None, "c1",
             None, None],
        ]  # fmt: skip
    for name, age in METRIC_AGES.items():
        out.append(["metric", f"met-{name}", to_epoch(now - age), "system_load", "gauge", 42.0, None, None,
                    None, None])  # fmt: skip
    return out


def insert_side_tables(store: Store, now: datetime) -> None:
    ancient = now - timedelta(days=1000)
    old = now - timedelta(days=100)
    recent = now - timedelta(days=10)
    with store.begin() as conn:
        conn.execute(sa.insert(schema.alerts), [
            {"id": 1, "rule_name": "high_error_rate", "dedup_key": "k1", "labels": {}, "state": "resolved",
             "severity": "critical", "created_at": ancient, "resolved_at": ancient},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.alert_events), [
            {"alert_id": 1, "ts": ancient, "kind": "fired"},
            {"alert_id": 1, "ts": ancient, "kind": "resolved", "actor": "ops"},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.interventions), [
            {"conversation_id": "c1", "action": "take_control", "user_name": "ops", "created_at": ancient},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.emergency_actions), [
            {"action": "system_stop", "scope": "system", "user_name": "admin", "outcome": "ok",
             "created_at": ancient, "confirmed": True},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.notifications), [
            {"alert_id": 1, "level": 1, "channel": "slack", "kind": "trigger", "payload": {}, "status": "sent",
             "next_attempt_at": old, "created_at": old},
            {"alert_id": 1, "level": 1, "channel": "email", "kind": "trigger", "payload": {}, "status": "pending",
             "next_attempt_at": old, "created_at": old},
            {"alert_id": 1, "level": 2, "channel": "slack", "kind": "trigger", "payload": {}, "status": "dead",
             "next_attempt_at": recent, "created_at": recent},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.silences), [
            {"matchers": {}, "starts_at": old, "ends_at": old + timedelta(hours=1), "reason": "old",
             "created_at": old},
            {"matchers": {}, "starts_at": recent, "ends_at": now + timedelta(days=1), "reason": "active",
             "created_at": recent},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.activity_reads), [
            {"event_id": "act-old", "user_name": "ops", "read_at": old},
            {"event_id": "act-fresh", "user_name": "ops", "read_at": recent},
        ])  # fmt: skip
        conn.execute(sa.insert(schema.worker_heartbeats), [
            {"worker_id": "gone", "last_tick_at": old, "started_at": old, "is_leader": False},
            {"worker_id": "live", "last_tick_at": now, "started_at": recent, "is_leader": True},
        ])  # fmt: skip


def ids(store: Store, table: sa.Table, col: str = "id") -> set:
    with store.connect() as conn:
        return set(conn.execute(sa.select(table.c[col])).scalars())


def count(store: Store, table: sa.Table) -> int:
    with store.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_retention_removes_exactly_the_expired_rows_and_keeps_audit_rows(store: Store) -> None:
    now = utcnow()
    write_batch(store, events_at(now), SETTINGS)
    insert_side_tables(store, now)

    report = retention.purge(store, SETTINGS, now)

    assert report.complete
    kept = {f"{p}-{n}" for p in ("op", "int", "ho", "msg", "act") for n in KEPT}
    for table, prefix in ((schema.bot_operations, "op"), (schema.bot_interactions, "int"),
                          (schema.handoffs, "ho"), (schema.messages, "msg"),
                          (schema.activity_events, "act")):  # fmt: skip
        assert ids(store, table) == {k for k in kept if k.startswith(prefix + "-")}, table.name
    assert ids(store, schema.llm_calls, "trace_id") == {f"llm-{n}" for n in KEPT}
    assert ids(store, schema.system_metrics) == {f"met-{n}" for n in KEPT}
    # audit trails, and the alert they refer to, are never purged
    assert count(store, schema.alert_events) == 2
    assert count(store, schema.interventions) == 1
    assert count(store, schema.emergency_actions) == 1
    assert count(store, schema.alerts) == 1
    # finished outbox rows, ended silences, old read marks and dead workers go after 90 days
    with store.connect() as conn:
        n = schema.notifications
        assert sorted(conn.execute(sa.select(n.c.status)).scalars()) == ["dead", "pending"]
        assert list(conn.execute(sa.select(schema.silences.c.reason)).scalars()) == ["active"]
    assert ids(store, schema.activity_reads, "event_id") == {"act-fresh"}
    assert ids(store, schema.worker_heartbeats, "worker_id") == {"live"}
    # conversations are entities: kept
    assert ids(store, schema.conversations) == {"c1"}

    again = retention.purge(store, SETTINGS, now)
    assert again.total_deleted == 0 and not again.dropped_partitions


def test_rollups_outlive_raw_rows_until_their_own_retention(store: Store) -> None:
    now = utcnow()
    ages = {"a": timedelta(days=399), "b": timedelta(days=401), "c": timedelta(days=100)}
    write_batch(store, [
        ["llm", f"r-{k}", to_epoch(now - age), "lead", None, None, "claude-sonnet-4-5", "anthropic", 1000, 100, 0,
         0, 500.0, False, None, f"conv-{k}", True, None]
        for k, age in ages.items()
    ] + [["op", f"o-{k}", to_epoch(now - age), "lead", "qualify", 50.0, True, False, None]
         for k, age in ages.items()], SETTINGS)  # fmt: skip
    rollups.run(store)
    assert count(store, schema.rollup_llm_hour) == 3 and count(store, schema.rollup_ops_minute) == 3

    retention.purge(store, SETTINGS, now)

    assert count(store, schema.llm_calls) == 0  # raw rows: all older than 90 days
    for t in (
        schema.rollup_llm_minute,
        schema.rollup_llm_hour,
        schema.rollup_ops_minute,
        schema.rollup_ops_hour,
        schema.rollup_conversation_hour,
    ):
        with store.connect() as conn:
            oldest = conn.execute(sa.select(sa.func.min(t.c.bucket))).scalar()
        assert count(store, t) == 2, t.name  # the 401-day-old bucket went, 399 and 100 stay
        assert now - oldest < timedelta(days=400)
    # what the purged hour held is remembered, so /metrics counters never go down
    offsets = retention.purged_offsets(store)
    assert offsets["rollup_llm_hour"][("lead", "claude-sonnet-4-5", "anthropic")][0] == 1
    assert offsets["rollup_ops_hour"][("lead", "qualify")][0] == 1


def test_zero_keeps_that_class_forever(sqlite_store: Store) -> None:
    now = utcnow()
    write_batch(sqlite_store, events_at(now), SETTINGS)
    forever = SETTINGS.replace(monitoring_db_retention_days=0, monitoring_metrics_retention_hours=0)
    assert retention.purge(sqlite_store, forever, now).total_deleted == 0
    assert count(sqlite_store, schema.llm_calls) == len(EVENT_AGES)


def test_a_large_purge_goes_in_batches_and_resumes_within_a_time_budget(sqlite_store: Store) -> None:
    now = utcnow()
    old = to_epoch(now - timedelta(days=120))
    write_batch(sqlite_store, [["op", uuid.uuid4().hex, old + i, "lead", "qualify", 5.0, True, False, None]
                               for i in range(1200)], SETTINGS)  # fmt: skip
    first = retention.purge(sqlite_store, SETTINGS, now, time_budget_s=0.0, batch_rows=500)
    assert not first.complete
    assert first.deleted["bot_operations"] == 500
    rest = retention.purge(sqlite_store, SETTINGS, now, batch_rows=500)
    assert rest.complete and rest.deleted["bot_operations"] == 700
    assert count(sqlite_store, schema.bot_operations) == 0


def test_the_leading_worker_runs_retention_when_it_is_due(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(store.url).replace(monitoring_db_retention_days=90)
    now = utcnow()
    write_batch(store, events_at(now), settings)
    step = next(s for s in STEPS if s.name == "retention")
    assert step.leader_only
    worker = Worker(store, settings, steps=[step])
    try:
        assert worker.tick(now=now) == {"retention": "ok"}
        assert ids(store, schema.llm_calls, "trace_id") == {f"llm-{n}" for n in KEPT}
        write_batch(store, events_at(now)[:1], settings)  # llm-fresh again: a duplicate, ignored
        write_batch(store, [["llm", "late-old", to_epoch(now - timedelta(days=95)), "lead", None, None, "m", "p",
                             1, 1, 0, 0, 1.0, False, None, None, True, None]], settings)  # fmt: skip
        worker.tick(now=now + timedelta(seconds=10))  # purged less than a minute ago: not due
        assert "late-old" in ids(store, schema.llm_calls, "trace_id")
        worker.tick(now=now + timedelta(minutes=2))
        assert "late-old" not in ids(store, schema.llm_calls, "trace_id")
    finally:
        worker.close()
