"""Alert and silence ids are never handed out twice on SQLite (AUTOINCREMENT).

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one, so when the
row with the largest id is deleted its id comes back: a pending alert that cleared without
firing is deleted (alerting.lifecycle.drop_pending), and the next alert took its id, so a link
or an API client that remembered `#2` reached a different alert (`POST /alerts/acknowledge/2`
acknowledged it). Silences expired past retention are deleted too, while alert timelines, which
are kept forever, name them ("silenced by silence #5"). AUTOINCREMENT keeps the largest id ever
used in `sqlite_sequence` and counts on from it.

SQLite cannot add AUTOINCREMENT to a table: batch mode copies each table into a new one created
with it, rows and ids kept, and re-creates its indexes. PostgreSQL ids come from a sequence,
which never goes back: nothing to do there.

The tables whose integer ids are never deleted (alert_events, interventions, emergency_actions:
audit trails) or never shown (the notifications outbox, whose order is all its id is for) keep
their definition.

Revision ID: 0017_ids_never_reused
Revises: 0016_account_day_rollup
Create Date: 2026-12-04
"""

from alembic import op

revision = "0017_ids_never_reused"
down_revision = "0016_account_day_rollup"
branch_labels = None
depends_on = None

TABLES = ("alerts", "silences")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass  # nothing to alter: recreate="always" rebuilds the table with the new kwargs


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
