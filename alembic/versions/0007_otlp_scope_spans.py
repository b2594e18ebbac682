"""OTLP spans per instrumentation scope and outcome, for the Admin page.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "otlp_scope_spans",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=60), nullable=False),
        sa.Column("spans", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "outcome"),
    )


def downgrade() -> None:
    op.drop_table("otlp_scope_spans")
