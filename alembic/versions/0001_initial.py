"""Initial schema: every table of DESIGN section 4.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

from observability.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
