"""Page benchmark: each console page's full server-side run (Streamlit AppTest) cold and warm, and
the browser's time to a rendered page, on the PostgreSQL bench store of bench/queries.py.

    .venv/bin/python bench/pages.py                                   # the obs_bench store
    .venv/bin/python bench/pages.py --database-url postgresql+psycopg://...
    .venv/bin/python bench/pages.py --build-hours 48                  # no bench store: a smaller one

cold_s: one run right after every cached query result was dropped (st.cache_data cleared; the
process, its imports, the store's connection pool and the services' own in-process caches are warm,
as in a running console after its first visitor). cold_all_caches_s: the same with the services'
caches dropped too (the agent cost report's per-hour moments), as for the first visitor after a
restart.
warm_s: the median of --repeat runs with the caches filled (what every other visitor within the
15 s TTL gets). Targets: cold <= 1.5 s, warm <= 0.3 s.

In the system Chromium (`--no-browser` to skip; `time_browser`), per page on a console started for
it (`streamlit run app.py`, password sign-in as in production): sign_in_form_s (asking for the page
on a freshly started server until the sign-in form is drawn), browser_first_s (from the sign-in's
answer to the page's first usable content: its heading, then its first chart, table or empty
state; the first page run after the server started), browser_warm_s (median of 3 later loads of
the page, each a new session: a reload, Streamlit's front end started again). Targets: first <=
2.5 s, warm <= 1 s. Beside them, browser_nav_s: the median of 3 visits to the page from another
page through the sidebar, as a signed-in user moves between pages (the front end and its session
stay; the page's caches are warm), and browser_returning_first_s: the first visit after the console
restarts, by a browser that has used it before (its cookies cleared: it signs in again), which
holds Streamlit's content-hashed files and their compiled code; browser_first_s is a browser that
never has.

Writes bench/results/pages.json: {"pages": {name: {"cold_s", "warm_s", "sign_in_form_s",
"browser_first_s", "browser_warm_s", ...}}, ...}.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from benchlib import machine_facts, measured_at, write_results  # noqa: E402

from observability.settings import test_environment  # noqa: E402

PAGES = {
    "overview": "Home.py",
    "live_monitoring": "pages/live_monitoring.py",
    "bot_health": "pages/bot_health.py",
    "ai_performance": "pages/ai_performance.py",
    "activity_feed": "pages/activity_feed.py",
    "token_analytics": "pages/token_analytics.py",
    "cost_tracking": "pages/cost_tracking.py",
    "conversation_quality": "pages/conversation_quality.py",
    "conversations": "pages/conversations.py",
    "llm_calls": "pages/llm_calls.py",
    "alerts": "pages/alerts.py",
}
TITLES = {
    "overview": "Overview", "live_monitoring": "Live monitoring", "bot_health": "Bot health",
    "ai_performance": "AI performance", "activity_feed": "Activity feed", "token_analytics": "Token analytics",
    "cost_tracking": "Cost tracking", "conversation_quality": "Conversation quality", "conversations": "Conversations",
    "llm_calls": "LLM calls", "alerts": "Alerts and rules",
}  # fmt: skip
TARGET_COLD_S, TARGET_WARM_S = 1.5, 0.3
TARGET_FIRST_S, TARGET_BROWSER_WARM_S = 2.5, 1.0  # browser: first visit after the server starts; warm page
BENCH_USER, BENCH_PASSWORD = "bench-pages", "bench-pages-password-1"
# first usable content, after the page's heading: a chart, a table or an empty state (Alerts: its counts)
USABLE = ".js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stAlertContentInfo']"
USABLE_ON = {"alerts": "[data-testid='stMetric']"}
# an element of this run, not one the previous page left on screen (faded) until replaced
CURRENT = "[data-testid='stElementContainer']:not([data-stale='true'])"
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "obs_bench"
SMALL_DB = "obs_pages_bench"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def bench_queries_url() -> str | None:
    """The store bench/queries.py loads, if that benchmark names one."""
    path = ROOT / "bench" / "queries.py"
    if not path.is_file():
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_queries", path)
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - its defaults are a convenience only
        return None
    for name in ("DEFAULT_DATABASE_URL", "BENCH_DATABASE_URL", "DATABASE_URL", "DEFAULT_URL"):
        value = getattr(mod, name, None)
        if isinstance(value, str) and value.startswith("postgres"):
            return value
    return None


def server_url(url: str, database: str) -> str:
    return sa.make_url(url).set(database=database).render_as_string(hide_password=False)


def database_exists(url: str) -> bool:
    u = sa.make_url(url)
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            return bool(
                c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}).scalar()
            )
    except sa.exc.OperationalError:
        return False
    finally:
        admin.dispose()


def build_small(url: str, hours: float) -> None:
    """A smaller bench store: a fresh database with `hours` of simulator traffic, rolled up."""
    u = sa.make_url(url)
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{u.database}"'))
    admin.dispose()
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "observability.simulate", "--backfill-hours", str(hours), "--database-url",
                    url], cwd=ROOT, env=env, check=True)  # fmt: skip
    from observability.store import Store, rollups

    store = Store.from_url(url)
    while rollups.run(store):
        pass
    try:
        from observability.analytics.conversation_scoring import score_pending
        from observability.timeutil import utcnow

        while score_pending(store, utcnow()):
            pass
    except ImportError:
        pass
    store.dispose()
    print(
        f"built {url.rsplit('/', 1)[-1]} with {hours} h of demo traffic in {time.perf_counter() - t0:.0f} s"
    )


def store_facts(url: str) -> dict:
    from observability.store import Store

    store = Store.from_url(url)
    with store.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'llm_calls'")
        ).scalar()
        if rows is None or rows < 0:  # never analysed: count (small stores only get here)
            rows = conn.execute(sa.text("SELECT count(*) FROM llm_calls")).scalar()
        span = conn.execute(sa.text("SELECT min(ts), max(ts) FROM llm_calls")).one()
    store.dispose()
    return {"llm_calls_rows_estimate": int(rows or 0), "first_ts": str(span[0]), "last_ts": str(span[1])}


def time_pages(url: str, names: list[str], repeat: int) -> dict[str, dict[str, float]]:
    os.environ["DATABASE_URL"] = url
    os.environ["AUTH_MODE"] = "none"
    from streamlit.testing.v1 import AppTest

    from observability.settings import reset_settings_cache
    from observability.ui import common

    reset_settings_cache()

    def run(path: str) -> float:
        at = AppTest.from_file(str(ROOT / path), default_timeout=120)
        t0 = time.perf_counter()
        at.run()
        dt = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"{path}: {at.exception[0].message}")
        return dt

    for path in PAGES.values():  # imports (plotly, scikit-learn...) and the connection pool, not counted
        run(path)
    out = {}
    for name in names:
        clear_service_caches()
        common.clear_caches()
        cold_all = run(PAGES[name])
        common.clear_caches()
        cold = run(PAGES[name])
        warm = statistics.median(run(PAGES[name]) for _ in range(repeat))
        out[name] = {
            "cold_s": round(cold, 3),
            "warm_s": round(warm, 3),
            "cold_all_caches_s": round(cold_all, 3),
        }
        flag = "" if cold <= TARGET_COLD_S and warm <= TARGET_WARM_S else "  (over target)"
        print(f"{name:22s} cold {cold:6.3f} s   warm {warm:6.3f} s   (cold incl. service caches {cold_all:6.3f} s){flag}",
              flush=True)  # fmt: skip
    return out


def clear_service_caches() -> None:
    """The analytics services' own in-process caches (merged rollup sketches), as after a restart."""
    from observability.analytics.window import clear_sketch_cache

    clear_sketch_cache()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_bench_user(url: str) -> None:
    """An admin the browser signs in as (the console runs with password sign-in, as in production)."""
    from observability import auth
    from observability.store import Store

    store = Store.from_url(url)
    try:
        if auth.get_user(store, BENCH_USER) is None:
            auth.create_user(store, BENCH_USER, auth.ADMIN, BENCH_PASSWORD, by="bench")
        else:
            auth.update_user(store, BENCH_USER, password=BENCH_PASSWORD, role=auth.ADMIN, by="bench")
    finally:
        store.dispose()


def start_console(url: str, port: int, root: Path = ROOT) -> tuple[subprocess.Popen, float]:
    """`streamlit run app.py` with password sign-in, from `root` (this checkout, or another one run
    with this checkout's interpreter); returns the process and its seconds to healthy."""
    env = dict(os.environ, DATABASE_URL=url, AUTH_MODE="password", PYTHONPATH=str(root))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the console in {root} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("the console did not become healthy in 300 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_usable(page, name: str) -> None:  # noqa: ANN001 - playwright's Page
    """First usable content: the page's heading, then its first chart, table or empty state."""
    page.locator(CURRENT).get_by_role("heading", name=TITLES[name]).first.wait_for(timeout=120_000)
    page.locator(CURRENT).locator(USABLE_ON.get(name, USABLE)).filter(visible=True).first.wait_for(
        timeout=120_000
    )


def sidebar_link(page, name: str):  # noqa: ANN001, ANN201 - playwright's Page and Locator
    return page.get_by_test_id("stSidebarNav").get_by_role("link", name=TITLES[name], exact=True)


def sign_in_and_wait(page, name: str) -> float:  # noqa: ANN001 - playwright's Page
    """Sign in on the form the page was sent to; seconds from the sign-in's answer (the redirect to
    the page) to the page's first usable content."""
    page.get_by_label("User name").wait_for(timeout=120_000)
    page.get_by_label("User name").fill(BENCH_USER)
    page.get_by_label("Password", exact=True).fill(BENCH_PASSWORD)
    with page.expect_response(lambda r: r.request.method == "POST" and "/auth/sign-in" in r.url):
        page.get_by_role("button", name="Sign in").click()
    t1 = time.perf_counter()
    try:
        wait_usable(page, name)
    except Exception:
        shot = Path(tempfile.gettempdir()) / f"bench_pages_{name}_first.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"{name}: no usable content after signing in; screenshot {shot}", flush=True)
        raise
    return time.perf_counter() - t1


def time_browser(url: str, names: list[str], chromium: str, repeat: int = 3) -> dict[str, dict[str, float]]:
    """Per page, on a console started for it (`streamlit run app.py`, password sign-in):
    sign_in_form_s: from asking for the page to the sign-in form drawn (the server's first request);
    browser_first_s: from the sign-in's answer (the redirect to the page) to the page's first usable
    content, the first page run of a freshly started server; browser_warm_s: the median of `repeat`
    later page loads of the same page (a new session each, caches warm); browser_nav_s: to the page
    from another one through the sidebar; browser_returning_first_s: the first visit again after the
    console restarted on the same address, by the same browser (its cookies cleared, so it signs in
    again; its cache holds Streamlit's content-hashed files and their compiled code, as an
    operator's browser does after an upgrade or a redeploy).
    startup_s: from process start to /_stcore/health answering (imports, not part of the targets)."""
    from playwright.sync_api import sync_playwright

    ensure_bench_user(url)
    out: dict[str, dict[str, float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for name in names:
            port = free_port()
            proc, startup = start_console(url, port)
            base = f"http://127.0.0.1:{port}"
            path = "" if name == "overview" else name
            try:
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                context.set_default_timeout(120_000)  # a loaded machine: fail late, report the figure
                context.set_default_navigation_timeout(120_000)
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{base}/{path}")
                page.get_by_label("User name").wait_for(timeout=120_000)
                form = time.perf_counter() - t0
                first = sign_in_and_wait(page, name)
                warm = []
                for _ in range(repeat):
                    t2 = time.perf_counter()
                    page.goto(f"{base}/{path}")
                    wait_usable(page, name)
                    warm.append(time.perf_counter() - t2)
                nav = []
                away = "llm_calls" if name != "llm_calls" else "overview"
                for _ in range(repeat):
                    sidebar_link(page, away).click()
                    wait_usable(page, away)
                    t3 = time.perf_counter()
                    sidebar_link(page, name).click()
                    wait_usable(page, name)
                    nav.append(time.perf_counter() - t3)
                # the console restarts (an upgrade, a deploy); the same browser, its cookies gone, comes back
                context.clear_cookies()
                stop(proc)
                proc, _ = start_console(url, port)
                page.goto(f"{base}/{path}")
                returning = sign_in_and_wait(page, name)
                context.close()
            finally:
                stop(proc)
            out[name] = {
                "startup_s": round(startup, 3),
                "sign_in_form_s": round(form, 3),
                "browser_first_s": round(first, 3),
                "browser_warm_s": round(statistics.median(warm), 3),
                "browser_nav_s": round(statistics.median(nav), 3),
                "browser_returning_first_s": round(returning, 3),
            }
            flag = "" if first <= TARGET_FIRST_S and out[name]["browser_warm_s"] <= TARGET_BROWSER_WARM_S else (
                "  (over target)")  # fmt: skip
            print(f"{name:22s} browser: sign-in form {form:6.3f} s   first visit {first:6.3f} s   warm "
                  f"{out[name]['browser_warm_s']:6.3f} s   in-app {out[name]['browser_nav_s']:6.3f} s   returning {returning:6.3f} s   (server start to healthy {startup:5.1f} s){flag}",
                  flush=True)  # fmt: skip
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--database-url", help=f"store to read (default: bench/queries.py's store, else {BENCH_DB})"
    )
    ap.add_argument("--server-url", default=test_environment()["bench_database_server"] or DEFAULT_SERVER,
                    help="PostgreSQL server used to find or build the bench store")  # fmt: skip
    ap.add_argument("--build-hours", type=float, default=None,
                    help=f"build a smaller store ({SMALL_DB}) with this many hours of simulator traffic; "
                         "also used automatically (48 h) when the bench store does not exist")  # fmt: skip
    ap.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    ap.add_argument("--repeat", type=int, default=5, help="warm runs per page (median reported)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--chromium", default=test_environment()["chromium"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pages.json"))
    args = ap.parse_args(argv)

    url = args.database_url or bench_queries_url() or server_url(args.server_url, BENCH_DB)
    scale = "bench"
    if args.build_hours is not None or not database_exists(url):
        hours = args.build_hours or 48.0
        if args.database_url is None or args.build_hours is not None:
            url = server_url(args.server_url, SMALL_DB) if args.database_url is None else url
        print(f"bench store not found; building a smaller one ({hours} h of demo traffic)", flush=True)
        build_small(url, hours)
        scale = f"small ({hours} h simulator backfill)"
    facts = store_facts(url)
    print(f"store: {sa.make_url(url).render_as_string(hide_password=True)}  {facts}", flush=True)
    pages = time_pages(url, args.pages, args.repeat)
    if not args.no_browser and Path(args.chromium).exists():
        for name, figures in time_browser(url, args.pages, args.chromium).items():
            pages[name].update(figures)
    result = {
        "pages": pages,
        "targets": {
            "cold_s": TARGET_COLD_S,
            "warm_s": TARGET_WARM_S,
            "browser_first_s": TARGET_FIRST_S,
            "browser_warm_s": TARGET_BROWSER_WARM_S,
        },
        "store": {"url": sa.make_url(url).render_as_string(hide_password=True), "scale": scale, **facts},
        "machine": machine_facts(),
        "measured_at": measured_at(),
    }
    out = write_results(args.out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
