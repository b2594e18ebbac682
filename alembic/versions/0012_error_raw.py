"""LLM calls keep the error as the client named it beside the normalised error_type.

Revision ID: 0012_error_raw
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0012_error_raw"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("llm_calls", sa.Column("error_raw", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("llm_calls", "error_raw")
