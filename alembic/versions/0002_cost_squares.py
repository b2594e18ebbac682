"""Cost anomalies from rollups: `cost_sq_usd` on the LLM rollups, an (agent, cost_usd, ts) index.

The LLM rollups hold the sum of squared call costs beside the cost sum, so an agent's mean and
standard deviation of one call's cost over any window come exactly from them; the index lets the
anomaly query read just the calls above mean + z * sd.

0001 builds from the current schema metadata, so a store created after this change already has
both and this revision does nothing. A store created before gets the column (default 0), filled
from the raw rows it still keeps (minutes from `llm_calls`, hours from the minutes; rollup rows
whose raw rows retention already removed stay 0), and the index (on PostgreSQL on the partitioned
parent, which creates it on every partition).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa

from alembic import op
from observability.schema import llm_calls

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_llm_calls_agent_cost"

PG_MINUTES = """
UPDATE rollup_llm_minute r SET cost_sq_usd = s.sq
FROM (SELECT date_trunc('minute', ts) AS bucket, model, provider, coalesce(bot, '') AS bot,
             coalesce(agent, '') AS agent, sum(cost_usd * cost_usd) AS sq
      FROM llm_calls GROUP BY 1, 2, 3, 4, 5) s
WHERE r.bucket = s.bucket AND r.model = s.model AND r.provider = s.provider AND r.bot = s.bot
  AND r.agent = s.agent
"""
PG_HOURS = """
UPDATE rollup_llm_hour r SET cost_sq_usd = s.sq
FROM (SELECT date_trunc('hour', bucket) AS bucket, model, provider, bot, agent, sum(cost_sq_usd) AS sq
      FROM rollup_llm_minute GROUP BY 1, 2, 3, 4, 5) s
WHERE r.bucket = s.bucket AND r.model = s.model AND r.provider = s.provider AND r.bot = s.bot
  AND r.agent = s.agent
"""
SQLITE_MINUTES = """
UPDATE rollup_llm_minute SET cost_sq_usd = coalesce((
  SELECT sum(c.cost_usd * c.cost_usd) FROM llm_calls c
  WHERE c.ts >= rollup_llm_minute.bucket AND c.ts < datetime(rollup_llm_minute.bucket, '+1 minute')
    AND c.model = rollup_llm_minute.model AND c.provider = rollup_llm_minute.provider
    AND coalesce(c.bot, '') = rollup_llm_minute.bot AND coalesce(c.agent, '') = rollup_llm_minute.agent), 0)
"""
SQLITE_HOURS = """
UPDATE rollup_llm_hour SET cost_sq_usd = coalesce((
  SELECT sum(m.cost_sq_usd) FROM rollup_llm_minute m
  WHERE m.bucket >= rollup_llm_hour.bucket AND m.bucket < datetime(rollup_llm_hour.bucket, '+1 hour')
    AND m.model = rollup_llm_hour.model AND m.provider = rollup_llm_hour.provider
    AND m.bot = rollup_llm_hour.bot AND m.agent = rollup_llm_hour.agent), 0)
"""


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    pg = bind.dialect.name == "postgresql"
    missing = [
        t
        for t in ("rollup_llm_minute", "rollup_llm_hour")
        if "cost_sq_usd" not in {c["name"] for c in insp.get_columns(t)}
    ]
    for table in missing:
        bind.exec_driver_sql(
            f"ALTER TABLE {table} ADD COLUMN cost_sq_usd {'DOUBLE PRECISION' if pg else 'FLOAT'} NOT NULL DEFAULT 0"
        )
    if missing:
        bind.exec_driver_sql(PG_MINUTES if pg else SQLITE_MINUTES)
        bind.exec_driver_sql(PG_HOURS if pg else SQLITE_HOURS)
    if INDEX not in {i["name"] for i in insp.get_indexes("llm_calls")}:
        next(i for i in llm_calls.indexes if i.name == INDEX).create(bind)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="llm_calls")
    with op.batch_alter_table("rollup_llm_hour") as batch:
        batch.drop_column("cost_sq_usd")
    with op.batch_alter_table("rollup_llm_minute") as batch:
        batch.drop_column("cost_sq_usd")
