"""API benchmark: the console (`uvicorn app:app`, one process) on 127.0.0.1 under bounded loads that
stop by themselves.

    .venv/bin/python bench/api.py                          # SQLite store in a temp dir, Redis from TEST_REDIS_URL
    .venv/bin/python bench/api.py --database-url postgresql+psycopg://... --redis-url redis://127.0.0.1:6379/0

1. HTTP: --rate requests/s (default 200) for --seconds (default 10), open loop (each request is sent
   at its scheduled time from a pool of threads, so a slow answer does not slow the offered load),
   round-robin over four GET endpoints, as 20 users (each stays under the 1,000/min limit).
   Latency = answer received - request sent; p50/p95/p99 per endpoint and overall.
2. Broadcast: --clients (default 1,000) WebSocket clients (10 per user, the per-user limit) subscribed
   to `emergency_monitoring`; --broadcasts times, one live message is PUBLISHed on the Redis channel
   and every client's receive time is taken. Delivery = received - published; target p95 <= 100 ms.
3. Take-over: one subscriber to `interventions_monitoring`; --takeovers POSTs of take-control, each
   timed from the request being sent to its `intervention_update` arriving; target p95 <= 50 ms.

The console is `uvicorn app:app` with the WebSocket settings `streamlit run` uses (no per-message
deflate). The clients run in this process (asyncio), on the same 2-core machine as the console: their
own Python work is inside the figures. On a shared machine latencies mostly measure the wait for a
core, so the console's own CPU time (psutil) is reported too: per HTTP request, and per broadcast (with
the clients' CPU per broadcast beside it). Writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from benchlib import machine_facts, measured_at, write_results  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from observability import auth, keys  # noqa: E402
from observability import events as ev  # noqa: E402
from observability.auth import api_tokens  # noqa: E402
from observability.settings import Settings, test_environment  # noqa: E402
from observability.store import Store, live  # noqa: E402
from observability.store.ingest import write_batch  # noqa: E402

SECRET = "bench-api-secret-" + "b" * 24
ENDPOINTS = ["/auth/whoami", "/alerts/active", "/monitoring/activity/feed?limit=50", "/monitoring/metrics"]
HTTP_USERS = 20
PER_USER_WS = 10


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 2)


def summary(values_ms: list[float]) -> dict:
    return {"n": len(values_ms), "p50_ms": pct(values_ms, 0.5), "p95_ms": pct(values_ms, 0.95),
            "p99_ms": pct(values_ms, 0.99), "max_ms": round(max(values_ms), 2) if values_ms else None}  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(store: Store, settings: Settings, users: int, conversations: int) -> dict[str, str]:
    tokens = {}
    for i in range(users):
        name = f"bench{i:03d}"
        auth.create_user(store, name, auth.OPERATOR, "bench-password-1")
        tokens[name] = api_tokens.create_token(store, None, name, "bench", settings=settings).token
    t = time.time() - 60
    batch = [ev.message(uuid.uuid4().hex, t + i * 0.001, conversation_id=f"bench-c{i:04d}", role="user",
                        text="where is my order", bot="buyer", account_id=f"acct-{i % 7}")
             for i in range(conversations)]  # fmt: skip
    write_batch(store, batch, settings)
    return tokens


def start_console(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    # WebSockets as `streamlit run app.py` serves them: sans-I/O protocol, no per-message deflate
    # (server.enableWebsocketCompression is off by default); uvicorn's own default would compress
    # every message for every client.
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--ws-ping-interval", "0", "--ws", "websockets-sansio",
           "--ws-per-message-deflate", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the console exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the console did not start within 180 s")


def http_load(base: str, tokens: list[str], rate: float, seconds: float, cpu: Callable[[], float]) -> dict:
    total = int(rate * seconds)
    local = threading.local()
    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()

    def one(i: int, at: float) -> None:
        session = getattr(local, "s", None)
        if session is None:
            session = local.s = requests.Session()
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        path = ENDPOINTS[i % len(ENDPOINTS)]
        t0 = time.perf_counter()
        r = session.get(
            base + path, headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"}, timeout=30
        )
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            results.append((path, ms, r.status_code))

    start = time.perf_counter() + 0.5
    t_begin = time.perf_counter()
    cpu0 = cpu()
    with ThreadPoolExecutor(max_workers=64) as pool:
        for i in range(total):
            pool.submit(one, i, start + i / rate)
    elapsed = time.perf_counter() - t_begin
    server_cpu_s = cpu() - cpu0
    out = {"offered_rps": rate, "seconds": seconds, "achieved_rps": round(len(results) / max(elapsed - 0.5, 1e-9), 1),
           "errors": sum(1 for _, _, s in results if s != 200), "overall": summary([ms for _, ms, _ in results]),
           "per_endpoint": {p: summary([ms for q, ms, _ in results if q == p]) for p in ENDPOINTS},
           "server_cpu_ms_per_request": round(server_cpu_s * 1000 / max(len(results), 1), 2)}  # fmt: skip
    return out


async def broadcast_bench(ws_base: str, tokens: list[str], clients: int, rounds: int, r: redis.Redis,
                          settings: Settings, cpu: Callable[[], float]) -> dict:  # fmt: skip
    conns = []
    for i in range(clients):
        ws = await connect(f"{ws_base}/ws?token={tokens[i // PER_USER_WS]}", open_timeout=60, ping_interval=None,
                           max_queue=64)  # fmt: skip
        await ws.send(json.dumps({"type": "subscribe", "rooms": ["emergency_monitoring"]}))
        conns.append(ws)
    for ws in conns:  # every subscription confirmed before the first broadcast
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
    latencies: list[float] = []
    received_counts = []
    server_cpu_s = client_cpu_s = 0.0
    for n in range(rounds):
        got: list[float] = []
        marker = f"bench-{n}-{uuid.uuid4().hex[:6]}"

        async def wait_one(ws, marker: str = marker, got: list[float] = got) -> None:  # noqa: ANN001
            while True:
                m = json.loads(await ws.recv())
                if m.get("data", {}).get("marker") == marker:
                    got.append(time.time())
                    return

        waiters = [asyncio.create_task(wait_one(ws)) for ws in conns]
        await asyncio.sleep(0.2)
        message = live.message(live.INTERVENTION_UPDATE, ["emergency_monitoring"], {"marker": marker}, "")
        cpu0, own0 = cpu(), time.process_time()
        t0 = time.time()
        r.publish(keys.live_channel(settings.redis_prefix), json.dumps(message))
        done, pending = await asyncio.wait(waiters, timeout=10)
        server_cpu_s += cpu() - cpu0
        client_cpu_s += time.process_time() - own0
        for task in pending:
            task.cancel()
        latencies += [(t - t0) * 1000 for t in got]
        received_counts.append(len(got))
        await asyncio.sleep(0.5)
    for ws in conns:
        await ws.close()
    return {"clients": clients, "broadcasts": rounds, "received_per_broadcast": received_counts,
            "delivery": summary(latencies), "target_p95_ms": 100,
            "server_cpu_ms_per_broadcast": round(server_cpu_s * 1000 / max(rounds, 1), 1),
            "clients_cpu_ms_per_broadcast": round(client_cpu_s * 1000 / max(rounds, 1), 1)}  # fmt: skip


async def takeover_bench(base: str, ws_base: str, token: str, conversations: list[str]) -> dict:
    latencies, http_ms = [], []
    async with connect(f"{ws_base}/ws?token={token}", ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "rooms": ["interventions_monitoring"]}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        loop = asyncio.get_running_loop()
        session = requests.Session()
        for cid in conversations:
            t0 = time.perf_counter()
            fut = loop.run_in_executor(None, lambda c=cid: session.post(
                f"{base}/intervention/take-control/{c}", json={"reason": "bench"},
                headers={"Authorization": f"Bearer {token}"}, timeout=30))  # fmt: skip
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if m.get("type") == "intervention_update" and m["data"].get("conversation_id") == cid:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    break
            resp = await fut
            http_ms.append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200, resp.text
            await asyncio.sleep(0.05)
    return {"takeovers": len(conversations), "to_intervention_update": summary(latencies),
            "http_response": summary(http_ms), "target_p95_ms": 50}  # fmt: skip


def main() -> int:
    env_tests = test_environment()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    p.add_argument("--redis-url", default=env_tests["redis_url"] or "redis://127.0.0.1:6379/0")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--broadcasts", type=int, default=5)
    p.add_argument("--takeovers", type=int, default=50)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    url = args.database_url or f"sqlite:///{tmp / 'store.db'}"
    prefix = f"obsbench:api:{uuid.uuid4().hex[:8]}:"
    env = {"DATABASE_URL": url, "REDIS_URL": args.redis_url, "REDIS_PREFIX": prefix, "SESSION_SECRET": SECRET,
           "AUTH_MODE": "password", "WEBSOCKET_MAX_CONNECTIONS": str(args.clients + 50),
           "SPOOL_DIR": str(tmp / "spool"), "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024"}  # fmt: skip
    settings = Settings.from_env(env)
    store = Store.from_url(url)
    store.migrate()
    users = max(HTTP_USERS, -(-args.clients // PER_USER_WS))
    tokens = list(seed(store, settings, users, args.takeovers + 10).values())
    port = free_port()
    proc = start_console(env, port, tmp / "console.log")
    server = psutil.Process(proc.pid)

    def cpu() -> float:  # the console's CPU seconds so far: what its work costs, whatever the load
        t = server.cpu_times()
        return t.user + t.system

    r = redis.Redis.from_url(args.redis_url)
    base, ws_base = f"http://127.0.0.1:{port}/api/v1", f"ws://127.0.0.1:{port}/api/v1"
    try:
        for path in ENDPOINTS:  # warm the process: imports, pools, caches
            requests.get(base + path, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=60)
        result = {
            "benchmark": "api", "measured_at": measured_at(), "machine": machine_facts(),
            "machine_note": "2 cores shared with other engineers' builds and tests while measured",
            "load_average_1m_at_start": round(os.getloadavg()[0], 1),
            "store": url.split(":", 1)[0], "redis": True,
            "http": http_load(base, tokens[:HTTP_USERS], args.rate, args.seconds, cpu),
            "broadcast": asyncio.run(broadcast_bench(ws_base, tokens, args.clients, args.broadcasts, r, settings, cpu)),
            "takeover": asyncio.run(takeover_bench(base, ws_base, tokens[0],
                                                   [f"bench-c{i:04d}" for i in range(args.takeovers)])),
        }  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        found = list(r.scan_iter(f"{prefix}*", count=1000))
        if found:
            r.delete(*found)
        store.dispose()
    out = write_results(ROOT / "bench" / "results" / "api.json", result)
    h, b, t = result["http"], result["broadcast"], result["takeover"]
    print(
        f"HTTP at {h['offered_rps']:.0f} req/s offered ({h['achieved_rps']} achieved, {h['errors']} errors): "
        f"p50 {h['overall']['p50_ms']} ms, p95 {h['overall']['p95_ms']} ms; console CPU "
        f"{h['server_cpu_ms_per_request']} ms per request (load average {result['load_average_1m_at_start']})"
    )
    for path, s in h["per_endpoint"].items():
        print(f"  {path:<40} p50 {s['p50_ms']} ms  p95 {s['p95_ms']} ms")
    print(
        f"broadcast to {b['clients']} WebSocket clients x{b['broadcasts']}: received {b['received_per_broadcast']}; "
        f"p50 {b['delivery']['p50_ms']} ms, p95 {b['delivery']['p95_ms']} ms (target <= 100); CPU per broadcast: "
        f"console {b['server_cpu_ms_per_broadcast']} ms, clients {b['clients_cpu_ms_per_broadcast']} ms"
    )
    print(f"take-over -> intervention_update ({t['takeovers']}x, Redis): p50 {t['to_intervention_update']['p50_ms']} "
          f"ms, p95 {t['to_intervention_update']['p95_ms']} ms (target <= 50); HTTP answer p95 "
          f"{t['http_response']['p95_ms']} ms")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
