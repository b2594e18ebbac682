"""The SDK's one door to the store for reading control state: a gate, hand-back instructions and
operator messages, when there is no Redis or Redis cannot be trusted.

The store is opened on first use, so SQLAlchemy is imported only by a bot that needs it. The SQL
itself lives with the store (`observability.store.control_state`); nothing here writes a query.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from observability.settings import Settings


class StoreReads:
    """Reads of the control state, over a store opened lazily and shared by the client's threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._store is None:
                from observability.store import Store

                self._store = Store.from_url(self.settings.database_url)
            return self._store.connect()

    def gate(self, conversation_id: str) -> tuple[bool, str | None]:
        """(system stopped?, conversation state or None)."""
        from observability.store.control_state import read_from_store

        with self._connect() as conn:
            return read_from_store(conn, conversation_id)

    def handoff_instructions(self, conversation_id: str) -> str | None:
        from observability.store.control_state import handoff_instructions

        with self._connect() as conn:
            return handoff_instructions(conn, conversation_id)

    def operator_messages(self, conversation_id: str | None, after: datetime | None) -> list[dict]:
        """Operator replies after `after` (naive UTC), oldest first (see `control_state`)."""
        from observability.store.control_state import operator_messages

        with self._connect() as conn:
            return operator_messages(conn, conversation_id, after)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.dispose()
                self._store = None
