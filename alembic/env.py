"""Alembic environment: migrations run on the connection `Store.migrate()` passes in.

Run from the `alembic` CLI (alembic.ini at the repo root), it opens the store of DATABASE_URL
instead; that is how `alembic revision --autogenerate` compares a store with
`observability.store.schema.metadata` (see alembic/README).
"""

import sys
from pathlib import Path

from alembic import context

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # the `alembic` CLI does not put the project on the path
    sys.path.insert(0, ROOT)

from observability.store.schema import is_partition, metadata  # noqa: E402

target_metadata = metadata


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001 - Alembic hook
    """Skip the PostgreSQL partitions of the raw event tables (and their indexes): they are not in
    the metadata by design, so autogenerate must not drop them."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table and is_partition(table))


def _configure(connection) -> None:  # noqa: ANN001 - sqlalchemy Connection
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_server_default=True,
        include_object=include_object,
    )


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from observability.store import Store

        store = Store.from_url()
        with store.engine.begin() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
        return
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
