"""LLM calls that reported no usage are unpriced, not $0: counted per hour in `rollup_unpriced_hour`.

A successful call with no input and no output token (an OpenAI stream without
`stream_options={"include_usage": True}`) was stored priced $0 as if known, so its spend went
missing without a word. Ingest now stores it with price_known false (`rollups.usage_missing`), and
the cost page lists and counts it beside the unpriced models. This marks the calls already stored
the same way (a caller-given cost of 0 cannot be told apart and is marked too) and rebuilds the
unpriced rollup with the new count. Downgrading drops the count; the calls stay marked unpriced.

Revision ID: 0018_usage_missing
Revises: 0017_ids_never_reused
Create Date: 2026-12-03
"""

import sqlalchemy as sa

from alembic import op

revision = "0018_usage_missing"
down_revision = "0017_ids_never_reused"
branch_labels = None
depends_on = None

HOUR = {
    "postgresql": "date_trunc('hour', ts)",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', ts)",
}
USAGE_MISSING = "success = true AND cache_hit = false AND input_tokens = 0 AND output_tokens = 0"


def upgrade() -> None:
    op.add_column(
        "rollup_unpriced_hour",
        sa.Column("usage_missing_calls", sa.BigInteger(), nullable=False, server_default="0"),
    )
    bind = op.get_bind()
    bind.execute(
        sa.text(
            f"UPDATE llm_calls SET price_known = false WHERE price_known = true AND cost_usd = 0 AND {USAGE_MISSING}"
        )
    )
    hour = HOUR["postgresql" if bind.dialect.name == "postgresql" else "sqlite"]
    # the hours that still hold unpriced calls are rebuilt from them, as the rollup step does; older
    # hours (their calls expired, the rollup is kept longer) keep their rows, counting no call without usage
    whole = "price_known = false"
    bind.execute(
        sa.text(
            f"DELETE FROM rollup_unpriced_hour WHERE bucket IN (SELECT {hour} FROM llm_calls WHERE {whole})"
        )
    )
    bind.execute(
        sa.text(
            "INSERT INTO rollup_unpriced_hour (bucket, model, provider, calls, input_tokens, output_tokens, cost_usd, "
            f"cost_flagged_usd, usage_missing_calls, first_ts, last_ts) SELECT {hour}, model, provider, count(*), "
            f"sum(input_tokens), sum(output_tokens), sum(cost_usd), sum(cost_flagged_usd), "
            f"sum(CASE WHEN {USAGE_MISSING} THEN 1 ELSE 0 END), min(ts), max(ts) FROM llm_calls "
            f"WHERE {whole} GROUP BY {hour}, model, provider"
        )
    )


def downgrade() -> None:
    op.drop_column("rollup_unpriced_hour", "usage_missing_calls")
