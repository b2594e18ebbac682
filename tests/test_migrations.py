"""The migrations build exactly `observability.store.schema`, on SQLite and on PostgreSQL.

A fresh store migrated to head is compared with the metadata by Alembic's autogenerate comparison
(types and server defaults included): a schema change without its migration fails here. Alembic
does not compare an index's method, WHERE or INCLUDE, so those are compared separately. The only
thing ignored is what is not in the metadata by design: the PostgreSQL partitions of the raw event
tables (`<table>_default`, `<table>_pYYYYMMDD`, created by the migration and by retention) and
their indexes. No type or default noise needed ignoring.

Also: migrating a store at head does nothing, two processes migrating one fresh store at once
both succeed, and downgrading to base then upgrading again gives the same schema.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from support import ROOT, subprocess_env

from alembic import command
from observability.store import schema
from observability.store.database import ALEMBIC_DIR, Store


def alembic_config(conn: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001 - Alembic hook
    """Skip the raw event tables' partitions (and their indexes), as alembic/env.py does."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table and schema.is_partition(table))


def schema_diff(store: Store, metadata: sa.MetaData = schema.metadata) -> list:
    with store.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "compare_server_default": True, "include_object": include_object},
        )
        return compare_metadata(ctx, metadata)


def _where(clause: object) -> str | None:
    """A partial index's condition, without the casts, parentheses and spacing a database adds."""
    if clause is None:
        return None
    text = re.sub(r"::(character varying|[a-z_]+)", "", str(clause).lower())
    return re.sub(r"[\s()]", "", text)


def index_options(store: Store, metadata: sa.MetaData = schema.metadata) -> tuple[dict, dict]:
    """(in the store, in the metadata): per index, what Alembic's comparison leaves out."""
    pg = store.is_postgres
    got, want = {}, {}
    with store.connect() as conn:
        insp = sa.inspect(conn)
        for table in metadata.sorted_tables:
            for ix in insp.get_indexes(table.name):
                if ix.get("duplicates_constraint"):  # a unique constraint's own index (PostgreSQL)
                    continue
                opts = ix.get("dialect_options", {})
                got[ix["name"]] = (
                    opts.get("postgresql_using", "btree") if pg else None,
                    _where(opts.get("postgresql_where" if pg else "sqlite_where")),
                    list(opts.get("postgresql_include", [])) if pg else None,
                )
            for ix in table.indexes:
                want[ix.name] = (
                    (ix.dialect_options["postgresql"]["using"] or "btree") if pg else None,
                    _where(ix.dialect_options["postgresql" if pg else "sqlite"]["where"]),
                    list(ix.dialect_options["postgresql"]["include"] or []) if pg else None,
                )
    return got, want


def version(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def tables(store: Store) -> set[str]:
    with store.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


@pytest.fixture
def fresh(store_url: str) -> Iterator[Store]:
    """A store nothing has migrated yet, SQLite and PostgreSQL."""
    store = Store.from_url(store_url)
    yield store
    store.dispose()


def assert_matches_schema(store: Store) -> None:
    assert version(store) == [HEAD]
    assert schema_diff(store) == []
    got, want = index_options(store)
    assert got == want


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, "two revisions share a parent: rebase one onto the other"
    assert len(script.get_bases()) == 1


def test_revisions_do_not_read_the_live_schema() -> None:
    """A revision built from `observability.store.schema` would change when the schema does."""
    for path in sorted((ALEMBIC_DIR / "versions").glob("*.py")):
        assert not re.search(r"^\s*(from|import)\s+observability", path.read_text(), re.M), path.name


def test_a_fresh_store_matches_the_schema(fresh: Store) -> None:
    fresh.migrate()
    assert_matches_schema(fresh)
    assert {t.name for t in schema.metadata.sorted_tables} <= tables(fresh)


def copy_of_schema() -> sa.MetaData:
    metadata = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(metadata)
    return metadata


def test_the_comparison_sees_what_a_migration_would_miss(fresh: Store) -> None:
    """Not vacuous: a column, a server default, an index method and a partial index's condition
    that the migrations do not create are each reported."""
    fresh.migrate()
    md = copy_of_schema()
    md.tables["rollup_llm_hour"].append_column(sa.Column("only_in_metadata", sa.Integer))
    assert [d[0] for d in schema_diff(fresh, md)] == ["add_column"]

    md = copy_of_schema()
    md.tables["llm_calls"].c.cost_usd.server_default = sa.DefaultClause("1")
    assert [d[0][0] for d in schema_diff(fresh, md)] == ["modify_default"]

    md = copy_of_schema()
    indexes = {i.name: i for t in md.sorted_tables for i in t.indexes}
    indexes["ix_llm_calls_ts"].dialect_options["postgresql"]["using"] = None
    dialect = "postgresql" if fresh.is_postgres else "sqlite"
    indexes["ux_alerts_open_dedup"].dialect_options[dialect]["where"] = sa.text("state = 'firing'")
    assert schema_diff(fresh, md) == []  # Alembic does not look at these ...
    got, want = index_options(fresh, md)
    wrong = {name for name in want if got.get(name) != want[name]}  # ... this test does
    expected = {"ux_alerts_open_dedup"} | ({"ix_llm_calls_ts"} if fresh.is_postgres else set())
    assert wrong == expected


def test_alembic_check_ignores_the_partitions(pg_url: str) -> None:
    """What `alembic revision --autogenerate` sees through alembic/env.py: nothing to do (in
    particular no drop of the partitions, which are not in the metadata)."""
    store = Store.from_url(pg_url)
    try:
        store.migrate()
        with store.connect() as conn:
            partitions = [t for t in sa.inspect(conn).get_table_names() if schema.is_partition(t)]
        assert len(partitions) == len(schema.RAW_EVENT_TABLES) * 6  # default + yesterday .. today+3
        with store.engine.begin() as conn:
            command.check(alembic_config(conn))  # raises AutogenerateDiffsDetected otherwise
    finally:
        store.dispose()


def test_migrating_twice_does_nothing(fresh: Store) -> None:
    fresh.migrate()
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # noqa: ANN001 - SQLAlchemy event
        statements.append(statement)

    sa.event.listen(fresh.engine, "before_cursor_execute", record)
    try:
        fresh.migrate()
    finally:
        sa.event.remove(fresh.engine, "before_cursor_execute", record)
    ddl = [s for s in statements if re.match(r"\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)\b", s, re.I)]
    assert ddl == []
    assert_matches_schema(fresh)


MIGRATE = """
import sys
from observability.store import Store
store = Store.from_url(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # the test says go once both interpreters are up
store.migrate()
"""


def test_two_processes_migrate_one_fresh_store_at_once(fresh: Store, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, fresh.url],
            cwd=ROOT,
            env=subprocess_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:  # a start barrier: both are imported and connected before either migrates
            line = p.stdout.readline()
            assert line.strip() == "ready", line + p.stdout.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert_matches_schema(fresh)


def run_alembic(store: Store, fn: Callable[..., None], *args: str) -> None:
    with store.engine.begin() as conn:
        fn(alembic_config(conn), *args)


def test_downgrade_to_base_then_upgrade(fresh: Store) -> None:
    fresh.migrate()
    run_alembic(fresh, command.downgrade, "base")
    assert tables(fresh) == {"alembic_version"}  # every table gone, partitions too
    assert version(fresh) == []
    fresh.migrate()
    assert_matches_schema(fresh)


def test_ensure_migrated_upgrades_a_store_behind_and_only_reads_a_current_one(fresh: Store) -> None:
    """What the console calls on every store it opens (server start, sign-in, pages): a fresh or
    older store is upgraded; a current one costs one read, no Alembic run and no migration lock."""
    fresh.ensure_migrated()
    assert_matches_schema(fresh)
    run_alembic(fresh, command.downgrade, "-1")
    assert version(fresh) != [HEAD]
    fresh.ensure_migrated()
    assert_matches_schema(fresh)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # noqa: ANN001 - SQLAlchemy event
        statements.append(statement)

    sa.event.listen(fresh.engine, "before_cursor_execute", record)
    try:
        fresh.ensure_migrated()
    finally:
        sa.event.remove(fresh.engine, "before_cursor_execute", record)
    assert not [
        s for s in statements if re.search(r"advisory|CREATE|ALTER|DROP|INSERT|UPDATE|DELETE", s, re.I)
    ]
    assert any("alembic_version" in s for s in statements)


def test_the_rollups_added_later_are_filled_from_the_data_already_stored(fresh: Store) -> None:
    """0013-0016 add day, per-account and unpriced-call rollups: upgrading a store that already holds
    calls and hour rollups fills them as the rollup step would have."""
    import uuid
    from datetime import datetime, timedelta

    from observability import events as ev
    from observability.store import rollups
    from observability.store.ingest import write_batch
    from observability.timeutil import to_epoch

    fresh.migrate()
    base = to_epoch(datetime(2026, 1, 5, 22, 10))
    batch = [ev.message(f"m{i}", base, conversation_id=f"c{i}", role="user", text="hi", bot="lead",
                        account_id=f"acct-{i % 2}") for i in range(3)]  # fmt: skip
    for i in range(400):
        model = ("mystery-model", "nowhere") if i % 7 == 0 else ("claude-haiku-4-5", "anthropic")
        batch.append(ev.llm_call(
            uuid.uuid4().hex, base + i * 53.0, bot="lead", agent="a" if i % 2 else None, decision_type=None,
            model=model[0], provider=model[1], input_tokens=100 + i, output_tokens=10 + i % 50, cache_read_tokens=0,
            cache_write_tokens=0, latency_ms=50.0 + (i * 37) % 900, cache_hit=False, cost_usd=None,
            conversation_id=f"c{i % 4}" if i % 4 < 3 else None, success=i % 11 != 0, error_type=None,
        ))  # fmt: skip
        batch.append(ev.operation(uuid.uuid4().hex, base + i * 53.0, bot="lead", operation="process",
                                  duration_ms=20.0 + i % 300, success=True, cache_hit=False, error_type=None))  # fmt: skip
    assert write_batch(fresh, batch).rejected == 0
    rollups.run(fresh)
    added = (
        schema.rollup_ops_day,
        schema.rollup_llm_day,
        schema.rollup_account_hour,
        schema.rollup_unpriced_hour,
        schema.rollup_account_day,
    )

    def snapshot() -> dict[str, dict]:
        out = {}
        with fresh.connect() as conn:
            for t in added:
                keys = [c.name for c in t.primary_key.columns]
                out[t.name] = {
                    tuple(r._mapping[k] for k in keys): dict(r._mapping) for r in conn.execute(sa.select(t))
                }
        return out

    want = snapshot()
    assert all(want.values()) and len(want["rollup_llm_day"]) >= 2  # two days, both filled
    run_alembic(fresh, command.downgrade, "0012_error_raw")
    assert not {t.name for t in added} & tables(fresh)
    fresh.migrate()
    got = snapshot()
    for name, rows in want.items():
        assert got[name].keys() == rows.keys(), name
        for key, w in rows.items():
            for col, value in w.items():
                g = got[name][key][col]
                if col == "sketch":
                    assert {str(k): int(v) for k, v in g.items()} == {
                        str(k): int(v) for k, v in value.items()
                    }
                elif isinstance(value, float):
                    assert g == pytest.approx(value, rel=1e-9), (name, key, col)
                elif isinstance(value, datetime):
                    assert g == value or abs(g - value) < timedelta(microseconds=1), (name, key, col)
                else:
                    assert g == value, (name, key, col)


def _autoincrement_tables(store: Store) -> set[str]:
    """Tables whose SQLite DDL says AUTOINCREMENT: ids never handed out again after a delete."""
    with store.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
    return {name for name, sql in rows if sql and "AUTOINCREMENT" in sql.upper()}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sqlite_ids_that_people_see_are_never_reused(fresh: Store) -> None:
    """Alembic's comparison does not look at `sqlite_autoincrement`: the tables the metadata marks
    (alerts, silences) are AUTOINCREMENT on a migrated SQLite store, and only those."""
    fresh.migrate()
    marked = {t.name for t in schema.metadata.sorted_tables if t.dialect_options["sqlite"]["autoincrement"]}
    assert marked >= {"alerts", "silences"}
    assert _autoincrement_tables(fresh) == marked


def test_0017_keeps_the_alerts_and_silences_of_a_store_and_their_ids_only_grow(fresh: Store) -> None:
    """A store with alerts (one of them with a timeline) and silences, upgraded from 0016: every
    row and id is kept, the indexes too (the open-alert dedup index still refuses a second open
    alert), and the id of a deleted newest alert or silence is not given to the next one."""
    from datetime import datetime

    fresh.migrate()
    run_alembic(fresh, command.downgrade, "0016_account_day_rollup")
    if not fresh.is_postgres:
        assert _autoincrement_tables(fresh) == set()
    t0 = datetime(2026, 3, 2, 9, 0)
    md = sa.MetaData()
    with fresh.engine.begin() as conn:
        alerts, silences, events = (
            sa.Table(n, md, autoload_with=conn) for n in ("alerts", "silences", "alert_events")
        )
        for i, state in enumerate(("resolved", "firing", "pending")):
            conn.execute(sa.insert(alerts).values(
                rule_name=f"rule_{i}", dedup_key=f"rule_{i}{{}}", labels={"bot": "handoff"} if i else {},
                state=state, severity="warning", value=1.5 + i, message=f"alert {i}", pending_since=t0,
                fired_at=None if state == "pending" else t0, escalation_level=i, created_at=t0,
            ))  # fmt: skip
        first = conn.execute(sa.select(sa.func.min(alerts.c.id))).scalar()
        conn.execute(sa.insert(events).values(alert_id=first, ts=t0, kind="fired", detail={"level": 1}))
        conn.execute(sa.insert(silences).values(rule_name=None, matchers={"bot": "lead_bot"}, starts_at=t0,
                                                ends_at=t0, reason="deploy", created_by="op", created_at=t0))  # fmt: skip

    def rows() -> dict[str, list[dict]]:
        with fresh.connect() as conn:
            return {
                t.name: [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.id))]
                for t in (schema.alerts, schema.silences, schema.alert_events)
            }

    before = rows()
    fresh.migrate()
    assert_matches_schema(fresh)
    assert rows() == before
    if not fresh.is_postgres:
        assert _autoincrement_tables(fresh) >= {"alerts", "silences"}
    with fresh.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):  # still one open alert per key
        with conn.begin_nested():
            conn.execute(sa.insert(schema.alerts).values(
                rule_name="rule_1", dedup_key="rule_1{}", labels={}, state="firing", severity="warning",
                escalation_level=0, created_at=t0))  # fmt: skip
    for table, values in (
        (schema.alerts, {"rule_name": "again", "dedup_key": "again{}", "labels": {}, "state": "pending",
                         "severity": "info", "escalation_level": 0, "created_at": t0}),
        (schema.silences, {"matchers": {}, "starts_at": t0, "ends_at": t0, "reason": "again", "created_at": t0}),
    ):  # fmt: skip
        newest = max(r["id"] for r in before[table.name])
        with fresh.engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.id == newest))
            again = conn.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar()
        assert again > newest, table.name


def test_calls_stored_before_0018_that_reported_no_usage_become_unpriced_and_counted(fresh: Store) -> None:
    """Before 0018 a successful call with no tokens was stored priced $0 as if known; upgrading
    marks it unpriced and counts it in `rollup_unpriced_hour.usage_missing_calls`, and leaves a
    call with tokens, a failed call and a response-cache hit as they were."""
    from datetime import datetime, timedelta

    from observability.analytics.llm_observability import LLMObservabilityService
    from observability.store import rollups

    fresh.migrate()
    run_alembic(fresh, command.downgrade, "0017_ids_never_reused")
    ts = datetime(2026, 1, 5, 22, 10)
    calls = [("nousage-1", 0, 0, True, False), ("nousage-2", 0, 0, True, False), ("tokens", 100, 20, True, False),
             ("failed", 0, 0, False, False), ("cache-hit", 0, 0, True, True)]  # fmt: skip
    with fresh.begin() as conn:
        for i, (tid, it, ot, ok, hit) in enumerate(calls):
            conn.execute(sa.text(
                "INSERT INTO llm_calls (trace_id, ts, model, provider, input_tokens, output_tokens, latency_ms, "
                "cost_usd, price_known, success, cache_hit) VALUES (:t, :ts, 'gpt-4o-mini', 'openai', :i, :o, 300, "
                ":c, true, :ok, :hit)"), {"t": tid, "ts": ts + timedelta(minutes=i), "i": it, "o": ot,
                                          "c": 0.0001 if it else 0.0, "ok": ok, "hit": hit})  # fmt: skip
    fresh.migrate()
    with fresh.connect() as conn:
        known = dict(
            conn.execute(sa.select(schema.llm_calls.c.trace_id, schema.llm_calls.c.price_known)).all()
        )
        hour = conn.execute(sa.select(schema.rollup_unpriced_hour)).one()._mapping
    assert known == {
        "nousage-1": False,
        "nousage-2": False,
        "tokens": True,
        "failed": True,
        "cache-hit": True,
    }
    assert (hour["model"], hour["calls"], hour["usage_missing_calls"]) == ("gpt-4o-mini", 2, 2)
    rollups.run(fresh)  # the rollup step computes the same hour the same way
    [listed] = LLMObservabilityService(fresh).unknown_model_calls(86_400, now=ts + timedelta(hours=2))
    assert (listed["calls"], listed["usage_missing_calls"]) == (2, 2)
