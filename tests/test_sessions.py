"""Console sessions: kept in the store, carried by a signed cookie, ended everywhere at once.

The service is tested directly; the routes through the real ASGI app (`streamlit run app.py`) with
an HTTP client whose cookie jar plays the browser: a reload and a new tab send the same cookie.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from support import ROOT, free_port, subprocess_env, wait_for

from observability import auth
from observability.auth import sessions
from observability.auth.client_ip import client_address
from observability.settings import get_settings
from observability.store import Store, retention, schema
from observability.ui import nav

T0 = datetime(2026, 3, 1, 12, 0, 0)
PASSWORD = "correct-horse-battery"


def test_a_session_resolves_to_its_user_until_idle_or_too_old(sqlite_store: Store) -> None:
    s = get_settings()
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    token = sessions.start(sqlite_store, auth.User("olga", auth.OPERATOR), now=T0)
    assert sessions.resolve(sqlite_store, token, now=T0 + timedelta(minutes=5)).user.name == "olga"
    idle = T0 + timedelta(minutes=5, seconds=s.session_idle_timeout_s + 1)
    assert sessions.resolve(sqlite_store, token, now=idle).reason == sessions.EXPIRED_IDLE
    # used often enough, it still ends at its absolute lifetime
    step = timedelta(seconds=s.session_idle_timeout_s / 2)
    now = T0
    while now < T0 + timedelta(seconds=s.session_lifetime_s) - step:
        now += step
        assert sessions.resolve(sqlite_store, token, now=now).user is not None
    late = T0 + timedelta(seconds=s.session_lifetime_s)
    assert sessions.resolve(sqlite_store, token, now=late).reason == sessions.EXPIRED_LIFETIME
    assert sessions.resolve(sqlite_store, "forged-token", now=T0).user is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda st: auth.reset_password(st, "root", "olga", "n3w-S3cret-pass"), "password reset"),
        (lambda st: auth.disable_user(st, "root", "olga"), "disabled"),
        (lambda st: auth.set_role(st, "root", "olga", auth.ANALYST), "role changed"),
    ],
)
def test_password_reset_disable_and_role_change_end_every_session(
    sqlite_store: Store, change: Callable[[Store], object], reason: str
) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    auth.create_user(sqlite_store, "olga", auth.OPERATOR, PASSWORD)
    tabs = [sessions.start(sqlite_store, auth.User("olga", auth.OPERATOR)) for _ in range(2)]
    change(sqlite_store)
    for token in tabs:
        ended = sessions.resolve(sqlite_store, token)
        assert ended.user is None and ended.reason == sessions.REVOKED[reason]


def test_cookie_values_are_signed(tmp_path: Path) -> None:
    s = get_settings().replace(session_secret=None, session_secret_file=tmp_path / "secret")
    value = sessions.sign("abc", s)
    assert sessions.unsign(value, s) == "abc"
    assert sessions.unsign(value[:-2] + "xx", s) is None
    assert sessions.unsign(value, s.replace(session_secret="another")) is None
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0  # the generated key is private


# ---- through the ASGI app ------------------------------------------------------------------------

DATABASE_URLS: dict[str, str] = {}  # the app's address -> its store (tests change users behind it)


def test_the_retention_step_purges_ended_sessions_and_quiet_throttle_rows_only(store: Store) -> None:
    s = get_settings().replace(sign_in_lockout_s=900.0)
    auth.create_user(store, "olga", auth.OPERATOR, PASSWORD)
    olga = auth.User("olga", auth.OPERATOR)
    signed_out = sessions.start(store, olga, now=T0)
    sessions.end(store, signed_out, now=T0)
    idle = sessions.start(store, olga, now=T0)  # never used again
    live = sessions.start(store, olga, now=T0)
    for _ in range(s.sign_in_max_failures):  # a pair locked from 10.0.0.9, and a failure from 10.0.0.8
        with pytest.raises(auth.AuthError):
            auth.authenticate(store, "olga", "wrong-password", client="10.0.0.9", now=T0, settings=s)
    with pytest.raises(auth.AuthError):
        auth.authenticate(store, "olga", "wrong-password", client="10.0.0.8", now=T0, settings=s)
    later = (
        T0 + timedelta(seconds=s.session_idle_timeout_s) + retention.AUTH_ROWS_GRACE + timedelta(minutes=1)
    )
    used = T0
    while used < later:  # the live session is used all along
        used += timedelta(seconds=s.session_idle_timeout_s / 2)
        assert sessions.resolve(store, live, now=min(used, later)).user == olga
    with store.begin() as conn:  # a lock still in force at `later` (a doubled one) is kept
        conn.execute(sa.update(schema.sign_in_throttle).where(schema.sign_in_throttle.c.locked_until.is_not(None))
                     .values(locked_until=later + timedelta(hours=1)))  # fmt: skip

    def rows(table: sa.Table) -> int:
        with store.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()

    throttle_before = rows(schema.sign_in_throttle)
    report = retention.purge(store, s, later)
    assert report.deleted[schema.sessions.name] == 2
    assert sessions.resolve(store, live, now=later).user == olga
    assert sessions.resolve(store, idle, now=later).user is None
    # kept: the pair whose lock is in force; gone: rows without a lock in force, quiet for a day
    with store.connect() as conn:
        left = conn.execute(sa.select(schema.sign_in_throttle.c.locked_until)).all()
    assert left and all(r.locked_until is not None for r in left)
    assert report.deleted[schema.sign_in_throttle.name] == throttle_before - len(left)
    # nothing left to purge: a second run deletes nothing
    assert retention.purge(store, s, later).total_deleted == 0


def _console(tmp: Path, **env_extra: str) -> Iterator[str]:
    """`streamlit run app.py` on a fresh store with two users; yields its base URL."""
    url = f"sqlite:///{tmp / 'store.db'}"
    store = Store.from_url(url)
    store.migrate()
    auth.create_user(store, "root", auth.ADMIN, PASSWORD)
    auth.create_user(store, "olga", auth.OPERATOR, PASSWORD)
    store.dispose()
    port = free_port()
    env = subprocess_env(
        DATABASE_URL=url, AUTH_MODE="password", SESSION_SECRET_FILE=str(tmp / "secret"), **env_extra
    )
    log = tmp / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port),
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, timeout=120, interval=0.3, message="app.py did not become healthy")
        DATABASE_URLS[f"http://127.0.0.1:{port}"] = url
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console as shipped: no trusted proxy (X-Forwarded-For is not believed)."""
    yield from _console(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def proxied_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console behind a proxy on 127.0.0.1 (TRUSTED_PROXIES): the forwarded address counts."""
    yield from _console(tmp_path_factory.mktemp("proxied"), TRUSTED_PROXIES="127.0.0.0/8")


def _csrf(page: requests.Response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _sign_in(
    browser: requests.Session,
    base: str,
    name: str,
    password: str,
    nxt: str = "/",
    forwarded_for: str | None = None,
) -> requests.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    form = browser.get(f"{base}/auth/sign-in", params={"next": nxt}, headers=headers)
    return browser.post(
        f"{base}/auth/sign-in", params={"next": nxt}, allow_redirects=False, headers=headers,
        data={"csrf": _csrf(form), "username": name, "password": password},
    )  # fmt: skip


def test_a_page_without_a_session_goes_to_the_sign_in_form_keeping_the_link(app_url: str) -> None:
    r = requests.get(
        f"{app_url}/cost_tracking?range=24h", allow_redirects=False, headers={"Accept": "text/html"}
    )
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/sign-in?next=%2Fcost_tracking%3Frange%3D24h")
    form = requests.get(app_url + r.headers["location"])
    assert 'autocomplete="username"' in form.text and 'autocomplete="current-password"' in form.text


def test_sign_in_sets_a_signed_httponly_lax_cookie_that_survives_reloads_and_new_tabs(app_url: str) -> None:
    browser = requests.Session()
    r = _sign_in(browser, app_url, "olga", PASSWORD, "/cost_tracking?range=24h")
    assert r.status_code == 303 and r.headers["location"] == "/cost_tracking?range=24h"
    cookie = r.headers["set-cookie"]
    assert (
        "obs_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    )
    assert "Secure" not in cookie  # plain http on 127.0.0.1; Secure over https
    for _ in range(2):  # a reload, then a new tab: the same cookie, no sign-in form
        page = browser.get(f"{app_url}/cost_tracking", allow_redirects=False)
        assert page.status_code == 200


def test_the_form_refuses_a_post_without_its_csrf_token_and_wrong_passwords(app_url: str) -> None:
    browser = requests.Session()
    r = browser.post(
        f"{app_url}/auth/sign-in", data={"username": "olga", "password": PASSWORD}, allow_redirects=False
    )
    assert r.status_code == 403 and "obs_session" not in r.headers.get("set-cookie", "")
    r = _sign_in(browser, app_url, "olga", "wrong-password")
    assert r.status_code == 401 and auth.SIGN_IN_REFUSED in r.text.replace("&#x27;", "'")


def test_sign_out_ends_the_session_in_every_tab(app_url: str) -> None:
    tab1 = requests.Session()
    assert _sign_in(tab1, app_url, "olga", PASSWORD).status_code == 303
    tab2 = requests.Session()
    tab2.cookies.update(tab1.cookies)  # a second tab shares the browser's cookie
    form = tab1.get(f"{app_url}/auth/sign-out")
    r = tab1.post(f"{app_url}/auth/sign-out", data={"csrf": _csrf(form)}, allow_redirects=False)
    assert r.status_code == 303
    again = tab2.get(f"{app_url}/", allow_redirects=False)
    assert again.status_code == 303 and "reason=You+signed+out" in again.headers["location"]
    # a link from another site cannot sign anyone out: GET only shows the button
    tab3 = requests.Session()
    assert _sign_in(tab3, app_url, "olga", PASSWORD).status_code == 303
    tab3.get(f"{app_url}/auth/sign-out")
    assert tab3.get(f"{app_url}/", allow_redirects=False).status_code == 200


def test_a_password_reset_sends_an_open_session_back_to_sign_in_saying_why(app_url: str) -> None:
    browser = requests.Session()
    assert _sign_in(browser, app_url, "root", PASSWORD).status_code == 303
    store = Store.from_url(DATABASE_URLS[app_url])
    try:
        auth.update_user(store, "root", password="an0ther-S3cret")
    finally:
        store.dispose()
    r = browser.get(f"{app_url}/", allow_redirects=False)
    assert r.status_code == 303 and "password+was+changed" in r.headers["location"]


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(app_url: str) -> None:
    """Without TRUSTED_PROXIES a client cannot dodge the throttle by inventing an address per guess."""
    store = Store.from_url(DATABASE_URLS[app_url])
    try:
        auth.create_user(store, "xff-user", auth.ANALYST, PASSWORD)  # this test's own account
    finally:
        store.dispose()
    limit = get_settings().sign_in_max_failures
    for i in range(limit):
        r = _sign_in(
            requests.Session(), app_url, "xff-user", "wrong-password", forwarded_for=f"198.51.100.{i}"
        )
        assert r.status_code == 401
    r = _sign_in(requests.Session(), app_url, "xff-user", PASSWORD, forwarded_for="198.51.100.99")
    assert r.status_code == 401  # the peer (127.0.0.1) is the client, and it is throttled for this name


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy(proxied_url: str) -> None:
    limit = get_settings().sign_in_max_failures
    for _ in range(limit):  # the proxy appends the client it saw to what the client sent
        r = _sign_in(
            requests.Session(), proxied_url, "root", "wrong-password", forwarded_for="10.9.9.9, 203.0.113.7"
        )
        assert r.status_code == 401
    r = _sign_in(requests.Session(), proxied_url, "root", PASSWORD, forwarded_for="203.0.113.7")
    assert r.status_code == 401  # that client is throttled, whatever it puts in front
    r = _sign_in(requests.Session(), proxied_url, "root", PASSWORD, forwarded_for="203.0.113.8")
    assert r.status_code == 303  # another client behind the same proxy still signs in


def test_the_client_address_is_the_nearest_untrusted_hop() -> None:
    s = get_settings().replace(trusted_proxies=("10.0.0.0/8", "127.0.0.1/32"))
    assert client_address("127.0.0.1", "203.0.113.7, 10.1.1.1", s) == "203.0.113.7"
    assert client_address("127.0.0.1", "198.51.100.1, 203.0.113.7", s) == "203.0.113.7"  # spoofed left part
    assert client_address("192.0.2.5", "203.0.113.7", s) == "192.0.2.5"  # the peer is no proxy of ours
    assert client_address("127.0.0.1", "garbage, 10.1.1.1", s) == "127.0.0.1"
    assert client_address("127.0.0.1", None, s) == "127.0.0.1"
    assert (
        client_address("127.0.0.1", "203.0.113.7", get_settings().replace(trusted_proxies=())) == "127.0.0.1"
    )


def test_the_sign_in_form_has_the_browser_fetch_the_pages_files_while_the_user_types(app_url: str) -> None:
    """The page after sign-in then loads Streamlit's shell and its chart and table code from the
    browser's cache (bench/pages.py: the first visit spent its first second fetching them)."""
    form = requests.get(f"{app_url}/auth/sign-in")
    hrefs = re.findall(r'<link rel="prefetch" href="([^"]+)"', form.text)
    names = {h.rsplit("/", 1)[-1].split(".")[0] for h in hrefs}
    assert {"index", "PlotlyChart", "DataFrame", "Metric"} <= names
    browser = requests.Session()
    assert _sign_in(browser, app_url, "olga", PASSWORD).status_code == 303
    page = browser.get(f"{app_url}/cost_tracking")
    shell = re.findall(r'(?:src|href)="\./(static/[^"]+)"', page.text)
    assert shell and {f"/{s}" for s in shell} <= set(hrefs)  # what the page loads first is prefetched
    for href in hrefs:  # each one served, and kept by the browser (content-hashed, immutable)
        r = browser.get(app_url + href, stream=True)
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"], href
        r.close()


def test_every_page_document_names_the_consoles_address_for_the_front_end(app_url: str) -> None:
    """Each page's document sets Streamlit's BACKEND_BASE_URL once, to its own address's directory
    (the console's base), in a classic inline script in the head (run while the document is
    parsed, so before Streamlit's deferred module reads it): the front end skips probing the
    page's path. The home page (whose address is the base, tried first anyway), the sign-in form
    and the health check are untouched."""
    browser = requests.Session()
    assert _sign_in(browser, app_url, "olga", PASSWORD).status_code == 303
    script = '<script>\nwindow.__streamlit = window.__streamlit || { BACKEND_BASE_URL: new URL(".", location.href).href };'
    for path in [f"/{p}" for p in nav.page_paths() if p]:
        doc = browser.get(f"{app_url}{path}")
        assert doc.status_code == 200 and doc.headers["content-type"].startswith("text/html")
        assert doc.text.count("BACKEND_BASE_URL") == 1 and script in doc.text, path
        assert doc.text.index("BACKEND_BASE_URL") < doc.text.index("</head>")
        assert int(doc.headers["content-length"]) == len(doc.content)
    assert "BACKEND_BASE_URL" not in browser.get(f"{app_url}/").text
    assert "BACKEND_BASE_URL" not in requests.get(f"{app_url}/auth/sign-in").text
    assert "BACKEND_BASE_URL" not in browser.get(f"{app_url}/_stcore/health").text


def test_the_consoles_address_is_added_to_page_documents_under_any_prefix() -> None:
    """Under `server.baseUrlPath` or behind a proxy that strips a prefix, a page's document still
    gets the script (the page is the address's last segment; the script takes the base from the
    address the browser used); the home page, other paths and other responses do not."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from observability.ui import assets

    doc = "<html><head><title>t</title></head><body></body></html>"
    inner = Starlette(routes=[
        Route("/{path:path}", lambda r: PlainTextResponse("x") if r.url.path.endswith(".txt") else HTMLResponse(doc)),
    ])  # fmt: skip
    client = TestClient(assets.DirectConnection(inner, pages=("", "cost_tracking", "llm_calls")))
    for path in ("/cost_tracking", "/console/cost_tracking", "/obs/llm_calls"):
        assert client.get(path).text.count(assets.DIRECT_CONNECTION_SCRIPT.decode()) == 1, path
    for path in ("/", "/console/", "/console", "/cost_tracking/", "/unknown", "/cost_tracking.txt"):
        assert "BACKEND_BASE_URL" not in client.get(path).text, path


def test_chart_pages_documents_start_plotlys_code_early_and_nothing_else_changes(app_url: str) -> None:
    """Streamlit's page document carries the script that imports the Plotly chunk once the page's
    first element is drawn (bench/pages.py: 0.8 s off a first visit to a chart page); it names the
    chart pages of the navigation and a chunk the console serves; other responses are untouched."""
    browser = requests.Session()
    assert _sign_in(browser, app_url, "olga", PASSWORD).status_code == 303
    doc = browser.get(f"{app_url}/token_analytics")
    assert doc.status_code == 200 and doc.headers["content-type"].startswith("text/html")
    found = re.search(
        r'const pages = (\[[^\]]*\]), chunk = "\./(static/js/PlotlyChart\.[\w-]+\.js)"', doc.text
    )
    assert found, "the chart page's document lacks the early chart script"
    pages = json.loads(found.group(1))
    assert pages == list(nav.chart_page_paths())
    assert {"", "token_analytics", "cost_tracking"} <= set(pages) and "llm_calls" not in pages
    assert int(doc.headers["content-length"]) == len(doc.content)
    chunk = browser.get(f"{app_url}/{found.group(2)}", stream=True)
    assert chunk.status_code == 200 and "immutable" in chunk.headers["cache-control"]
    chunk.close()
    assert doc.text.count('<script type="module">') == 1  # added once, in the head
    assert doc.text.index("const pages") < doc.text.index("</head>")
    health = browser.get(f"{app_url}/_stcore/health")
    assert health.status_code == 200 and "const pages" not in health.text
