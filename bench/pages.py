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
15 s TTL gets). browser_s: from navigation to the page's heading and first plotly chart drawn in
the system Chromium (`--no-browser` to skip). Targets: cold <= 1.5 s, warm <= 0.3 s.

Writes bench/results/pages.json: {"pages": {name: {"cold_s", "warm_s", "browser_s"}}, ...}.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
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
}
TITLES = {
    "overview": "Overview", "live_monitoring": "Live monitoring", "bot_health": "Bot health",
    "ai_performance": "AI performance", "activity_feed": "Activity feed", "token_analytics": "Token analytics",
    "cost_tracking": "Cost tracking", "conversation_quality": "Conversation quality",
}  # fmt: skip
TARGET_COLD_S, TARGET_WARM_S = 1.5, 0.3
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


def time_browser(url: str, names: list[str], chromium: str) -> dict[str, float]:
    """Time from navigation to heading + first plotly chart in Chromium (a new session per page,
    so every page starts from a page load; server caches are warm from the AppTest runs)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, AUTH_MODE="none", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {}
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(base)
            page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)  # first load: server warm-up
            for name in names:
                path = "" if name == "overview" else name
                t0 = time.perf_counter()
                page.goto(f"{base}/{path}")
                page.get_by_role("heading", name=TITLES[name]).first.wait_for(timeout=120_000)
                # rendered: its first chart, or the empty state of a page without data
                page.locator(".js-plotly-plot, [data-testid='stAlertContentInfo']").first.wait_for(
                    timeout=120_000
                )
                out[name] = round(time.perf_counter() - t0, 3)
                print(f"{name:22s} browser {out[name]:6.3f} s", flush=True)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
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
        for name, secs in time_browser(url, args.pages, args.chromium).items():
            pages[name]["browser_s"] = secs
    result = {
        "pages": pages,
        "targets": {"cold_s": TARGET_COLD_S, "warm_s": TARGET_WARM_S},
        "store": {"url": sa.make_url(url).render_as_string(hide_password=True), "scale": scale, **facts},
        "machine": machine_facts(),
        "measured_at": measured_at(),
    }
    out = write_results(args.out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
