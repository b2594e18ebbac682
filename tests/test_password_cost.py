"""The argon2 cost of password hashes comes from the settings, and a changed cost reaches old hashes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from observability import auth
from observability.settings import reset_settings_cache
from observability.store import Store, schema


@pytest.fixture
def cost(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int, int], None]]:
    def set_cost(time_cost: int, memory_kib: int) -> None:
        monkeypatch.setenv("PASSWORD_HASH_TIME_COST", str(time_cost))
        monkeypatch.setenv("PASSWORD_HASH_MEMORY_KIB", str(memory_kib))
        reset_settings_cache()

    yield set_cost
    monkeypatch.undo()
    reset_settings_cache()


def _stored_hash(store: Store, name: str) -> str:
    with store.connect() as conn:
        return conn.execute(
            sa.select(schema.users.c.password_hash).where(schema.users.c.name == name)
        ).scalar()


def test_new_hashes_use_the_configured_cost(cost: Callable[[int, int], None]) -> None:
    cost(2, 2048)
    assert "$m=2048,t=2," in auth.hash_password("a-long-password")


def test_a_raised_cost_upgrades_a_users_hash_at_the_next_sign_in(
    sqlite_store: Store, cost: Callable[[int, int], None]
) -> None:
    cost(1, 1024)
    auth.create_user(sqlite_store, "ann", auth.ANALYST, "a-long-password")
    assert "$m=1024,t=1," in _stored_hash(sqlite_store, "ann")
    cost(2, 2048)
    assert auth.authenticate(sqlite_store, "ann", "a-long-password").name == "ann"
    assert "$m=2048,t=2," in _stored_hash(sqlite_store, "ann")
    assert auth.authenticate(sqlite_store, "ann", "a-long-password").name == "ann"
