"""Initial schema: every table of DESIGN section 4.

On PostgreSQL the raw event tables (`schema.RAW_EVENT_TABLES`) are partitioned by day on `ts`
(`PARTITION BY RANGE (ts)`), each with a DEFAULT partition that catches rows no day partition
covers yet (a backfill of old data, or a day the worker has not prepared). Day partitions are
named `<table>_pYYYYMMDD`; this migration creates yesterday .. today+3, and the worker's retention
step (`observability.retention`) keeps creating them ahead and drops expired ones. SQLite keeps
plain tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from datetime import datetime, timedelta, timezone

from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable

from observability.schema import RAW_EVENT_TABLES, metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        metadata.create_all(bind)
        return
    raw = {t.name for t in RAW_EVENT_TABLES}
    metadata.create_all(bind, tables=[t for t in metadata.sorted_tables if t.name not in raw])
    today = datetime.now(timezone.utc).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    for table in RAW_EVENT_TABLES:
        ddl = str(CreateTable(table).compile(dialect=bind.dialect)).strip()
        bind.exec_driver_sql(f"{ddl} PARTITION BY RANGE (ts)")
        for index in table.indexes:  # indexes on the parent cascade to every partition
            bind.execute(CreateIndex(index))
        bind.exec_driver_sql(f'CREATE TABLE "{table.name}_default" PARTITION OF "{table.name}" DEFAULT')
        for offset in range(-1, 4):
            lo = today + timedelta(days=offset)
            hi = lo + timedelta(days=1)
            bind.exec_driver_sql(
                f'CREATE TABLE "{table.name}_p{lo:%Y%m%d}" PARTITION OF "{table.name}" '
                f"FOR VALUES FROM ('{lo:%Y-%m-%d %H:%M:%S}') TO ('{hi:%Y-%m-%d %H:%M:%S}')"
            )


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
