"""Indexes of the LLM calls explorer and the conversation timeline: llm_calls by (ts, trace_id)
(the explorer's newest/oldest pages, keyset on that pair) and activity_events by
(conversation_id, ts) (a conversation's activity on its timeline).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_llm_calls_ts_trace", "llm_calls", ["ts", "trace_id"], unique=False)
    op.create_index(
        "ix_activity_events_conversation_ts", "activity_events", ["conversation_id", "ts"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_activity_events_conversation_ts", table_name="activity_events")
    op.drop_index("ix_llm_calls_ts_trace", table_name="llm_calls")
