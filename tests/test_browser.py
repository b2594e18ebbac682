"""The console in a real browser: `streamlit run app.py` on a demo store with password sign-in,
the system Chromium driven by Playwright. Signs in, opens every page of the navigation, checks that
each renders its plotly charts without an error, and saves a screenshot of each page under
tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.demo_data import load_demo
from support import ROOT, free_port, subprocess_env, wait_for

from observability import auth
from observability.settings import test_environment as read_test_environment
from observability.store import Store
from observability.ui import nav

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = str(read_test_environment()["chromium"])
USER, PASSWORD = "browser-admin", "browser-pass-1"
ANALYST_USER = "browser-analyst"
REFUSED_USER = "browser-refused"  # the wrong-password test's own account: USER's failed-sign-in count stays 0
# pages of this project's dashboards: each must show plotly charts on demo data
# pages without charts: what must be drawn before the screenshot (their content comes after the title)
PAGE_CONTENT = {"Alerts and rules": ("tab", "Active alerts")}
CHART_PAGES = {"Overview", "Live monitoring", "Bot health", "AI performance", "Activity feed", "Token analytics",
               "Cost tracking", "Conversation quality"}  # fmt: skip


LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """The system Chromium for this module only: Playwright's sync API runs an event loop on this
    thread, so it is stopped when the module ends instead of living for the whole session (where it
    would break every later test that calls asyncio.run)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator:  # noqa: ANN001
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def start_console(database_url: str, port: int, log: Path) -> subprocess.Popen:
    env = subprocess_env(DATABASE_URL=database_url, AUTH_MODE="password")
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
           "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=120, interval=0.3, message="streamlit did not become healthy")
    except BaseException:
        proc.terminate()
        raise
    return proc


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp / 'store.db'}"
    store = Store.from_url(url)
    store.migrate()
    load_demo(store, hours=12)
    from observability.analytics.conversation_scoring import score_pending
    from observability.timeutil import utcnow

    score_pending(store, utcnow())
    auth.create_user(store, USER, auth.ADMIN, PASSWORD)
    auth.create_user(store, REFUSED_USER, auth.ANALYST, PASSWORD)
    auth.create_user(store, ANALYST_USER, auth.ANALYST, PASSWORD)
    store.dispose()
    port = free_port()
    proc = start_console(url, port, tmp / "streamlit.log")
    STORE_URLS[f"http://127.0.0.1:{port}"] = url
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


STORE_URLS: dict[str, str] = {}  # console address -> its store


def sign_in(page, base: str) -> None:  # noqa: ANN001
    page.goto(base)
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # the role's navigation (a fresh server may first draw its legacy pages/ sidebar for a moment)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=nav.OVERVIEW_TITLE, exact=True).wait_for(
        timeout=30_000
    )


def wait_rendered(page, title: str, charts: bool) -> int:  # noqa: ANN001
    """Wait until the page's title is shown and, for dashboards, its first chart is drawn."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    if charts:
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # let the remaining charts of the run arrive
    return page.locator(".js-plotly-plot").count()


CUT_TEXT = """() => [...document.querySelectorAll(
  "[data-testid='stMetricValue'], [data-testid='stMetricLabel'], [data-testid='stMetricDelta']")]
  .filter(el => [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
  .map(el => el.innerText)"""


def cut_figures(page) -> list[str]:  # noqa: ANN001
    """Metric values, labels and deltas drawn cut off (an ellipsis instead of the figure's end)."""
    return page.evaluate(CUT_TEXT)


def test_sign_in_open_every_page_see_its_charts_and_screenshot_it(console: str, page) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 2400})  # a laptop; the app scrolls inside: show it all
    sign_in(page, console)
    titles = [nav.OVERVIEW_TITLE] + [p.title for p in nav.existing_pages_for_role(auth.ADMIN, ROOT)]
    missing = (CHART_PAGES | set(PAGE_CONTENT)) - set(titles)
    assert not missing, f"the admin's navigation lacks {sorted(missing)}"
    sidebar = page.get_by_test_id("stSidebarNav")
    for title in titles:  # every page is one click away in the sidebar, each exactly once
        assert sidebar.get_by_role("link", name=title, exact=True).count() == 1, f"sidebar link {title!r}"
    assert sidebar.get_by_role("link").count() == len(titles), "the sidebar shows pages beyond the navigation"
    timings, cut = {}, {}
    for title in titles:
        t0 = time.monotonic()
        if title != nav.OVERVIEW_TITLE:
            link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)
            link.click()
            try:  # a click that lands while a live fragment reruns can be dropped: click once more
                page.get_by_role("heading", name=title).first.wait_for(timeout=15_000)
            except Exception:  # noqa: BLE001
                link.click()
        heading = "Overview" if title == nav.OVERVIEW_TITLE else title
        slug = title.lower().replace(" ", "_")
        try:
            charts = wait_rendered(page, heading, title in CHART_PAGES)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"FAILED_{slug}.png"), full_page=True)
            raise
        if title in PAGE_CONTENT:
            role, name = PAGE_CONTENT[title]
            page.get_by_role(role, name=name).first.wait_for(timeout=30_000)
        timings[title] = time.monotonic() - t0
        assert page.get_by_test_id("stException").count() == 0, f"{title} shows an exception"
        if title in CHART_PAGES:
            assert charts >= 1, f"{title} shows no plotly chart"
        assert page.get_by_role("heading", name=heading).first.is_visible(), f"{title} is not the page shown"
        page.screenshot(path=str(ARTIFACTS / f"{slug}.png"), full_page=True)
        cut[title] = cut_figures(page)
    assert not any(cut.values()), f"figures cut off at 1280 px: { {k: v for k, v in cut.items() if v} }"
    (ARTIFACTS / "browser_timings.txt").write_text("".join(f"{k}\t{v:.2f}\n" for k, v in timings.items()))


def test_plotlys_code_starts_early_on_chart_pages_only(console: str, page) -> None:  # noqa: ANN001
    """The page document's early chart script (observability.ui.assets.EarlyChartCode) loads the
    Plotly chunk on the pages drawn with charts and leaves the others alone; the chart then draws
    from the module it loaded, with no error on the page or in the browser's console."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, console)
    plotly_fetched = "performance.getEntriesByType('resource').some(r => r.name.includes('/PlotlyChart.'))"
    page.goto(f"{console}/llm_calls")  # a new document, on a page without charts
    page.get_by_role("heading", name="LLM calls").first.wait_for(timeout=30_000)
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=30_000)  # drawn after its first element
    assert page.evaluate(plotly_fetched) is False
    page.goto(f"{console}/token_analytics?range=24h")
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    assert page.evaluate(plotly_fetched) is True
    assert page.get_by_test_id("stException").count() == 0
    assert errors == []


def test_a_page_opened_by_its_address_connects_without_probing_its_own_path(console: str, page) -> None:  # noqa: ANN001
    """A page other than Overview, opened by its address (a reload, a shared link, the page after
    signing in), connects to the console at once (observability.ui.assets.DirectConnection): the
    front end never asks /<page>/_stcore/... (a 404, then Streamlit's 100 ms retry delay, before
    its WebSocket), the page shown is the one asked for, and moving between pages still works."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, console)
    asked = "performance.getEntriesByType('resource').map(r => new URL(r.name).pathname)"
    page.goto(f"{console}/cost_tracking")
    page.get_by_role("heading", name="Cost tracking").first.wait_for(timeout=30_000)
    paths = page.evaluate(asked)
    assert "/_stcore/health" in paths and "/_stcore/host-config" in paths
    assert not [p for p in paths if p.startswith("/cost_tracking/")], paths
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="LLM calls", exact=True).click()
    page.get_by_role("heading", name="LLM calls").first.wait_for(timeout=30_000)
    assert page.url.split("?")[0] == f"{console}/llm_calls"
    page.reload()
    page.get_by_role("heading", name="LLM calls").first.wait_for(timeout=30_000)
    assert not [p for p in page.evaluate(asked) if p.startswith("/llm_calls/")]
    assert page.get_by_test_id("stException").count() == 0
    assert errors == []


def test_wrong_password_is_refused_in_the_browser(console: str, page) -> None:  # noqa: ANN001
    page.goto(console)
    page.get_by_label("User name").fill(REFUSED_USER)
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Sign-in failed").wait_for(timeout=20_000)
    assert page.get_by_test_id("stSidebarNav").count() == 0


def test_a_shared_link_survives_sign_in(console: str, page) -> None:  # noqa: ANN001
    page.goto(f"{console}/token_analytics?range=7d&by=bot")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Token analytics").first.wait_for(timeout=30_000)
    page.get_by_text("Window 7d").first.wait_for(timeout=30_000)
    assert "range=7d" in page.url


def test_a_chart_tab_opens_on_a_click_and_a_link_to_it_opens_it_again(console: str, page) -> None:  # noqa: ANN001
    """Token analytics draws only the open tab's charts; a click on a tab puts it in the URL and
    draws its charts instead, and that URL, shared, opens the same tab."""
    from playwright.sync_api import expect

    sign_in(page, console)
    page.goto(f"{console}/token_analytics?range=24h")
    charts = page.locator(".js-plotly-plot")
    expect(charts.filter(has_text="over time")).to_have_count(1, timeout=30_000)  # "Over time": one chart
    page.get_by_role("tab", name="Cache").click()
    page.wait_for_url("**tab=Cache**", timeout=30_000)
    expect(charts.filter(has_text="hit rate by model")).to_have_count(1, timeout=30_000)
    expect(charts).to_have_count(2, timeout=30_000)  # the cache tab's two, not the first tab's
    shared = page.url
    page.goto("about:blank")
    page.goto(shared)
    expect(page.get_by_role("tab", name="Cache")).to_have_attribute("aria-selected", "true", timeout=30_000)
    expect(charts.filter(has_text="hit rate by model")).to_have_count(1, timeout=30_000)
    assert page.get_by_test_id("stException").count() == 0


def test_a_filter_picked_on_one_page_does_not_filter_the_next_one(console: str, page) -> None:  # noqa: ANN001
    """A bot picked on Conversations stays while the operator works there; Cost tracking, opened from
    the sidebar, shows every bot's spend, as it does when the same bot arrived in a link."""
    import re

    from playwright.sync_api import expect

    sign_in(page, console)
    page.goto(f"{console}/conversations")
    bots = page.get_by_role("combobox", name="Bots")
    bots.click()
    page.get_by_role("option", name="lead_bot").click()
    page.keyboard.press("Escape")
    page.wait_for_url("**bot=lead_bot**", timeout=30_000)
    page.get_by_test_id("stCheckbox").filter(
        has_text="Active now"
    ).click()  # another rerun of the page: the bot stays
    page.wait_for_url("**active=1**", timeout=30_000)
    assert "bot=lead_bot" in page.url
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Cost tracking", exact=True).click()
    page.get_by_role("heading", name="Cost tracking").first.wait_for(timeout=30_000)
    expect(page.get_by_role("combobox", name="Bots")).to_be_visible(timeout=30_000)
    assert page.get_by_test_id("stMultiSelect").filter(has_text="lead_bot").count() == 0, "lead_bot followed"
    assert not re.search(r"[?&]bot=", page.url), page.url


def test_a_page_left_with_filters_opens_from_a_link_or_the_sidebar_with_only_theirs(
    console: str,
    page,  # noqa: ANN001
) -> None:
    """LLM calls, left listing failed calls, came back from Overview's "Slowest calls" link (range and
    sort only) still filtered to failed calls, and from the sidebar too: its widgets kept their values
    for the session. Each entry now starts from the URL it is opened with."""
    import re

    from playwright.sync_api import expect

    sign_in(page, console)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="LLM calls", exact=True).click()
    page.get_by_role("heading", name="LLM calls").first.wait_for(timeout=30_000)
    status = page.get_by_test_id("stButtonGroup").filter(has_text="error")
    status.get_by_role("radio", name="error").click()
    page.wait_for_url("**status=error**", timeout=30_000)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Overview", exact=True).click()
    slowest = page.get_by_role("link", name="Slowest calls")
    slowest.wait_for(timeout=30_000)
    slowest.click()
    page.wait_for_url("**sort=slowest**", timeout=30_000)
    page.get_by_role("heading", name="LLM calls").first.wait_for(timeout=30_000)
    expect(page.get_by_text("· slowest first").first).to_be_visible(timeout=30_000)  # calls of every status
    assert "status=error" not in page.url and "range=1h" in page.url, page.url
    expect(status.get_by_role("radio", name="error")).to_have_attribute("aria-checked", "false")

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Overview", exact=True).click()
    page.get_by_role("link", name="Slowest calls").wait_for(timeout=30_000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="LLM calls", exact=True).click()
    page.get_by_role("heading", name="LLM calls").first.wait_for(timeout=30_000)
    expect(page.get_by_text("· newest first").first).to_be_visible(timeout=30_000)
    assert not re.search(r"[?&](status|sort|range)=", page.url), page.url
    assert page.get_by_test_id("stException").count() == 0


def test_names_bots_sent_show_as_text_in_links_to_other_pages(console: str, page) -> None:  # noqa: ANN001
    """The link to a conversation's account drew the account's name as markdown: bold, a link whose
    address vanished, a red badge. Links to other pages now show the names as sent."""
    import uuid

    from observability import events as ev
    from observability.settings import Settings
    from observability.store.ingest import write_batch

    hostile = "**Acme** [evil](http://127.0.0.1:9/x) :red[VIP] <b>b</b>"
    store = Store.from_url(STORE_URLS[console])
    settings = Settings().replace(database_url=STORE_URLS[console], redis_url=None)
    write_batch(store, [ev.account("acct-hostile", time.time() - 60, name=hostile, vip=True),
                        ev.message(uuid.uuid4().hex, time.time() - 30, conversation_id="conv-hostile-1", role="user",
                                   text="hello", bot="lead_bot", account_id="acct-hostile")], settings)  # fmt: skip
    store.dispose()
    sign_in(page, console)
    page.goto(f"{console}/conversations?conversation=conv-hostile-1")
    link = page.get_by_role("link", name="all its conversations")
    link.wait_for(timeout=30_000)
    assert hostile in link.inner_text(), link.inner_text()
    assert page.locator('a[href*="127.0.0.1:9"]').count() == 0
    assert page.get_by_test_id("stException").count() == 0


def test_a_console_page_asks_nothing_of_any_other_host(console: str, page) -> None:  # noqa: ANN001
    """Every page load fetched the tab's icon from fonts.gstatic.com (a Material Symbols icon): lost
    offline or behind a firewall, and a request about the console to a third party."""
    from urllib.parse import urlparse

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    sign_in(page, console)
    page.goto(f"{console}/alerts")
    page.get_by_role("heading", name="Alerts").first.wait_for(timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('link[rel~=icon]')].some(l => l.href)")
    icons = page.eval_on_selector_all("link[rel~=icon]", "ls => ls.map(l => l.href)")
    assert icons and all(urlparse(i).hostname == "127.0.0.1" for i in icons), icons
    others = sorted({u for u in asked if urlparse(u).scheme in ("http", "https")
                     and urlparse(u).hostname != "127.0.0.1"})  # fmt: skip
    assert others == [], others


def test_a_page_the_role_may_not_open_says_so_when_its_url_is_asked_for(console: str, page) -> None:  # noqa: ANN001
    """An analyst following a link to Emergency controls is told the role may not open it (it was
    Streamlit's "Page not found" and Overview); the page is still not in the analyst's navigation."""
    page.goto(f"{console}/emergency")
    page.get_by_label("User name").fill(ANALYST_USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("You don't have permission to open this page").wait_for(timeout=30_000)
    assert "/emergency" in page.url
    assert page.get_by_text("Page not found").count() == 0
    assert page.get_by_role("button").filter(has_text="Stop").count() == 0
    nav_links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    assert "Emergency controls" not in nav_links.all_inner_texts()


def test_a_tab_left_open_stops_showing_data_once_its_session_ends_in_another_tab(
    console: str,
    browser,  # noqa: ANN001
) -> None:
    """The live parts of a page rerun by themselves every 15 s: they check the session on each run,
    so a tab left open after sign-out in another tab (or a disable, a password reset) shows the
    sign-in instead of new data (it went on showing new messages)."""
    from observability.ui.common import LIVE_REFRESH_S

    context = browser.new_context()
    try:
        left_open, other = context.new_page(), context.new_page()
        left_open.goto(console)
        left_open.get_by_label("User name").fill(ANALYST_USER)
        left_open.get_by_label("Password", exact=True).fill(PASSWORD)
        left_open.get_by_role("button", name="Sign in").click()
        left_open.get_by_role("heading", name=nav.OVERVIEW_TITLE).first.wait_for(timeout=30_000)
        other.goto(f"{console}/auth/sign-out")  # the same browser: the same session cookie
        other.get_by_role("button", name="Sign out").click()
        other.wait_for_url("**/auth/sign-in**", timeout=30_000)
        # no reload of the open tab: its next live refresh notices
        try:
            left_open.get_by_text("Signed out: You signed out").wait_for(
                timeout=(LIVE_REFRESH_S * 2 + 15) * 1000
            )
        except Exception as exc:  # say what the tab shows instead
            raise AssertionError(f"the tab left open shows: {left_open.inner_text('body')[:800]!r}") from exc
        assert left_open.get_by_role("heading", name=nav.OVERVIEW_TITLE).count() == 0
    finally:
        context.close()


def test_an_open_page_says_when_the_worker_stops_and_stops_saying_it_once_it_runs(console: str, page) -> None:  # noqa: ANN001
    """The worker's warning is a live part of every page: a tab left open sees the worker stop and
    start again without a reload (it was drawn only on a full page run). On Emergency, where an
    operator waits during an incident: on Overview its refresh queues behind six other live parts,
    which on a loaded CI machine outlasted the wait once."""
    from datetime import timedelta

    from observability.settings import Settings
    from observability.timeutil import utcnow
    from observability.ui.common import LIVE_REFRESH_S
    from observability.worker import runner, steps

    wait_ms = (LIVE_REFRESH_S * 6 + 30) * 1000  # its refresh, behind the 15 s query cache, on a loaded CI
    store = Store.from_url(STORE_URLS[console])
    heartbeat = [s for s in steps.STEPS if s.name == "heartbeat"]
    worker = runner.Worker(store, Settings.from_env({"DATABASE_URL": STORE_URLS[console]}), steps=heartbeat,
                           worker_id="browser-test-worker")  # fmt: skip
    try:
        assert worker.tick(now=utcnow() - timedelta(minutes=10)) == {"heartbeat": "ok"}  # stopped 10 min ago
        sign_in(page, console)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Emergency controls", exact=True).click()
        page.get_by_role("heading", name="Emergency controls").first.wait_for(timeout=30_000)
        page.get_by_text("The worker has not run for").first.wait_for(timeout=wait_ms)
        page.evaluate("window.leftOpen = true")  # gone if the page were reloaded
        # it runs again, ticking as a worker does, until the open tab's refreshes clear the warning
        # (a single tick grows older than the limit before a loaded machine's refresh reads it)
        running = threading.Event()

        def ticking() -> None:
            while not running.wait(2.0):
                worker.tick()

        ticker = threading.Thread(target=ticking, daemon=True)
        assert worker.tick() == {"heartbeat": "ok"}
        ticker.start()
        try:
            page.get_by_text("The worker has not run for").first.wait_for(state="detached", timeout=wait_ms)
        finally:
            running.set()
            ticker.join(timeout=30)
        assert page.evaluate("window.leftOpen === true"), "cleared in the open tab, without a reload"
    finally:
        worker.close()
        store.dispose()
