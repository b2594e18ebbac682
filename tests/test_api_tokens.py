"""API tokens: issued for a user within their role, shown once, stored only as a hash of their id,
revoked by their owner or an admin, from the service, the CLI; every refusal says why."""

from __future__ import annotations

import io
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from observability import auth
from observability.api import create_app
from observability.auth import api_tokens
from observability.auth.cli import run
from observability.settings import Settings
from observability.store import Store, schema
from observability.timeutil import utcnow

PW = "tokens-password-1"
S = Settings().replace(session_secret="tokens-" + "t" * 30)


@pytest.fixture
def people(store: Store) -> Store:
    for name, role in (
        ("ana", auth.ANALYST),
        ("opal", auth.OPERATOR),
        ("max", auth.MANAGER),
        ("ada", auth.ADMIN),
    ):
        auth.create_user(store, name, role, PW)
    return store


def test_a_token_acts_for_its_user_within_its_scope_and_is_stored_hashed(people: Store) -> None:
    issued = api_tokens.create_token(people, "opal", "opal", "help desk", settings=S)
    p = api_tokens.verify_token(people, issued.token, settings=S)
    assert (p.user, p.role, p.scope) == ("opal", "operator", "operator")
    assert p.may("conversations.control") and not p.may("system.stop")
    jti = jwt.decode(issued.token, options={"verify_signature": False})["jti"]
    with people.connect() as conn:
        stored = [str(v) for row in conn.execute(sa.select(schema.api_tokens)) for v in row]
    assert not any(jti in v or issued.token in v for v in stored)
    narrow = api_tokens.create_token(people, "ada", "ada", "read only", scope="analyst", settings=S)
    assert not api_tokens.verify_token(people, narrow.token, settings=S).may("alerts.acknowledge")


def test_refusals_say_why_and_issue_nothing(people: Store) -> None:
    cases = [
        (dict(actor="opal", user="opal", name="x", scope="admin"), ValueError, "wider than the role"),
        (dict(actor="max", user="max", name="x", scope="operator"), ValueError, "wider than the role"),
        (dict(actor="opal", user="opal", name="x", days=10_000), ValueError, "at most 365 days"),
        (dict(actor="opal", user="opal", name=" "), ValueError, "needs a name"),
        (dict(actor="opal", user="ana", name="x"), auth.PermissionDenied, "users.manage"),
        (dict(actor="nobody", user="ana", name="x"), auth.PermissionDenied, "unknown or disabled"),
        (dict(actor="ada", user="ghost", name="x"), ValueError, "no user"),
    ]
    for kw, exc, text in cases:
        with pytest.raises(exc, match=text):
            api_tokens.create_token(people, kw.pop("actor"), kw.pop("user"), kw.pop("name"), settings=S, **kw)
    assert api_tokens.list_tokens(people) == []
    assert api_tokens.create_token(people, "ada", "ana", "for ana", settings=S).user == "ana"  # an admin may


def test_expiry_revocation_and_a_disabled_user_end_a_token(people: Store) -> None:
    old = api_tokens.create_token(
        people, None, "opal", "old", days=1, now=utcnow() - timedelta(days=2), settings=S
    )
    with pytest.raises(api_tokens.TokenInvalid, match="expired"):
        api_tokens.verify_token(people, old.token, settings=S)
    live = api_tokens.create_token(people, None, "opal", "live", settings=S)
    token_id = next(t["id"] for t in api_tokens.list_tokens(people, "opal") if t["name"] == "live")
    with pytest.raises(auth.PermissionDenied):
        api_tokens.revoke_token(people, "ana", token_id, settings=S)  # not hers
    assert api_tokens.revoke_token(people, "opal", token_id, settings=S) is True
    assert api_tokens.revoke_token(people, "opal", token_id, settings=S) is False
    with pytest.raises(api_tokens.TokenInvalid, match="revoked"):
        api_tokens.verify_token(people, live.token, settings=S)
    other = api_tokens.create_token(people, None, "max", "other", settings=S)
    auth.update_user(people, "max", disabled=True, by="tests")
    with pytest.raises(api_tokens.TokenInvalid, match="disabled"):
        api_tokens.verify_token(people, other.token, settings=S)
    with pytest.raises(api_tokens.TokenInvalid, match="not valid"):
        api_tokens.verify_token(people, other.token, settings=S.replace(session_secret="another-" + "k" * 30))


def test_the_cli_creates_a_token_shown_once_lists_without_it_and_revokes(people: Store, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("SESSION_SECRET", S.session_secret)
    from observability.settings import reset_settings_cache

    reset_settings_cache()
    try:
        out, err = io.StringIO(), io.StringIO()
        assert run(["token", "create", "opal", "--name", "chat-ops", "--scope", "analyst", "--days", "7"],
                   store=people, out=out, err=err) == 0, err.getvalue()  # fmt: skip
        token = out.getvalue().strip().splitlines()[-1]
        assert api_tokens.verify_token(people, token, settings=S).scope == "analyst"
        listing = io.StringIO()
        assert run(["token", "list", "opal"], store=people, out=listing) == 0
        assert "chat-ops" in listing.getvalue() and token not in listing.getvalue()
        token_id = listing.getvalue().split()[0]
        assert run(["token", "revoke", token_id], store=people, out=io.StringIO()) == 0
        with pytest.raises(api_tokens.TokenInvalid, match="revoked"):
            api_tokens.verify_token(people, token, settings=S)
        bad = io.StringIO()
        assert run(["token", "create", "opal", "--name", "x", "--scope", "admin"], store=people, out=io.StringIO(),
                   err=bad) == 1  # fmt: skip
        assert "wider than the role" in bad.getvalue()
    finally:
        reset_settings_cache()


def test_the_api_ends_a_token_at_once_when_this_process_revokes_it_or_disables_its_user(
    people: Store,
) -> None:
    settings = S.replace(api_token_cache_s=60.0)  # cached long: only the in-process change can end it now
    client = TestClient(create_app(settings, people))
    revoked = api_tokens.create_token(people, None, "opal", "to revoke", settings=settings).token
    kept = api_tokens.create_token(people, None, "max", "user to disable", settings=settings).token
    for token in (revoked, kept):
        assert client.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    token_id = next(t["id"] for t in api_tokens.list_tokens(people, "opal") if t["name"] == "to revoke")
    api_tokens.revoke_token(people, "opal", token_id, settings=settings)
    r = client.get("/auth/whoami", headers={"Authorization": f"Bearer {revoked}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    auth.update_user(people, "max", disabled=True, by="tests")
    r = client.get("/auth/whoami", headers={"Authorization": f"Bearer {kept}"})
    assert r.status_code == 401 and "disabled" in r.json()["detail"]
