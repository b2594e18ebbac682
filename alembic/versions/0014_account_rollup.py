"""LLM calls per hour and account (`rollup_account_hour`), filled from the calls already stored.

An account's calls, spend and P95 over 30 days looked each of its conversations up in every day
partition (410 ms at 10M calls, growing with the store); the rollup bounds it by hours.

Revision ID: 0014_account_rollup
Revises: 0013_day_rollups
Create Date: 2026-12-02
"""

import math
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from alembic import op

revision = "0014_account_rollup"
down_revision = "0013_day_rollups"
branch_labels = None
depends_on = None

# the latency sketch's buckets (observability.store.sketch): ceil(ln(max(x, MIN_VALUE)) / ln(GAMMA))
GAMMA = 1.01 / 0.99
MIN_VALUE = 1e-3

PG_FILL = """
INSERT INTO rollup_account_hour (bucket, account_id, calls, errors, input_tokens, output_tokens, cost_usd, sum_ms,
                                 min_ms, max_ms, sketch)
SELECT s.h, s.account_id, s.calls, s.errors, s.it, s.ot, s.cost, s.sum_ms, s.mn, s.mx, k.sketch
FROM (
  SELECT date_trunc('hour', l.ts) AS h, c.account_id, count(*) AS calls, count(*) FILTER (WHERE NOT l.success) AS errors,
         sum(l.input_tokens) AS it, sum(l.output_tokens) AS ot, sum(l.cost_usd) AS cost, sum(l.latency_ms) AS sum_ms,
         min(l.latency_ms) AS mn, max(l.latency_ms) AS mx
  FROM llm_calls l JOIN conversations c ON c.id = l.conversation_id WHERE c.account_id IS NOT NULL GROUP BY 1, 2
) s JOIN (
  SELECT h, account_id, json_object_agg(b, n) AS sketch FROM (
    SELECT date_trunc('hour', l.ts) AS h, c.account_id,
           ceil(ln(greatest(l.latency_ms, :min_value)) / :log_gamma)::bigint AS b, count(*) AS n
    FROM llm_calls l JOIN conversations c ON c.id = l.conversation_id WHERE c.account_id IS NOT NULL GROUP BY 1, 2, 3
  ) x GROUP BY 1, 2
) k USING (h, account_id)
"""


def _fill_python(bind: sa.Connection) -> None:
    """SQLite (small stores): the same figures computed here from the joined rows."""
    rows = bind.execute(
        sa.text(
            "SELECT l.ts, c.account_id, l.success, l.input_tokens, l.output_tokens, l.cost_usd, l.latency_ms "
            "FROM llm_calls l JOIN conversations c ON c.id = l.conversation_id WHERE c.account_id IS NOT NULL "
            "ORDER BY l.ts"
        )
    )
    acc: dict[tuple, dict] = {}
    sketches: dict[tuple, dict[str, int]] = defaultdict(dict)
    for ts, account, ok, it, ot, cost, lat in rows:
        ts = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
        key = (ts.replace(minute=0, second=0, microsecond=0), account)
        a = acc.get(key)
        if a is None:
            a = acc[key] = {"bucket": key[0], "account_id": account, "calls": 0, "errors": 0, "input_tokens": 0,
                            "output_tokens": 0, "cost_usd": 0.0, "sum_ms": 0.0, "min_ms": lat, "max_ms": lat}  # fmt: skip
        a["calls"] += 1
        a["errors"] += 0 if ok else 1
        a["input_tokens"] += it or 0
        a["output_tokens"] += ot or 0
        a["cost_usd"] += cost or 0.0
        a["sum_ms"] += lat
        a["min_ms"], a["max_ms"] = min(a["min_ms"], lat), max(a["max_ms"], lat)
        b = str(math.ceil(math.log(max(lat, MIN_VALUE)) / math.log(GAMMA)))
        sketches[key][b] = sketches[key].get(b, 0) + 1
    if not acc:
        return
    table = sa.Table("rollup_account_hour", sa.MetaData(), autoload_with=bind)
    bind.execute(sa.insert(table), [{**a, "sketch": sketches[k]} for k, a in acc.items()])


def upgrade() -> None:
    op.create_table(
        "rollup_account_hour",
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("sum_ms", sa.Float(), nullable=False),
        sa.Column("min_ms", sa.Float(), nullable=True),
        sa.Column("max_ms", sa.Float(), nullable=True),
        sa.Column("sketch", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "account_id"),
    )
    op.create_index("ix_rollup_account_hour_account", "rollup_account_hour", ["account_id", "bucket"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(PG_FILL), {"min_value": MIN_VALUE, "log_gamma": math.log(GAMMA)})
    else:
        _fill_python(bind)


def downgrade() -> None:
    op.drop_index("ix_rollup_account_hour_account", table_name="rollup_account_hour")
    op.drop_table("rollup_account_hour")
