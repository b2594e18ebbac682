"""A refused sign-in takes as long for an unknown name as for a real or a disabled account.

If an unknown name were answered before any password check, a stranger could find out which names
are accounts by timing the form. The test compares the durations of many interleaved attempts of
each kind through `auth.authenticate` (the function the sign-in form calls) with a Mann-Whitney U
test: it is not a timed assertion, it fails only when one kind is systematically faster or slower
than the other, whatever this machine's speed. The threshold is lenient (p < 0.001) so scheduler
noise on a shared machine does not trip it.

argon2 runs at a moderate cost here (8 MiB, 2 passes): large enough that a skipped hash stands out
from the store's own work, small enough to keep the test short.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from scipy.stats import mannwhitneyu

from observability import auth
from observability.settings import reset_settings_cache
from observability.store import Store

# a timing comparison: `make test` runs it after the parallel part, alone on the machine
pytestmark = pytest.mark.serial

PASSWORD = "correct-horse-battery"
ROUNDS = 40
P_MIN = 0.001


@pytest.fixture
def moderate_hash_cost(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PASSWORD_HASH_TIME_COST", "2")
    monkeypatch.setenv("PASSWORD_HASH_MEMORY_KIB", "8192")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def _timed(store: Store, name: str, client: str) -> float:
    start = time.perf_counter()
    with pytest.raises(auth.AuthError) as refused:
        auth.authenticate(store, name, "wrong-password-123", client=client)
    elapsed = time.perf_counter() - start
    assert str(refused.value) == auth.SIGN_IN_REFUSED  # the same words too
    return elapsed


def test_unknown_names_take_as_long_as_real_and_disabled_accounts(
    sqlite_store: Store, moderate_hash_cost: None
) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    auth.create_user(sqlite_store, "dora", auth.OPERATOR, PASSWORD)
    auth.update_user(sqlite_store, "dora", disabled=True)
    # Every attempt from its own address, and each unknown name new: the throttle never pauses
    # one, so every attempt goes the whole way to a password check.
    clients = (f"10.13.{i // 200}.{i % 200}" for i in range(10_000))
    kinds = {"unknown": lambda i: f"nobody{i}", "real": lambda i: "olga", "disabled": lambda i: "dora"}
    for name in kinds.values():  # warm-up (connections, the cached dummy hash), not counted
        _timed(sqlite_store, name(-1), next(clients))
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = random.Random(13)
    for i in range(ROUNDS):  # interleaved, in a new order each round, so drift hits all kinds alike
        round_kinds = list(kinds)
        order.shuffle(round_kinds)
        for kind in round_kinds:
            times[kind].append(_timed(sqlite_store, kinds[kind](i), next(clients)))
    for other in ("real", "disabled"):
        p = mannwhitneyu(times["unknown"], times[other], alternative="two-sided").pvalue
        assert p > P_MIN, (
            f"unknown names and {other} accounts are told apart by time (p={p:.2g}); medians "
            f"{sorted(times['unknown'])[ROUNDS // 2] * 1e3:.1f} ms vs "
            f"{sorted(times[other])[ROUNDS // 2] * 1e3:.1f} ms"
        )
