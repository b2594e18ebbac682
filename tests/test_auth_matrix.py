"""The role x action matrix: every action of auth.PERMISSIONS for every role, through `authorize`
and through every control, emergency and user-management service function (which check the
acting user themselves, whatever a page shows). Refused calls change nothing."""

from __future__ import annotations

import itertools
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from observability import auth, control
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch

S = Settings().replace(auth_mode="password", redis_url=None, emergency_rate_limit_per_min=0)
PW = "a-long-password"
AN, OP, MG, AD = "analyst", "operator", "manager", "admin"

# The policy of the issue, restated independently of auth.PERMISSIONS: analysts read every
# dashboard; operators also act on alerts and conversations; managers are analysts who also set
# budgets; admins do everything (users, system-wide stop, rule deletion).
EXPECTED: dict[str, set[str]] = {
    "dashboards.view": {AN, OP, MG, AD},
    "activity.mark_read": {AN, OP, MG, AD},
    "alerts.acknowledge": {OP, AD},
    "alerts.resolve": {OP, AD},
    "alerts.escalate": {OP, AD},
    "rules.toggle": {OP, AD},
    "rules.edit": {OP, AD},
    "rules.delete": {AD},
    "silences.manage": {OP, AD},
    "notifications.test": {OP, AD},
    "conversations.control": {OP, AD},
    "conversations.stop": {OP, AD},
    "system.stop": {AD},
    "budget.set": {MG, AD},
    "users.manage": {AD},
}


def test_the_permission_table_is_the_documented_policy() -> None:
    assert set(auth.PERMISSIONS) == set(EXPECTED)
    for action, roles in EXPECTED.items():
        assert set(auth.PERMISSIONS[action]) == roles, action
        assert auth.roles_for(action) == [r for r in auth.ROLES if r in roles]


def _users_table(store: Store) -> list[tuple]:
    with store.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(schema.users).order_by(schema.users.c.name))]


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store with a user named after each role, a disabled one of each role and a
    spare admin; tests that write get a copy of it (`own_store`), never the file itself."""
    path: Path = tmp_path_factory.mktemp("matrix") / "store.db"
    store = Store.from_url(f"sqlite:///{path}")
    store.migrate()
    try:
        for role in auth.ROLES:
            auth.create_user(store, role, role, PW)  # a user named after each role
            auth.create_user(store, f"disabled-{role}", role, PW)
            auth.update_user(store, f"disabled-{role}", disabled=True)
        auth.create_user(store, "spare-admin", AD, PW)
    finally:
        store.dispose()
    return path


@pytest.fixture(scope="module")
def matrix_store(matrix_file: Path) -> Iterator[Store]:
    """Shared by the read-only tests of this module; checked unchanged at the end."""
    store = Store.from_url(f"sqlite:///{matrix_file}")
    before = (_users_table(store), _audit_counts(store))
    try:
        yield store
        assert (_users_table(store), _audit_counts(store)) == before, (
            "a test wrote to the shared matrix store"
        )
    finally:
        store.dispose()


@pytest.fixture
def own_store(matrix_file: Path, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the matrix store, for a test that changes it."""
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{matrix_file}{suffix}")
        if src.exists():
            shutil.copyfile(src, tmp_path / f"store.db{suffix}")
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.dispose()


@pytest.mark.parametrize(("action", "role"), list(itertools.product(EXPECTED, auth.ROLES)))
def test_authorize_follows_the_matrix(matrix_store: Store, action: str, role: str) -> None:
    if role in EXPECTED[action]:
        assert auth.authorize(matrix_store, role, action, S) == auth.User(role, role)
    else:
        with pytest.raises(auth.PermissionDenied, match=action):
            auth.authorize(matrix_store, role, action, S)
    with pytest.raises(auth.PermissionDenied, match="disabled"):
        auth.authorize(matrix_store, f"disabled-{role}", action, S)
    with pytest.raises(auth.PermissionDenied, match="unknown user"):
        auth.authorize(matrix_store, "ghost", action, S)


def test_unknown_actions_are_a_programming_error(matrix_store: Store) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        auth.authorize(matrix_store, "admin", "conversations.delete", S)


# ---- the service functions -----------------------------------------------------------------------


def _new_conversation(store: Store, _user: str = "") -> str:
    cid = f"c-{uuid.uuid4().hex[:10]}"
    write_batch(
        store, [["message", uuid.uuid4().hex, time.time(), cid, "user", "hello", "lead", None, None]], S
    )
    return cid


def _held(store: Store, user: str) -> str:
    cid = _new_conversation(store)
    control.take_control(store, cid, user, "setup", settings=S)
    return cid


def _held_by_actor_or_spare(st: Store, u: str) -> str:
    """Held by the acting user when they may hold it, else by another operator (a refused reply or
    hand-back must leave someone else's take-over as it is)."""
    return _held(st, u if _can(u, "conversations.control") else "spare-admin")


def _held_by_spare(st: Store, u: str) -> str:
    return _held(st, "spare-admin")


def _target(store: Store, _user: str = "") -> str:
    name = f"u-{uuid.uuid4().hex[:8]}"
    auth.create_user(store, name, AN, PW)
    return name


def _disabled_target(st: Store, u: str) -> str:
    name = _target(st)
    auth.update_user(st, name, disabled=True)
    return name


def _locked_target(st: Store, u: str) -> str:
    name = _target(st)
    for _ in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(auth.AuthError):
            auth.authenticate(st, name, "wrong-password")
    with pytest.raises(auth.AccountLocked):  # locked: even the right password is refused
        auth.authenticate(st, name, PW)
    return name


def _fresh_name(st: Store, u: str) -> str:
    return f"n-{uuid.uuid4().hex[:8]}"


def _system_stopped(st: Store, u: str) -> None:
    control.system_wide_stop(st, "spare-admin", "setup", control.STOP_PHRASE, settings=S)
    assert control.system_status(st)["stopped"]


def _none(st: Store, u: str) -> None:
    return None


def _state(st: Store, cid: str) -> tuple[str, str | None]:
    status = control.intervention_status(st, cid, settings=S)
    return status.state, status.operator


def _user(st: Store, name: str) -> auth.User | None:
    return auth.get_user(st, name)


# What the acting user relies on when an allowed call returns: (store, user, target, result) -> None.
EFFECTS: dict[str, Callable[[Store, str, object, object], None]] = {
    "intervention_status": lambda st, u, c, r: _check(r.conversation_id == c and r.state == "ai" and r.ai_may_respond, r),
    "take_control": lambda st, u, c, r: _check(_state(st, c) == ("human", u) and r.outcome == "taken", r),
    "send_operator_message": lambda st, u, c, r: _check(r.outcome == "sent" and r.message_id
                                                        and _state(st, c) == ("human", u), r),
    "suggest_response": lambda st, u, c, r: _check(isinstance(r, control.Suggestion) and r.label
                                                   and r.source in ("claude", "similar_conversation", "none"), r),
    "release_control": lambda st, u, c, r: _check(_state(st, c) == ("ai", None), r),
    "stop_conversation": lambda st, u, c, r: _check(_state(st, c) == ("stopped", u), r),
    "reset_conversation": lambda st, u, c, r: _check(_state(st, c) == ("ai", None), r),
    "system_wide_stop": lambda st, u, _, r: _check(control.system_status(st)["stopped"]
                                                   and control.system_status(st)["by"] == u, r),
    "system_resume": lambda st, u, _, r: _check(not control.system_status(st)["stopped"] and r.outcome == "resumed", r),
    "add_user": lambda st, u, n, r: _check(_user(st, n) == auth.User(n, AN) and auth.authenticate(st, n, PW), r),
    "set_role": lambda st, u, t, r: _check(_user(st, t) == auth.User(t, OP), r),
    "reset_password": lambda st, u, t, r: _check(auth.authenticate(st, t, "another-password") == auth.User(t, AN), r),
    "disable_user": lambda st, u, t, r: _check(_user(st, t).disabled, r),
    "enable_user": lambda st, u, t, r: _check(not _user(st, t).disabled and auth.authenticate(st, t, PW), r),
    "unlock_user": lambda st, u, t, r: _check(auth.authenticate(st, t, PW) == auth.User(t, AN), r),
}  # fmt: skip


def _check(ok: object, result: object) -> None:
    assert ok, f"the call returned {result!r} but did not do what it says"


# name -> (action, prepare(store, user) -> target, call(store, user, target)). `prepare` makes what
# the call acts on (a conversation, a held conversation, a user to manage, a stopped system) before
# the store is looked at; a refused call must leave all of it as it was.
SERVICES: dict[str, tuple[str, Callable[[Store, str], object], Callable[[Store, str, object], object]]] = {
    "intervention_status": ("dashboards.view", _new_conversation, lambda st, u, c: control.intervention_status(st, c, u, settings=S)),
    "take_control": ("conversations.control", _new_conversation, lambda st, u, c: control.take_control(st, c, u, "r", settings=S)),
    "send_operator_message": ("conversations.control", _held_by_actor_or_spare, lambda st, u, c: control.send_operator_message(st, c, u, "hi", settings=S)),
    "suggest_response": ("conversations.control", _new_conversation, lambda st, u, c: control.suggest_response(st, c, u, settings=S)),
    "release_control": ("conversations.control", _held_by_actor_or_spare, lambda st, u, c: control.release_control(st, c, u, "done", settings=S)),
    "stop_conversation": ("conversations.stop", _new_conversation, lambda st, u, c: control.stop_conversation(st, c, u, "r", settings=S)),
    "reset_conversation": ("conversations.stop", _held_by_actor_or_spare, lambda st, u, c: control.reset_conversation(st, c, u, "r", settings=S)),
    "system_wide_stop": ("system.stop", _none, lambda st, u, _: control.system_wide_stop(st, u, "r", control.STOP_PHRASE, settings=S)),
    "system_resume": ("system.stop", _system_stopped, lambda st, u, _: control.system_resume(st, u, "r", control.RESUME_PHRASE, settings=S)),
    "add_user": ("users.manage", _fresh_name, lambda st, u, n: auth.add_user(st, u, n, AN, PW, settings=S)),
    "set_role": ("users.manage", _target, lambda st, u, t: auth.set_role(st, u, t, OP, settings=S)),
    "reset_password": ("users.manage", _target, lambda st, u, t: auth.reset_password(st, u, t, "another-password", settings=S)),
    "disable_user": ("users.manage", _target, lambda st, u, t: auth.disable_user(st, u, t, settings=S)),
    "enable_user": ("users.manage", _disabled_target, lambda st, u, t: auth.enable_user(st, u, t, settings=S)),
    "unlock_user": ("users.manage", _locked_target, lambda st, u, t: auth.unlock_user(st, u, t, settings=S)),
}  # fmt: skip


def _can(user: str, action: str) -> bool:
    return user in EXPECTED[action]


def _audit_counts(store: Store) -> tuple[int, ...]:
    with store.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (schema.interventions, schema.emergency_actions, schema.users, schema.control_state)
        )


def _snapshot(store: Store) -> tuple:
    """Everything a refused call must leave alone: audit rows, users, conversation states, the system stop."""
    return (
        _audit_counts(store),
        _users_table(store),
        _conversation_states(store),
        control.system_status(store),
    )


def test_every_state_changing_action_of_this_part_has_a_service_in_the_matrix() -> None:
    covered = {spec[0] for spec in SERVICES.values()}
    assert {
        "conversations.control",
        "conversations.stop",
        "system.stop",
        "users.manage",
        "dashboards.view",
    } <= covered
    assert set(EFFECTS) == set(SERVICES)


@pytest.mark.parametrize("service", list(SERVICES))
@pytest.mark.parametrize("role", auth.ROLES)
def test_service_functions_check_the_acting_user_themselves(
    own_store: Store, service: str, role: str
) -> None:
    action, prepare, call = SERVICES[service]
    store = own_store  # a copy of the matrix store: these calls write
    target = prepare(store, role)
    before = _snapshot(store)
    if _can(role, action):
        result = call(store, role, target)
        EFFECTS[service](store, role, target, result)
    else:
        with pytest.raises(auth.PermissionDenied, match=action):
            call(store, role, target)
        assert _snapshot(store) == before  # no audit row, no user change, no state change
    target = prepare(store, role)
    before = _snapshot(store)
    with pytest.raises(auth.PermissionDenied, match="disabled"):
        call(store, f"disabled-{role}", target)
    assert _snapshot(store) == before


def _conversation_states(store: Store) -> dict[str, str]:
    c = schema.conversations
    with store.connect() as conn:
        return dict(conn.execute(sa.select(c.c.id, c.c.state)).all())
