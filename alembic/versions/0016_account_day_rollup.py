"""LLM calls per UTC day and account (`rollup_account_day`), merged from `rollup_account_hour`.

An account's 30 days read 720 hourly rows scattered over the table (one page each: 45-380 ms at
10M calls on a busy machine when the pages were not cached); day rows bring that to about 30.

Revision ID: 0016_account_day_rollup
Revises: 0015_unpriced_rollup
Create Date: 2026-12-02
"""

import json
from datetime import datetime, timedelta

import sqlalchemy as sa

from alembic import op

revision = "0016_account_day_rollup"
down_revision = "0015_unpriced_rollup"
branch_labels = None
depends_on = None

SUMS = ("calls", "errors", "input_tokens", "output_tokens", "cost_usd", "sum_ms")


def _as_datetime(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _fill(bind: sa.Connection) -> None:
    """Day rows merged from the stored hour rows, one day at a time (as the rollup step does)."""
    md = sa.MetaData()
    hour = sa.Table("rollup_account_hour", md, autoload_with=bind)
    day = sa.Table("rollup_account_day", md, autoload_with=bind)
    first, last = bind.execute(sa.select(sa.func.min(hour.c.bucket), sa.func.max(hour.c.bucket))).one()
    if first is None:
        return
    d = _as_datetime(first).replace(hour=0, minute=0, second=0, microsecond=0)
    last = _as_datetime(last)
    while d <= last:
        nxt = d + timedelta(days=1)
        merged: dict[str, dict] = {}
        for r in bind.execute(
            sa.select(hour).where(hour.c.bucket >= d, hour.c.bucket < nxt).order_by(hour.c.bucket)
        ):
            m = r._mapping
            acc = merged.get(m["account_id"])
            if acc is None:
                acc = merged[m["account_id"]] = {"bucket": d, "account_id": m["account_id"], **{c: 0 for c in SUMS},
                                                 "min_ms": None, "max_ms": None, "sketch": {}}  # fmt: skip
            for c in SUMS:
                acc[c] += m[c] or 0
            for c, pick in (("min_ms", min), ("max_ms", max)):
                if m[c] is not None:
                    acc[c] = m[c] if acc[c] is None else pick(acc[c], m[c])
            sk = m["sketch"]
            sk = json.loads(sk) if isinstance(sk, str) else (sk or {})
            for b, n in sk.items():
                b = str(int(b))
                acc["sketch"][b] = acc["sketch"].get(b, 0) + int(n)
        if merged:
            bind.execute(sa.insert(day), list(merged.values()))
        d = nxt


def upgrade() -> None:
    op.create_table(
        "rollup_account_day",
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
    op.create_index("ix_rollup_account_day_account", "rollup_account_day", ["account_id", "bucket"])
    _fill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_rollup_account_day_account", table_name="rollup_account_day")
    op.drop_table("rollup_account_day")
