"""Admin → API tokens: an admin creates a token for a user (shown once, on the page), it works
against the API, the list never shows it, and revoking it from the page ends it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from observability import auth
from observability.auth import api_tokens
from observability.settings import get_settings, reset_settings_cache
from observability.store import Store
from observability.ui import common

ROOT = Path(__file__).resolve().parent.parent
PW = "a-long-password"


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.setenv("SESSION_SECRET", "admin-page-" + "s" * 30)
    monkeypatch.delenv("REDIS_URL", raising=False)
    reset_settings_cache()
    common.clear_caches()
    store = Store.from_url(url)
    store.migrate()
    auth.create_user(store, "admin", auth.ADMIN, PW)
    auth.create_user(store, "olga", auth.OPERATOR, PW)
    yield store
    store.dispose()
    reset_settings_cache()
    common.clear_caches()


def _button(at: AppTest, label: str):  # noqa: ANN202
    return next(b for b in at.button if b.label == label)


def test_admin_creates_a_token_shown_once_and_revokes_it(console: Store) -> None:
    at = AppTest.from_file(str(ROOT / "pages/admin.py"), default_timeout=60)
    at.session_state["user"] = auth.User("admin", auth.ADMIN)
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="ad_tok_user").set_value("olga")
    at.text_input(key="ad_tok_name").set_value("help desk")
    at.selectbox(key="ad_tok_scope").set_value("analyst")
    next(b for b in at.button if "Create token" in b.label).click().run()
    assert not at.exception, at.exception
    token = at.code[-1].value
    principal = api_tokens.verify_token(console, token, settings=get_settings())
    assert (principal.user, principal.scope) == ("olga", "analyst")
    at.run()  # shown once only
    assert all(c.value != token for c in at.code)
    shown = "".join(df.value.to_csv() for df in at.dataframe)
    assert "help desk" in shown and token not in shown
    _button(at, "Revoke token").click().run()
    assert not at.exception, at.exception
    with pytest.raises(api_tokens.TokenInvalid, match="revoked"):
        api_tokens.verify_token(console, token, settings=get_settings())
