"""The sign-in lock holds under concurrency, tells nothing about accounts, and bounds hashing.

Concurrent guesses run in real threads against SQLite and PostgreSQL; the number of passwords
checked is counted at the argon2 library's `PasswordHasher.verify` (the public method every check
goes through).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from argon2 import PasswordHasher

from observability import auth
from observability.settings import get_settings
from observability.store import Store

T0 = datetime(2026, 3, 1, 12, 0, 0)
PASSWORD = "correct-horse-battery"


class VerifyCounter:
    """Counts argon2 verifications and the most running at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        original = PasswordHasher.verify

        def verify(hasher: PasswordHasher, hash_: str, password: str) -> bool:
            with self._lock:
                self.calls += 1
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                return original(hasher, hash_, password)
            finally:
                with self._lock:
                    self.running -= 1

        monkeypatch.setattr(PasswordHasher, "verify", verify)


def _burst(store: Store, name: str, passwords: list[str], client: str = "198.51.100.7") -> list:
    """Send every attempt at once (a barrier releases all threads together); results in order."""
    barrier = threading.Barrier(len(passwords))

    def attempt(pw: str):  # noqa: ANN202
        barrier.wait()
        try:
            return auth.authenticate(store, name, pw, client=client, now=T0)
        except auth.AuthError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(passwords)) as pool:
        return list(pool.map(attempt, passwords))


def test_forty_concurrent_wrong_guesses_count_forty_and_check_at_most_five(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.create_user(store, "admin2", auth.ADMIN, PASSWORD)
    counter = VerifyCounter(monkeypatch)
    results = _burst(store, "admin2", [f"guess-{i:04d}" for i in range(40)])
    assert all(isinstance(r, auth.AuthError) for r in results)
    assert counter.calls <= auth.MAX_FAILED_LOGINS  # at most five passwords were checked
    info = auth.list_users(store)[0]
    assert info.failed_logins == 40  # every attempt counted: no lost update
    assert info.locked(T0)


def test_the_right_password_during_the_lock_gets_the_same_answer_but_another_address_signs_in(
    store: Store,
) -> None:
    auth.create_user(store, "admin2", auth.ADMIN, PASSWORD)
    for i in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(auth.AuthError):
            auth.authenticate(store, "admin2", f"wrong-{i}", client="203.0.113.9", now=T0)
    with pytest.raises(auth.AuthError) as wrong:
        auth.authenticate(store, "admin2", "wrong-again", client="203.0.113.9", now=T0)
    with pytest.raises(auth.AuthError) as right:
        auth.authenticate(store, "admin2", PASSWORD, client="203.0.113.9", now=T0)
    assert str(right.value) == str(wrong.value) == auth.SIGN_IN_REFUSED
    # the stranger's address is paused; the admin at another address is not
    assert auth.authenticate(store, "admin2", PASSWORD, client="192.0.2.1", now=T0).name == "admin2"


def test_unknown_names_lock_exactly_like_real_ones(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    answers = {}
    for name in ("olga", "nobody"):
        seen = []
        for i in range(auth.MAX_FAILED_LOGINS + 2):
            with pytest.raises(auth.AuthError) as exc:
                auth.authenticate(sqlite_store, name, f"wrong-{i}", client="198.51.100.1", now=T0)
            seen.append((type(exc.value).__name__, str(exc.value)))
        answers[name] = seen
    assert answers["olga"] == answers["nobody"]
    assert answers["olga"][auth.MAX_FAILED_LOGINS - 1][0] == "AccountLocked"  # the fifth locks, both


def test_a_disabled_account_gives_the_same_answer_for_the_right_and_a_wrong_password(
    sqlite_store: Store,
) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    auth.disable_user(sqlite_store, "root", "olga")
    answers = set()
    for pw in (PASSWORD, "wrong-password"):
        with pytest.raises(auth.AuthError) as exc:
            auth.authenticate(sqlite_store, "olga", pw)
        answers.add((type(exc.value), str(exc.value)))
    assert len(answers) == 1


def test_one_address_spraying_many_names_is_paused(sqlite_store: Store) -> None:
    limit = get_settings().sign_in_client_max_failures
    for i in range(limit):
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, f"name{i}", "wrong-password", client="198.51.100.2", now=T0)
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    with pytest.raises(auth.AccountLocked):
        auth.authenticate(sqlite_store, "olga", PASSWORD, client="198.51.100.2", now=T0)
    assert auth.authenticate(sqlite_store, "olga", PASSWORD, client="198.51.100.3", now=T0).name == "olga"


def test_each_further_lock_of_the_same_pair_lasts_longer(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    now = T0
    lengths = []
    for _ in range(3):
        for i in range(auth.MAX_FAILED_LOGINS):
            try:
                auth.authenticate(sqlite_store, "olga", f"wrong-{i}", client="x", now=now)
            except auth.AccountLocked as exc:
                lengths.append(exc.until - now)
                now = exc.until + timedelta(seconds=1)
            except auth.AuthError:
                pass
    assert lengths == [auth.LOCKOUT, 2 * auth.LOCKOUT, 4 * auth.LOCKOUT]
    auth.unlock_user(sqlite_store, _admin(sqlite_store), "olga")
    assert not auth.list_users(sqlite_store)[0].locked(now)


def _admin(store: Store) -> str:
    auth.create_user(store, "root", auth.ADMIN, PASSWORD)
    return "root"


def test_password_checks_never_run_more_at_once_than_the_hashing_slots(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    counter = VerifyCounter(monkeypatch)
    # 20 different addresses, so the throttle lets every attempt reach a password check
    barrier = threading.Barrier(20)

    def attempt(i: int) -> None:
        barrier.wait()
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, "olga", "wrong-password", client=f"10.0.0.{i}", now=T0)

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(attempt, range(20)))
    assert counter.calls == 20
    assert counter.peak <= get_settings().password_hash_concurrency


@pytest.mark.parametrize(
    "name",
    [
        "\u0430dmin",  # Cyrillic a: a look-alike of "admin"
        "ad\u200bmin",  # zero-width space
        "\u202eadmin",  # right-to-left override
        "**boss**",  # markdown
        "[x](http://evil)",
        "olga\u00a0",  # no-break space at the end
    ],
)
def test_user_names_refuse_look_alike_invisible_bidi_and_markdown_characters(
    sqlite_store: Store, name: str
) -> None:
    with pytest.raises(ValueError, match="may only use|leading or trailing"):
        auth.create_user(sqlite_store, name, auth.ANALYST, PASSWORD)
    assert auth.list_users(sqlite_store) == []


def test_user_names_are_normalised_and_looked_up_without_case(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "Olga.K", auth.OPERATOR, PASSWORD)
    assert [u.name for u in auth.list_users(sqlite_store)] == ["olga.k"]
    with pytest.raises(ValueError, match="already exists"):  # full-width letters are NFKC "olga.k"
        auth.create_user(sqlite_store, "\uff2f\uff4c\uff47\uff41.k", auth.ANALYST, PASSWORD)
    assert auth.authenticate(sqlite_store, "OLGA.K", PASSWORD).name == "olga.k"
    assert auth.get_user(sqlite_store, "Olga.K") == auth.User("olga.k", auth.OPERATOR)


def test_a_password_typed_into_the_name_field_is_not_kept_under_a_plain_hash(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    import sqlalchemy as sa

    from observability.settings import reset_settings_cache
    from observability.store import schema

    def stored_keys() -> set[str]:
        t = schema.sign_in_throttle
        with sqlite_store.connect() as conn:
            rows = conn.execute(sa.select(t.c.key, t.c.account_key)).all()
        return {k for row in rows for k in row if k}

    typed = "correct-horse-battery-staple"  # someone typed a password into the name field
    for secret in ("first-secret-of-this-console", "second-secret-of-this-console"):
        monkeypatch.setenv("SESSION_SECRET", secret)
        reset_settings_cache()
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, typed, "anything-at-all", client="198.51.100.9", now=T0)
    reset_settings_cache()
    plain = {hashlib.sha256(f"{kind}\0{typed}".encode()).hexdigest() for kind in ("account", "pair")}
    plain |= {hashlib.sha256(f"pair\0{typed}\0198.51.100.9".encode()).hexdigest()}
    keys = stored_keys()
    assert not keys & plain, "a fast, unkeyed hash of the typed name is stored"
    assert len(keys) >= 4, "the same name under two secrets gives different keys"
