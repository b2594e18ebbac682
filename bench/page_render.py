"""What a warm page load costs the browser, measured in CPU rather than wall time, so figures taken
on a shared, loaded machine compare: per load, the renderer main thread's task, script, layout and
style time for the new document (Chromium DevTools `Performance.getMetrics`, reset by each
navigation) and the CPU time of every renderer process (`SystemInfo.getProcessInfo`: the main
thread plus the compositor and raster threads; no GPU), from the navigation until the page has
settled (under 5 ms of main-thread work per 0.1 s for 0.6 s, after its first usable content as
bench/pages.py defines it). Beside them, from the navigation: websocket_s (the front end has started
and opened its WebSocket) and last_message_s (the last message of the page's run received before
its first usable content: what the console's side of a load takes).

    .venv/bin/python bench/page_render.py --database-url postgresql+psycopg://.../store
    .venv/bin/python bench/page_render.py --roots /tmp/before . --rounds 3   # interleaved before/after

Each root is a checkout of the console; every round starts each root's console once (password
sign-in, as in production), signs in once and loads each page once unmeasured (its scripts into
the browser's cache, its queries into the console's) and then `--loads` times in the same tab, as
bench/pages.py's warm loads do (a new session each). Rounds alternate the roots' order. Writes bench/results/page_render.json with the median per root and page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine_facts, measured_at, write_results  # noqa: E402

from pages import (  # noqa: E402  (bench/pages.py)
    BENCH_PASSWORD,
    BENCH_USER,
    CHROMIUM_ARGS,
    PAGES,
    ensure_bench_user,
    free_port,
    start_console,
    stop,
    wait_usable,
)

METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
SETTLE_QUIET_S, SETTLE_MAX_S = 0.6, 8.0


def renderer_cpu(browser_cdp) -> float:  # noqa: ANN001
    info = browser_cdp.send("SystemInfo.getProcessInfo")
    return sum(p["cpuTime"] for p in info["processInfo"] if p["type"] == "renderer")


def metrics(cdp) -> dict[str, float]:  # noqa: ANN001
    got = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {k: got.get(k, 0.0) for k in METRICS}


class Messages:
    """When the page's WebSockets opened and each of their messages arrived (perf_counter)."""

    def __init__(self, page) -> None:  # noqa: ANN001
        self.opened: list[float] = []
        self.received: list[float] = []
        page.on("websocket", self._socket)

    def _socket(self, ws) -> None:  # noqa: ANN001
        self.opened.append(time.perf_counter())
        ws.on("framereceived", lambda _payload: self.received.append(time.perf_counter()))

    def since(self, t0: float, until: float) -> tuple[float | None, float | None]:
        opened = next((t - t0 for t in self.opened if t0 <= t <= until), None)
        last = max((t - t0 for t in self.received if t0 <= t <= until), default=None)
        return opened, last


def one_load(page, cdp, browser_cdp, base: str, name: str, messages: Messages) -> dict[str, float]:  # noqa: ANN001
    cpu0 = renderer_cpu(browser_cdp)
    t0 = time.perf_counter()
    page.goto(f"{base}/{'' if name == 'overview' else name}")
    wait_usable(page, name)
    t_usable = time.perf_counter()
    usable = t_usable - t0
    opened, last_message = messages.since(t0, t_usable)
    last, quiet_since, deadline = (
        metrics(cdp)["TaskDuration"],
        time.monotonic(),
        time.monotonic() + SETTLE_MAX_S,
    )
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        now = metrics(cdp)["TaskDuration"]
        if now - last > 0.005:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_QUIET_S:
            break
    m1, cpu1 = metrics(cdp), renderer_cpu(browser_cdp)
    out = {f"{k}_ms": round(m1[k] * 1000, 1) for k in METRICS}  # the document's own: reset by the navigation
    out["renderer_cpu_ms"] = round((cpu1 - cpu0) * 1000, 1)
    out["usable_s"] = round(usable, 3)
    out["websocket_s"] = round(opened, 3) if opened is not None else float("nan")
    out["last_message_s"] = round(last_message, 3) if last_message is not None else float("nan")
    out["plots"] = page.locator(".js-plotly-plot").count()
    return out


def run_root(root: Path, url: str, names: list[str], loads: int, chromium: str) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc, _ = start_console(url, port, root)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[dict]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            browser_cdp = browser.new_browser_cdp_session()
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            context.set_default_timeout(120_000)
            page = context.new_page()
            messages = Messages(page)
            page.goto(base)
            page.get_by_label("User name").fill(BENCH_USER)
            page.get_by_label("Password", exact=True).fill(BENCH_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            wait_usable(page, "overview")
            for name in names:  # one unmeasured load: the page's scripts into the cache, its queries cached
                page.goto(f"{base}/{'' if name == 'overview' else name}")
                wait_usable(page, name)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
            for name in names:
                out[name] = [one_load(page, cdp, browser_cdp, base, name, messages) for _ in range(loads)]
            browser.close()
    finally:
        stop(proc)
    return out


def main(argv: list[str] | None = None) -> int:
    from observability.settings import test_environment

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--roots", nargs="+", default=[str(ROOT)], help="console checkouts to compare")
    ap.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    ap.add_argument("--loads", type=int, default=3, help="measured loads per page and round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--chromium", default=test_environment()["chromium"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "page_render.json"))
    args = ap.parse_args(argv)

    ensure_bench_user(args.database_url)
    roots = [Path(r).resolve() for r in args.roots]
    samples: dict[str, dict[str, list[dict]]] = {str(r): {n: [] for n in args.pages} for r in roots}
    loadavg = []
    for rnd in range(args.rounds):
        order = roots if rnd % 2 == 0 else roots[::-1]
        for root in order:
            loadavg.append(os.getloadavg()[0])
            for name, loads in run_root(
                root, args.database_url, args.pages, args.loads, args.chromium
            ).items():
                samples[str(root)][name].extend(loads)
                med = {k: statistics.median(x[k] for x in loads) for k in loads[0]}
                print(f"round {rnd} {root.name:10s} {name:22s} renderer cpu {med['renderer_cpu_ms']:7.0f} ms  task "
                      f"{med['TaskDuration_ms']:7.0f}  script {med['ScriptDuration_ms']:6.0f}  layout "
                      f"{med['LayoutDuration_ms']:5.0f}  style {med['RecalcStyleDuration_ms']:5.0f}  websocket "
                      f"{med['websocket_s']:5.2f} s  last message {med['last_message_s']:5.2f} s  usable "
                      f"{med['usable_s']:5.2f} s  load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    medians = {
        root: {
            n: {k: statistics.median(x[k] for x in loads) for k in loads[0]}
            for n, loads in per.items()
            if loads
        }
        for root, per in samples.items()
    }
    write_results(args.out, {"medians": medians, "samples": samples, "load_average_1m": loadavg,
                             "machine": machine_facts(), "measured_at": measured_at()})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
