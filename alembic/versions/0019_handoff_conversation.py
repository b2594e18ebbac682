"""Handoffs name their conversation: `handoffs.conversation_id` and its (conversation_id, ts) index.

The conversation view's timeline interleaves a conversation's handoffs with its messages and calls,
but the handoffs table had no conversation: only failed or blocked handoffs reached the timeline,
through their activity events. `record_handoff(..., conversation_id=...)` now fills it; handoffs
stored before stay without one (nothing tells which conversation they belonged to).

Revision ID: 0019_handoff_conversation
Revises: 0018_usage_missing
Create Date: 2026-12-04
"""

import sqlalchemy as sa

from alembic import op

revision = "0019_handoff_conversation"
down_revision = "0018_usage_missing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("conversation_id", sa.String(length=100), nullable=True))
    op.create_index("ix_handoffs_conversation_ts", "handoffs", ["conversation_id", "ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_handoffs_conversation_ts", table_name="handoffs")
    op.drop_column("handoffs", "conversation_id")
