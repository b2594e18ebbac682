"""The role x action matrix: every action of auth.PERMISSIONS for every role, through `authorize`
and through every control, emergency and user-management service function (which check the
acting user themselves, whatever a page shows). Refused calls change nothing."""

from __future__ import annotations

import itertools
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


@pytest.fixture(scope="module")
def matrix_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("matrix") / "store.db"
    store = Store.from_url(f"sqlite:///{path}")
    store.migrate()
    try:
        for role in auth.ROLES:
            auth.create_user(store, role, role, PW)  # a user named after each role
            auth.create_user(store, f"disabled-{role}", role, PW)
            auth.update_user(store, f"disabled-{role}", disabled=True)
        auth.create_user(store, "spare-admin", AD, PW)
        yield store
    finally:
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


def _target(store: Store, _user: str = "") -> str:
    name = f"u-{uuid.uuid4().hex[:8]}"
    auth.create_user(store, name, AN, PW)
    return name


def _held_if_allowed(st: Store, u: str) -> str:
    return _held(st, u) if _can(u, "conversations.control") else _new_conversation(st)


def _none(st: Store, u: str) -> None:
    return None


# name -> (action, prepare(store, user) -> target, call(store, user, target)). `prepare` makes what
# an allowed call needs (a conversation, a held conversation, a user to manage) before the audit
# rows are counted; a refused call is checked before any precondition.
SERVICES: dict[str, tuple[str, Callable[[Store, str], object], Callable[[Store, str, object], object]]] = {
    "intervention_status": ("dashboards.view", _new_conversation, lambda st, u, c: control.intervention_status(st, c, u, settings=S)),
    "take_control": ("conversations.control", _new_conversation, lambda st, u, c: control.take_control(st, c, u, "r", settings=S)),
    "send_operator_message": ("conversations.control", _held_if_allowed, lambda st, u, c: control.send_operator_message(st, c, u, "hi", settings=S)),
    "suggest_response": ("conversations.control", _new_conversation, lambda st, u, c: control.suggest_response(st, c, u, settings=S)),
    "release_control": ("conversations.control", _held_if_allowed, lambda st, u, c: control.release_control(st, c, u, "done", settings=S)),
    "stop_conversation": ("conversations.stop", _new_conversation, lambda st, u, c: control.stop_conversation(st, c, u, "r", settings=S)),
    "reset_conversation": ("conversations.stop", _new_conversation, lambda st, u, c: control.reset_conversation(st, c, u, "r", settings=S)),
    "system_wide_stop": ("system.stop", _none, lambda st, u, _: control.system_wide_stop(st, u, "r", control.STOP_PHRASE, settings=S)),
    "system_resume": ("system.stop", _none, lambda st, u, _: control.system_resume(st, u, "r", control.RESUME_PHRASE, settings=S)),
    "add_user": ("users.manage", _none, lambda st, u, _: auth.add_user(st, u, f"n-{uuid.uuid4().hex[:8]}", AN, PW, settings=S)),
    "set_role": ("users.manage", _target, lambda st, u, t: auth.set_role(st, u, t, OP, settings=S)),
    "reset_password": ("users.manage", _target, lambda st, u, t: auth.reset_password(st, u, t, "another-password", settings=S)),
    "disable_user": ("users.manage", _target, lambda st, u, t: auth.disable_user(st, u, t, settings=S)),
    "enable_user": ("users.manage", _target, lambda st, u, t: auth.enable_user(st, u, t, settings=S)),
    "unlock_user": ("users.manage", _target, lambda st, u, t: auth.unlock_user(st, u, t, settings=S)),
}  # fmt: skip


def _can(user: str, action: str) -> bool:
    return user in EXPECTED[action]


def _audit_counts(store: Store) -> tuple[int, ...]:
    with store.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (schema.interventions, schema.emergency_actions, schema.users, schema.control_state)
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


@pytest.mark.parametrize("service", list(SERVICES))
@pytest.mark.parametrize("role", auth.ROLES)
def test_service_functions_check_the_acting_user_themselves(
    matrix_store: Store, service: str, role: str
) -> None:
    action, prepare, call = SERVICES[service]
    target = prepare(matrix_store, role)
    if _can(role, action):
        call(matrix_store, role, target)
    else:
        conversations = _conversation_states(matrix_store)
        before = _audit_counts(matrix_store)
        with pytest.raises(auth.PermissionDenied, match=action):
            call(matrix_store, role, target)
        assert _audit_counts(matrix_store) == before  # no audit row, no user, no system state
        assert _conversation_states(matrix_store) == conversations
    with pytest.raises(auth.PermissionDenied, match="disabled"):
        call(matrix_store, f"disabled-{role}", prepare(matrix_store, role))


def _conversation_states(store: Store) -> dict[str, str]:
    c = schema.conversations
    with store.connect() as conn:
        return dict(conn.execute(sa.select(c.c.id, c.c.state)).all())
