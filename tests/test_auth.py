"""Sign-in and user management: salted hashes, lockout and its expiry, audit events, no secrets in logs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from observability import auth
from observability.settings import Settings
from observability.store import Store, schema

T0 = datetime(2026, 3, 1, 12, 0, 0)
PASSWORD = "correct-horse-battery"
SECRET_PASSWORDS = ("correct-horse-battery", "Wrong-Pass-123", "n3w-S3cret-pass", "an0ther-S3cret")


def _events(store: Store, prefix: str) -> list:
    t = schema.activity_events
    with store.connect() as conn:
        return conn.execute(
            sa.select(t.c.event_type, t.c.user_id, t.c.metadata)
            .where(t.c.event_type.like(f"{prefix}%"))
            .order_by(t.c.ts)
        ).all()


def test_passwords_are_stored_as_salted_argon2_hashes(store: Store) -> None:
    auth.create_user(store, "ann", auth.ANALYST, PASSWORD)
    auth.create_user(store, "bob", auth.ANALYST, PASSWORD)
    with store.connect() as conn:
        hashes = (
            conn.execute(sa.select(schema.users.c.password_hash).order_by(schema.users.c.name))
            .scalars()
            .all()
        )
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    assert hashes[0] != hashes[1]  # salted: same password, different hashes


def test_sign_in_with_the_right_password_returns_the_user(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    user = auth.authenticate(sqlite_store, "olga", PASSWORD, now=T0)
    assert user == auth.User("olga", auth.OPERATOR)
    assert auth.list_users(sqlite_store)[0].last_login_at == T0


def test_wrong_password_and_unknown_name_give_the_same_error(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    with pytest.raises(auth.AuthError) as wrong:
        auth.authenticate(sqlite_store, "olga", "not-the-password")
    with pytest.raises(auth.AuthError) as unknown:
        auth.authenticate(sqlite_store, "nobody", "not-the-password")
    assert str(wrong.value) == str(unknown.value) == auth.SIGN_IN_REFUSED


def test_five_failed_sign_ins_lock_the_account_for_fifteen_minutes(store: Store) -> None:
    auth.create_user(store, "olga", auth.OPERATOR, PASSWORD)
    for i in range(4):
        with pytest.raises(auth.AuthError) as exc:
            auth.authenticate(store, "olga", "wrong-password", now=T0 + timedelta(seconds=i))
        assert not isinstance(exc.value, auth.AccountLocked)
    with pytest.raises(auth.AccountLocked) as locked:
        auth.authenticate(store, "olga", "wrong-password", now=T0 + timedelta(seconds=4))
    assert locked.value.until == T0 + timedelta(seconds=4) + auth.LOCKOUT

    # while locked even the right password is refused
    with pytest.raises(auth.AccountLocked):
        auth.authenticate(store, "olga", PASSWORD, now=T0 + timedelta(minutes=14))
    assert auth.list_users(store)[0].locked(T0 + timedelta(minutes=14))
    assert _events(store, "auth.locked")[0].user_id == "olga"

    # the lock expires after 15 minutes
    assert (
        auth.authenticate(store, "olga", PASSWORD, now=T0 + timedelta(minutes=15, seconds=5)).name == "olga"
    )
    assert not auth.list_users(store)[0].locked(T0 + timedelta(minutes=15, seconds=5))


def test_after_a_lock_expires_the_failure_count_starts_again(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    for i in range(5):
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, "olga", "wrong-password", now=T0 + timedelta(seconds=i))
    later = T0 + timedelta(minutes=20)
    for i in range(4):  # four more failures do not lock again
        with pytest.raises(auth.AuthError) as exc:
            auth.authenticate(sqlite_store, "olga", "wrong-password", now=later + timedelta(seconds=i))
        assert not isinstance(exc.value, auth.AccountLocked)
    with pytest.raises(auth.AccountLocked):
        auth.authenticate(sqlite_store, "olga", "wrong-password", now=later + timedelta(seconds=10))


def test_a_successful_sign_in_resets_the_failure_count(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    for _ in range(4):
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, "olga", "wrong-password", now=T0)
    auth.authenticate(sqlite_store, "olga", PASSWORD, now=T0)
    for _ in range(4):
        with pytest.raises(auth.AuthError) as exc:
            auth.authenticate(sqlite_store, "olga", "wrong-password", now=T0)
        assert not isinstance(exc.value, auth.AccountLocked)


def test_disabled_users_can_neither_sign_in_nor_act(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    auth.disable_user(sqlite_store, "root", "olga")
    with pytest.raises(auth.AuthError) as right:
        auth.authenticate(sqlite_store, "olga", PASSWORD)
    with pytest.raises(auth.AuthError) as wrong:
        auth.authenticate(sqlite_store, "olga", "wrong-password")
    assert str(right.value) == str(wrong.value) == auth.SIGN_IN_REFUSED  # the password's truth stays hidden
    with pytest.raises(auth.PermissionDenied, match="disabled"):
        auth.authorize(sqlite_store, "olga", "conversations.control")
    auth.enable_user(sqlite_store, "root", "olga")
    assert auth.authenticate(sqlite_store, "olga", PASSWORD).name == "olga"


def test_user_management_needs_users_manage_and_leaves_audit_events(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    auth.create_user(sqlite_store, "mia", auth.MANAGER, PASSWORD)
    s = Settings().replace(auth_mode="password")
    with pytest.raises(auth.PermissionDenied):
        auth.add_user(sqlite_store, "mia", "eve", auth.ADMIN, PASSWORD, settings=s)
    assert auth.get_user(sqlite_store, "eve") is None

    auth.add_user(sqlite_store, "root", "ann", auth.ANALYST, PASSWORD, settings=s)
    auth.set_role(sqlite_store, "root", "ann", auth.OPERATOR, settings=s)
    auth.reset_password(sqlite_store, "root", "ann", "n3w-S3cret-pass", settings=s)
    auth.disable_user(sqlite_store, "root", "ann", settings=s)
    auth.enable_user(sqlite_store, "root", "ann", settings=s)
    auth.unlock_user(sqlite_store, "root", "ann", settings=s)
    kinds = [(e.event_type, e.user_id, e.metadata["target"]) for e in _events(sqlite_store, "user.")]
    assert kinds[2:] == [
        ("user.created", "root", "ann"),
        ("user.role_changed", "root", "ann"),
        ("user.password_reset", "root", "ann"),
        ("user.disabled", "root", "ann"),
        ("user.enabled", "root", "ann"),
        ("user.unlocked", "root", "ann"),
    ]
    assert auth.authenticate(sqlite_store, "ann", "n3w-S3cret-pass").role == auth.OPERATOR


def test_a_password_reset_unlocks_the_account(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    for _ in range(5):
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, "olga", "wrong-password", now=T0)
    auth.update_user(sqlite_store, "olga", password="an0ther-S3cret")
    assert (
        auth.authenticate(sqlite_store, "olga", "an0ther-S3cret", now=T0 + timedelta(minutes=1)).name
        == "olga"
    )


def test_the_last_active_admin_cannot_be_demoted_or_disabled(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    with pytest.raises(ValueError, match="last active admin"):
        auth.update_user(sqlite_store, "root", role=auth.OPERATOR)
    with pytest.raises(ValueError, match="last active admin"):
        auth.update_user(sqlite_store, "root", disabled=True)
    auth.create_user(sqlite_store, "root2", auth.ADMIN, PASSWORD)
    auth.update_user(sqlite_store, "root", role=auth.OPERATOR)
    assert auth.get_user(sqlite_store, "root").role == auth.OPERATOR
    with pytest.raises(ValueError, match="yourself"):
        auth.disable_user(sqlite_store, "root2", "root2")


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("ann", "superuser", PASSWORD, "role must be one of"),
        ("", auth.ANALYST, PASSWORD, "user name"),
        (" ann", auth.ANALYST, PASSWORD, "user name"),
        ("x" * 101, auth.ANALYST, PASSWORD, "user name"),
        ("ann", auth.ANALYST, "short", "at least 8"),
    ],
)
def test_bad_user_input_is_refused_and_changes_nothing(
    sqlite_store: Store, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        auth.create_user(sqlite_store, name, role, password)
    assert auth.list_users(sqlite_store) == []


def test_duplicate_users_are_refused(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "ann", auth.ANALYST, PASSWORD)
    with pytest.raises(ValueError, match="already exists"):
        auth.create_user(sqlite_store, "ann", auth.ADMIN, PASSWORD)


def test_first_admin_is_created_once_with_a_random_password(store: Store) -> None:
    password = auth.ensure_first_admin(store)
    assert password and len(password) >= 12
    assert auth.authenticate(store, "admin", password).role == auth.ADMIN
    assert auth.ensure_first_admin(store) is None
    assert [u.name for u in auth.list_users(store)] == ["admin"]


def test_auth_mode_none_lets_unknown_names_act_as_admin_but_keeps_real_roles(sqlite_store: Store) -> None:
    off = Settings().replace(auth_mode="none")
    on = Settings().replace(auth_mode="password")
    assert auth.authorize(sqlite_store, "local", "system.stop", off).role == auth.ADMIN
    with pytest.raises(auth.PermissionDenied):
        auth.authorize(sqlite_store, "local", "system.stop", on)
    auth.create_user(sqlite_store, "ann", auth.ANALYST, PASSWORD)
    with pytest.raises(auth.PermissionDenied):
        auth.authorize(sqlite_store, "ann", "system.stop", off)
    with pytest.raises(auth.PermissionDenied):
        auth.authorize(sqlite_store, None, "dashboards.view", off)


def test_no_password_or_hash_reaches_a_log_line(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, "an0ther-S3cret")
    auth.authenticate(sqlite_store, "olga", "an0ther-S3cret")
    for _ in range(5):
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, "olga", "Wrong-Pass-123")
    with pytest.raises(auth.AuthError):  # a password typed into the name field is not logged
        auth.authenticate(sqlite_store, "Wrong-Pass-123", PASSWORD)
    auth.reset_password(sqlite_store, "root", "olga", "n3w-S3cret-pass")
    with sqlite_store.connect() as conn:
        hashes = conn.execute(sa.select(schema.users.c.password_hash)).scalars().all()
    assert caplog.records  # sign-ins and changes are logged...
    for secret in (*SECRET_PASSWORDS, *hashes):
        assert secret not in caplog.text  # ...without any password or hash
    events = _events(sqlite_store, "")
    assert not any(secret in str(e) for e in events for secret in SECRET_PASSWORDS)
