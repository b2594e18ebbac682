"""LLM calls priced above OTLP_COST_CEILING_USD: the withheld price, kept out of spend.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0011"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("llm_calls", sa.Column("cost_flagged_usd", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("llm_calls", "cost_flagged_usd")
