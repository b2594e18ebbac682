"""Single sign-on with OpenID Connect: identities become console users with mapped roles, and a real
provider signs people in through `st.login` into the ordinary console session.

The service (`auth.oidc`) is tested on the store directly. End to end, the fixture starts panva's
`oidc-provider` (tests/oidc, pinned; `npm ci` only when its node_modules are missing) on 127.0.0.1
and the console (`streamlit run app.py`) with an [auth] secrets file pointing at it; the system
Chromium signs in through the provider's login form. Skips without node/npm or Chromium, except
under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
from support import ROOT, free_port, subprocess_env, wait_for

from observability import auth
from observability.auth import oidc, sessions
from observability.settings import get_settings
from observability.settings import test_environment as read_test_environment
from observability.store import Store

T0 = datetime(2026, 3, 1, 12, 0, 0)
ROLE_MAP = "ops-admins=admin,ops-oncall=operator"
CONSOLE_SECRET = "sso-test-console-secret-0123456789"  # the console's SESSION_SECRET in the e2e tests
SETTINGS = get_settings().replace(
    oidc_enabled=True, oidc_role_map={"ops-admins": "admin", "ops-oncall": "operator"}
)
OIDC_DIR = ROOT / "tests" / "oidc"
TEST_ENV = read_test_environment()
CHROMIUM = str(TEST_ENV["chromium"])


def _claims(sub: str, email: str | None = None, groups: list[str] | None = None, **extra: object) -> dict:
    claims: dict = {"sub": sub, "email_verified": True, **extra}
    if email:
        claims["email"] = email
    if groups is not None:
        claims["groups"] = groups
    return claims


# ---- the service ------------------------------------------------------------------------------


def test_the_role_comes_from_the_mapped_claim_highest_wins_default_analyst() -> None:
    assert oidc.role_from_claims({"groups": ["staff", "ops-oncall"]}, SETTINGS) == auth.OPERATOR
    assert oidc.role_from_claims({"groups": ["ops-oncall", "ops-admins"]}, SETTINGS) == auth.ADMIN
    assert oidc.role_from_claims({"groups": "ops-oncall staff"}, SETTINGS) == auth.OPERATOR
    assert oidc.role_from_claims({"groups": ["staff"]}, SETTINGS) == auth.ANALYST
    assert oidc.role_from_claims({}, SETTINGS) == auth.ANALYST
    roles = SETTINGS.replace(oidc_role_claim="roles", oidc_role_map={"console-manager": "manager"})
    assert (
        oidc.role_from_claims({"roles": ["console-manager"], "groups": ["ops-admins"]}, roles) == auth.MANAGER
    )


def test_role_settings_refuse_unknown_roles_and_bad_pairs() -> None:
    env = {"OIDC_ROLE_MAP": ROLE_MAP, "TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}
    s = type(SETTINGS).from_env(env)
    assert s.oidc_role_map == {"ops-admins": "admin", "ops-oncall": "operator"}
    assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32")
    with pytest.raises(ValueError, match="OIDC roles must be one of"):
        type(SETTINGS).from_env({"OIDC_ROLE_MAP": "ops=root"})
    with pytest.raises(ValueError, match="not group=role"):
        type(SETTINGS).from_env({"OIDC_ROLE_MAP": "ops-admins"})
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        type(SETTINGS).from_env({"TRUSTED_PROXIES": "proxy.example"})


def test_a_new_identity_becomes_a_user_without_a_password_then_is_matched_by_subject(
    sqlite_store: Store,
) -> None:
    user = oidc.sign_in_oidc(
        sqlite_store, _claims("sub-1", "Carol@Example.test", ["ops-oncall"]), settings=SETTINGS, now=T0
    )
    assert user == auth.User("carol@example.test", auth.OPERATOR)
    with pytest.raises(auth.AuthError):  # no password works for an SSO user
        auth.authenticate(sqlite_store, user.name, oidc.NO_PASSWORD, client="10.0.0.1")
    # the same subject with a new address and new groups: the same user, the role follows the provider
    again = oidc.sign_in_oidc(
        sqlite_store, _claims("sub-1", "carol@new.test", ["ops-admins"]), settings=SETTINGS, now=T0
    )
    assert again == auth.User("carol@example.test", auth.ADMIN)
    assert [u.name for u in auth.list_users(sqlite_store)] == ["carol@example.test"]


def test_an_existing_user_is_linked_by_verified_email_and_a_role_change_ends_their_sessions(
    sqlite_store: Store,
) -> None:
    auth.create_user(sqlite_store, "dave@example.test", auth.ADMIN, "a-long-password")
    auth.create_user(sqlite_store, "erin", auth.ADMIN, "a-long-password")
    token = sessions.start(sqlite_store, auth.User("dave@example.test", auth.ADMIN), now=T0)
    unverified = _claims("sub-2", "dave@example.test", ["ops-oncall"], email_verified=False)
    assert oidc.sign_in_oidc(sqlite_store, unverified, settings=SETTINGS, now=T0).name != "dave@example.test"
    user = oidc.sign_in_oidc(
        sqlite_store, _claims("sub-3", "DAVE@example.test", ["ops-oncall"]), settings=SETTINGS, now=T0
    )
    assert user == auth.User("dave@example.test", auth.OPERATOR)
    assert sessions.resolve(sqlite_store, token, now=T0).reason == sessions.REVOKED["role changed"]
    # linked: the subject now finds the user even without an e-mail claim
    assert oidc.sign_in_oidc(
        sqlite_store, _claims("sub-3", None, ["ops-oncall"]), settings=SETTINGS, now=T0
    ).name == ("dave@example.test")


def test_a_disabled_user_and_an_identity_without_subject_are_refused(sqlite_store: Store) -> None:
    oidc.sign_in_oidc(sqlite_store, _claims("sub-4", "fred@example.test", []), settings=SETTINGS, now=T0)
    auth.create_user(sqlite_store, "root", auth.ADMIN, "a-long-password")
    auth.update_user(sqlite_store, "fred@example.test", disabled=True)
    with pytest.raises(auth.AuthError):
        oidc.sign_in_oidc(sqlite_store, _claims("sub-4", "fred@example.test", []), settings=SETTINGS, now=T0)
    with pytest.raises(auth.AuthError):
        oidc.sign_in_oidc(sqlite_store, {"email": "x@example.test"}, settings=SETTINGS, now=T0)
    assert auth.get_user(sqlite_store, "fred@example.test").disabled


def test_the_last_admin_is_not_demoted_by_a_claim(sqlite_store: Store) -> None:
    first = oidc.sign_in_oidc(
        sqlite_store, _claims("sub-5", "gina@example.test", ["ops-admins"]), settings=SETTINGS
    )
    assert first.role == auth.ADMIN
    kept = oidc.sign_in_oidc(sqlite_store, _claims("sub-5", "gina@example.test", []), settings=SETTINGS)
    assert kept.role == auth.ADMIN  # nobody else could manage users


def test_password_sign_in_switched_off_refuses_every_password_while_oidc_is_on(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, "a-long-password")
    off = SETTINGS.replace(password_sign_in=False)
    with pytest.raises(auth.AuthError, match="switched off"):
        auth.authenticate(sqlite_store, "root", "a-long-password", client="10.0.0.1", settings=off)
    # the switch needs OIDC on: without it nobody could sign in at all
    no_oidc = off.replace(oidc_enabled=False)
    assert (
        auth.authenticate(sqlite_store, "root", "a-long-password", client="10.0.0.1", settings=no_oidc).name
        == "root"
    )


def test_a_ticket_works_only_with_its_identity_cookie_and_only_briefly() -> None:
    ticket = oidc.issue_ticket(auth.User("hana", auth.ANALYST), "identity-cookie-value")
    assert oidc.redeem_ticket(ticket, "identity-cookie-value") == "hana"
    assert oidc.redeem_ticket(ticket, "another-browser") is None
    assert oidc.redeem_ticket(ticket, None) is None
    assert oidc.redeem_ticket(ticket + "x", "identity-cookie-value") is None
    assert oidc.redeem_ticket(ticket, "identity-cookie-value", max_age=-1) is None


# ---- end to end: a real provider, the console, the system Chromium ------------------------------


def _need(what: str, present: bool) -> None:
    if not present:
        if TEST_ENV["require_services"]:
            pytest.fail(f"{what} is required (REQUIRE_SERVICES=1)")
        pytest.skip(f"{what} is missing")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _up(proc: subprocess.Popen, log: Path, url: str) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def provider_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """panva's oidc-provider on 127.0.0.1; yields (provider port, console port it redirects to)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    _need("node and npm", bool(node and npm))
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
    port, console_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    env = subprocess_env(PORT=str(port), REDIRECT_URI=f"http://127.0.0.1:{console_port}/oauth2callback")
    proc = subprocess.Popen(
        [node, "provider.js"], cwd=OIDC_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        discovery = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
        wait_for(
            lambda: _up(proc, log, discovery), timeout=30, interval=0.2, message="oidc-provider did not start"
        )
        yield port, console_port
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def sso_console(provider_port: tuple[int, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console with single sign-on on and password sign-in off, its [auth] pointing at the provider."""
    _need(f"Chromium at {CHROMIUM}", Path(CHROMIUM).exists())
    port, console_port = provider_port
    tmp = tmp_path_factory.mktemp("sso-console")
    url = f"sqlite:///{tmp / 'store.db'}"
    store = Store.from_url(url)
    store.migrate()
    auth.create_user(store, "root", auth.ADMIN, "a-long-password")  # password users cannot sign in here
    store.dispose()
    secrets = tmp / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{console_port}/oauth2callback"\n'
        'cookie_secret = "test-cookie-secret-0123456789abcdef"\n'
        'client_id = "console"\nclient_secret = "console-test-secret"\n'
        f'server_metadata_url = "http://127.0.0.1:{port}/.well-known/openid-configuration"\n'
        'client_kwargs = { scope = "openid email profile groups", prompt = "login" }\n'
    )
    env = subprocess_env(
        DATABASE_URL=url, AUTH_MODE="password", SESSION_SECRET=CONSOLE_SECRET, OIDC_ENABLED="1",
        OIDC_ROLE_MAP=ROLE_MAP, PASSWORD_SIGN_IN="0",
    )  # fmt: skip
    log = tmp / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(console_port), "--secrets.files", str(secrets),
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{console_port}"
    try:
        wait_for(lambda: _up(proc, log, f"{base}/_stcore/health"), timeout=120, interval=0.3,
                 message="app.py did not become healthy")  # fmt: skip
        yield base
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    _need(f"Chromium at {CHROMIUM}", Path(CHROMIUM).exists())
    from playwright.sync_api import sync_playwright
    from test_browser import LAUNCH_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _sso_sign_in(page, base: str, login: str, nxt: str = "/") -> None:  # noqa: ANN001
    page.goto(f"{base}{nxt}")
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.locator('input[name="login"]').fill(login)  # the provider's own form, on its own port
    page.locator('input[name="password"]').fill("any-password")
    page.get_by_role("button", name="Sign-in").click()


def _signed_in_as(page, text: str) -> None:  # noqa: ANN001
    page.get_by_test_id("stSidebar").get_by_text(text).wait_for(timeout=60_000)


def _nav(page):  # noqa: ANN001, ANN202
    return page.get_by_test_id("stSidebarNav")


def test_sso_signs_in_through_the_provider_to_the_pages_of_the_mapped_role(sso_console: str, browser) -> None:  # noqa: ANN001
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(sso_console)
        assert page.get_by_label("Password", exact=True).count() == 0  # password sign-in is switched off
        _sso_sign_in(page, sso_console, "alice", nxt="/cost_tracking")
        _signed_in_as(page, "(admin)")
        assert "/cost_tracking" in page.url  # the page asked for before signing in
        _nav(page).get_by_role("link", name="Admin", exact=True).wait_for(timeout=30_000)
        cookie = {c["name"]: c for c in context.cookies()}[sessions.COOKIE_NAME]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        # the console's own session: a new tab is signed in without the provider
        tab = context.new_page()
        tab.goto(f"{sso_console}/")
        _signed_in_as(tab, "(admin)")
        # sign-out ends it in every tab, and does not sign straight back in through the provider
        page.goto(f"{sso_console}/auth/sign-out")
        page.get_by_role("button", name="Sign out").click()
        page.get_by_text("You signed out.").wait_for(timeout=30_000)
        tab.reload()
        tab.get_by_role("button", name="Sign in with single sign-on").wait_for(timeout=30_000)
        assert not any(c["name"].startswith("_streamlit_user") for c in context.cookies())
    finally:
        context.close()


def test_the_second_account_lands_on_another_roles_pages(sso_console: str, browser) -> None:  # noqa: ANN001
    context = browser.new_context()
    try:
        page = context.new_page()
        _sso_sign_in(page, sso_console, "bob")
        _signed_in_as(page, "(operator)")
        _nav(page).get_by_role("link", name="Emergency controls", exact=True).wait_for(timeout=30_000)
        assert _nav(page).get_by_role("link", name="Admin", exact=True).count() == 0
        assert page.get_by_test_id("stSidebar").get_by_text("bob@example.test").count() == 1
    finally:
        context.close()


def test_the_complete_route_refuses_a_ticket_without_its_browser(sso_console: str) -> None:
    console = get_settings().replace(session_secret=CONSOLE_SECRET)
    ticket = oidc.issue_ticket(auth.User("root", auth.ADMIN), "the-real-browsers-cookie", console)
    url = f"{sso_console}/auth/oidc/complete"
    r = requests.get(url, params={"ticket": ticket}, allow_redirects=False,
                     cookies={oidc.IDENTITY_COOKIE: "another-browser"})  # fmt: skip
    assert r.status_code == 401 and sessions.COOKIE_NAME not in r.headers.get("set-cookie", "")
    r = requests.get(url, params={"ticket": ticket}, allow_redirects=False,
                     cookies={oidc.IDENTITY_COOKIE: "the-real-browsers-cookie"})  # fmt: skip
    assert r.status_code == 303 and sessions.COOKIE_NAME in r.headers["set-cookie"]
    # with password sign-in switched off the form's POST signs nobody in
    r = requests.post(f"{sso_console}/auth/sign-in", data={"username": "root", "password": "a-long-password"},
                      allow_redirects=False)  # fmt: skip
    assert r.status_code == 403 and sessions.COOKIE_NAME not in r.headers.get("set-cookie", "")
