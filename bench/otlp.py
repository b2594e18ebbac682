"""OTLP ingest benchmark: spans per second stored and queryable, end to end, beside the SDK path and
beside Arize Phoenix fed the same spans in the same run.

    python bench/otlp.py [--spans 200000] [--database-url URL] [--senders 4] [--no-phoenix]
                         [--phoenix-spans 20000] [--stores postgres,sqlite] [--no-sdk] [--db-prefix P]

The spans are what an instrumented bot sends: traces of one bot span (naming the conversation and the
bot) around four model-call spans (GenAI conventions, a response id, usage with cached reads), so the
merging and the trace context of the receiver are at work. They are encoded beforehand as OTLP/HTTP
protobuf requests of 100 spans, and `--senders` threads post them at once, each on a keep-alive
connection, to a process serving the worker's HTTP (`observability.worker.server.serve`, its OTLP receiver on
127.0.0.1).

(a) per store (SQLite file, PostgreSQL database): spans per second from the first request until every
    call row is queryable (`count(*)` of `llm_calls`), the answer rate alone, and CPU per span of the
    worker process, of the PostgreSQL backends serving it and of the senders (this process);
(b) the SDK path beside it: the same calls as wire events through `write_batch` (what the SDK's
    direct-to-SQL path and the stream consumer run), batches of 100, in this process;
(c) Arize Phoenix (`arize-phoenix` from PyPI, installed on first use into bench/.phoenix-venv, a venv
    of its own, as its pins conflict with ours), served on 127.0.0.1 with its SQLite store, fed the
    first `--phoenix-spans` of the same requests by the same senders (it stores about 100 spans/s, so
    all of them would take half an hour): accepted per second, and stored per second (its `spans`
    table).

It creates its own PostgreSQL database and drops it afterwards. Figures are printed and written to
bench/results/otlp.json. Target: at least 20,000 spans/s stored on PostgreSQL with 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from benchlib import machine_facts, measured_at, write_results  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402

from observability.settings import Settings  # noqa: E402
from observability.store import Store, schema  # noqa: E402
from observability.store.ingest import write_batch  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "otlp.json"
PHOENIX_VENV = ROOT / "bench" / ".phoenix-venv"
PHOENIX_VERSION = "20.26.1"
SPANS_PER_REQUEST = 100
CALLS_PER_TRACE = 4  # and one bot span: 20 traces per request
TARGET_PG = 20_000.0
# the worker's HTTP server alone (what `python -m observability.worker` serves beside its tick), so
# the figures are the receiver's and not the rollups' or the alert checks'
SERVE = """
import os, signal, threading
from observability.settings import get_settings
from observability.store import Store
from observability.worker.runner import tune_gc
from observability.worker.server import serve
settings = get_settings()
store = Store.from_url(settings.database_url)
srv = serve(store, settings)
tune_gc()  # as `python -m observability.worker` does once it serves
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
# the bench holds this process's stdin: if the bench dies, the pipe closes and the worker stops too
# (os.read, not sys.stdin: a thread blocked in a buffered read aborts the interpreter's shutdown)
threading.Thread(target=lambda: (os.read(0, 1), stop.set()), daemon=True).start()
stop.wait()
srv.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_requests(n_spans: int) -> list[bytes]:
    """OTLP protobuf bodies of SPANS_PER_REQUEST spans each: traces of a bot span and its calls."""
    per_trace = CALLS_PER_TRACE + 1
    traces_per_request = SPANS_PER_REQUEST // per_trace
    bodies = []
    t0 = time.time_ns() - 3_600_000_000_000
    run = uuid.uuid4().hex[:8]
    for r in range(max(1, n_spans // SPANS_PER_REQUEST)):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", "bench_bot")])
        bot_scope = rs.scope_spans.add()
        bot_scope.scope.name = "bench_bot"
        llm_scope = rs.scope_spans.add()
        llm_scope.scope.name = "opentelemetry.instrumentation.openai"
        for t in range(traces_per_request):
            trace_id = uuid.uuid4().bytes
            bot_id = uuid.uuid4().bytes[:8]
            start = t0 + (r * traces_per_request + t) * 1_000_000
            bot = bot_scope.spans.add(trace_id=trace_id, span_id=bot_id, name="handle_message",
                                      start_time_unix_nano=start, end_time_unix_nano=start + 900_000)  # fmt: skip
            bot.attributes.extend(
                [_kv("gen_ai.conversation.id", f"conv-{run}-{r}-{t}"), _kv("obs.bot", "bench_bot")]
            )
            for c in range(CALLS_PER_TRACE):
                s = llm_scope.spans.add(trace_id=trace_id, span_id=uuid.uuid4().bytes[:8], parent_span_id=bot_id,
                                        name="chat gpt-4o-mini", start_time_unix_nano=start + c * 200_000 + 1,
                                        end_time_unix_nano=start + c * 200_000 + 150_000, kind=3)  # fmt: skip
                s.attributes.extend([
                    _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.request.model", "gpt-4o-mini"), _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                    _kv("gen_ai.response.id", f"chatcmpl-{run}-{r}-{t}-{c}"),
                    _kv("gen_ai.usage.input_tokens", 1200 + c), _kv("gen_ai.usage.output_tokens", 80),
                    _kv("gen_ai.usage.cache_read.input_tokens", 512 if c % 2 else 0),
                ])  # fmt: skip
        bodies.append(req.SerializeToString())
    return bodies


def calls_in(n_bodies: int) -> int:
    return n_bodies * (SPANS_PER_REQUEST // (CALLS_PER_TRACE + 1)) * CALLS_PER_TRACE


def post_all(
    port: int, path: str, bodies: list[bytes], senders: int, refused: list[str] | None = None
) -> float:
    """Post every body with `senders` threads on keep-alive connections; seconds until all answered.
    A body still refused after 20 tries is an error, or is listed in `refused` when given."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for b in bodies:
        work.put(b)
    failures: list[str] = []

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                break
            for _attempt in range(20):  # 503 (store busy) is retried, as OTLP exporters do
                conn.request("POST", path, body, {"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    break
                time.sleep(0.2)
            else:
                failures.append(f"HTTP {resp.status}")
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if refused is None:
        assert not failures, failures[:3]
    else:
        refused.extend(failures)
    return time.perf_counter() - started


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _decoders_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of the worker's child processes (its OTLP decoders)."""
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that ended since the listing
            kids.update(int(k) for k in (task / "children").read_text().split())
    return {k: _cpu_s(k) for k in kids}


def _backend_cpu(store: Store) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the store's database (others')."""
    if not store.is_postgres:
        return {}
    with store.connect() as conn:
        pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid()")).scalars().all()  # fmt: skip
    return {pid: _cpu_s(pid) for pid in pids}


def wait_http(port: int, path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing answers on 127.0.0.1:{port}{path}")


def wait_count(count: callable, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = count()
    while n < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        n = count()
    return n


# ---- (a) the worker's OTLP receiver --------------------------------------------------------------


def otlp_run(db_url: str, bodies: list[bytes], senders: int, tmp: Path) -> dict:
    store = Store.from_url(db_url)
    store.migrate()
    port = free_port()
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=db_url, WORKER_TICK_S="3600", WORKER_HTTP_HOST="127.0.0.1",
               WORKER_HTTP_PORT=str(port), SPOOL_DIR=str(tmp / "spool"), WORKER_LOCK_FILE=str(tmp / "lock"))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdin=subprocess.PIPE)
    try:
        wait_http(port, "/healthz", timeout=300)
        warm = build_requests(SPANS_PER_REQUEST)
        post_all(port, "/v1/traces", warm, 1)

        def count() -> int:
            with store.connect() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(schema.llm_calls)).scalar()

        expected = count() + calls_in(len(bodies))
        pg0 = _backend_cpu(store)
        cpu0 = _cpu_s(proc.pid)
        dec0 = _decoders_cpu(proc.pid)
        own0 = time.process_time()
        started = time.perf_counter()
        answered = post_all(port, "/v1/traces", bodies, senders)
        senders_cpu = time.process_time() - own0
        stored = wait_count(count, expected, 120.0)
        elapsed = time.perf_counter() - started
        cpu = _cpu_s(proc.pid) - cpu0
        dec = sum(c - dec0.get(k, 0.0) for k, c in _decoders_cpu(proc.pid).items())
        pg1 = _backend_cpu(store)
        assert stored == expected, f"stored {stored} call rows, expected {expected}"
        spans = len(bodies) * SPANS_PER_REQUEST
        out = {"spans": spans, "call_rows": calls_in(len(bodies)), "seconds": round(elapsed, 2),
               "spans_per_s_stored": round(spans / elapsed), "spans_per_s_answered": round(spans / answered),
               "worker_cpu_us_per_span": round(cpu / spans * 1e6, 1),
               "decoders_cpu_us_per_span": round(dec / spans * 1e6, 1),
               "senders_cpu_us_per_span": round(senders_cpu / spans * 1e6, 1)}  # fmt: skip
        if store.is_postgres:  # the database's backends serving the worker (not WAL writer, checkpointer)
            pg = sum(c - pg0.get(pid, 0.0) for pid, c in pg1.items())
            out["postgres_backend_cpu_us_per_span"] = round(pg / spans * 1e6, 1)
        return out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        store.dispose()


# ---- (b) the SDK path -----------------------------------------------------------------------------


def sdk_path(db_url: str, calls: int) -> dict:
    """The same calls as wire events through write_batch, in batches of 100 (no OTLP)."""
    store = Store.from_url(db_url)
    settings = Settings().replace(database_url=db_url, redis_url=None)
    run = uuid.uuid4().hex[:8]
    t0 = time.time() - 3600
    batches = [[["llm", f"sdk-{run}-{b}-{i}", t0 + b, "bench_bot", None, None, "gpt-4o-mini-2024-07-18", "openai",
                 1200, 80, 512 if i % 2 else 0, 0, 150.0, False, None, f"conv-{run}-{b}-{i // 4}", True, None, None]
                for i in range(100)] for b in range(max(1, calls // 100))]  # fmt: skip
    started = time.perf_counter()
    for batch in batches:
        write_batch(store, batch, settings)
    elapsed = time.perf_counter() - started
    store.dispose()
    n = len(batches) * 100
    return {"calls": n, "seconds": round(elapsed, 2), "calls_per_s": round(n / elapsed)}


# ---- (c) Arize Phoenix ----------------------------------------------------------------------------


def phoenix_python() -> Path:
    py = PHOENIX_VENV / "bin" / "python"
    if not py.exists():
        print(f"    installing arize-phoenix=={PHOENIX_VERSION} into {PHOENIX_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PHOENIX_VENV)], check=True)
    probe = subprocess.run([str(py), "-c", "import phoenix"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", f"arize-phoenix=={PHOENIX_VERSION}"], check=True
        )
    return py


def phoenix_run(bodies: list[bytes], senders: int, tmp: Path) -> dict:
    py = phoenix_python()
    port, grpc_port = free_port(), free_port()
    work = tmp / "phoenix"
    work.mkdir()
    env = dict(os.environ, PHOENIX_WORKING_DIR=str(work), PHOENIX_PORT=str(port), PHOENIX_HOST="127.0.0.1",
               PHOENIX_GRPC_PORT=str(grpc_port), PHOENIX_TELEMETRY_ENABLED="false")  # fmt: skip
    log = (tmp / "phoenix.log").open("wb")
    proc = subprocess.Popen([str(py), "-m", "phoenix.server.main", "serve"], env=env, stdout=log, stderr=log)
    try:
        wait_http(port, "/healthz", timeout=180)
        db = next(work.glob("*.db"))

        def count() -> int:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
                    return c.execute("SELECT count(*) FROM spans").fetchone()[0]
            except sqlite3.Error:
                return 0

        spans = len(bodies) * SPANS_PER_REQUEST
        cpu0 = _cpu_s(proc.pid)
        started = time.perf_counter()
        refused: list[str] = []
        answered = post_all(port, "/v1/traces", bodies, senders, refused)
        spans -= len(refused) * SPANS_PER_REQUEST
        stored = wait_count(count, spans, 300.0)
        elapsed = time.perf_counter() - started
        cpu = _cpu_s(proc.pid) - cpu0
        return {"spans": spans, "stored": stored, "seconds": round(elapsed, 2),
                "spans_per_s_answered": round(spans / answered), "spans_per_s_stored": round(stored / elapsed),
                "server_cpu_us_per_span": round(cpu / max(spans, 1) * 1e6, 1), "version": PHOENIX_VERSION,
                "requests_refused_after_20_tries": len(refused)}  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--spans", type=int, default=200_000, help="spans per store (default 200,000)")
    p.add_argument("--senders", type=int, default=4, help="concurrent senders (default 4)")
    p.add_argument("--no-phoenix", action="store_true", help="skip Arize Phoenix")
    p.add_argument(
        "--phoenix-spans",
        type=int,
        default=20_000,
        help="spans for Phoenix, the first of the same requests (default 20,000: it stores ~100/s)",
    )
    p.add_argument("--stores", default="postgres,sqlite", help="comma-separated: postgres, sqlite")
    p.add_argument("--no-sdk", action="store_true", help="skip the SDK path")
    p.add_argument("--db-prefix", default="obs_bench_otlp_", help="prefix of the scratch PostgreSQL database")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    load_at_start = round(os.getloadavg()[0], 2)
    admin_url = sa.make_url(a.database_url).set(drivername="postgresql+psycopg")
    db = f"{a.db_prefix}{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg_url = admin_url.set(database=db).render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="obs-bench-otlp-"))
    result: dict = {"measured_at": measured_at(), "machine": machine_facts(), "load_at_start": load_at_start,
                    "spans_per_request": SPANS_PER_REQUEST, "senders": a.senders,
                    "target_spans_per_s_postgres": TARGET_PG}  # fmt: skip
    try:
        print(f"building {a.spans:,} spans as OTLP protobuf requests of {SPANS_PER_REQUEST} ...", flush=True)
        bodies = build_requests(a.spans)
        stores = {"postgres": pg_url, "sqlite": f"sqlite:///{tmp / 'store.db'}"}
        for name in a.stores.split(","):
            url = stores[name.strip()]
            print(f"(a) OTLP ingest on {name}, {a.senders} senders ...", flush=True)
            (tmp / name).mkdir()
            result[f"otlp_{name}"] = r = otlp_run(url, bodies, a.senders, tmp / name)
            print(f"    {r['spans_per_s_stored']:,} spans/s stored and queryable ({r['spans_per_s_answered']:,}/s "
                  f"answered), CPU per span: worker {r['worker_cpu_us_per_span']} µs "
                  f"(+ decoders {r['decoders_cpu_us_per_span']} µs), PostgreSQL backends "
                  f"{r.get('postgres_backend_cpu_us_per_span', '-')} µs, senders {r['senders_cpu_us_per_span']} µs",
                  flush=True)  # fmt: skip
        if not a.no_sdk:
            print("(b) SDK path: the same calls through write_batch on postgres ...", flush=True)
            result["sdk_path_postgres"] = r = sdk_path(pg_url, calls_in(len(bodies)))
            print(f"    {r['calls_per_s']:,} calls/s stored", flush=True)
        if not a.no_phoenix:
            print("(c) Arize Phoenix, the same requests ...", flush=True)
            try:
                result["phoenix"] = r = phoenix_run(
                    bodies[: max(1, a.phoenix_spans // SPANS_PER_REQUEST)], a.senders, tmp
                )
                print(f"    {r['spans_per_s_answered']:,} spans/s accepted, {r['spans_per_s_stored']:,}/s stored "
                      f"({r['stored']:,} of {r['spans']:,})", flush=True)  # fmt: skip
            except (OSError, subprocess.CalledProcessError, TimeoutError, StopIteration) as exc:
                result["phoenix"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                print(f"    Phoenix not measured: {result['phoenix']['error']}", flush=True)
        result["load_at_end"] = round(os.getloadavg()[0], 2)
        ok = result.get("otlp_postgres", {}).get("spans_per_s_stored", 0) >= TARGET_PG
        result["target_met"] = ok
        print(f"target {TARGET_PG:,.0f} spans/s stored on PostgreSQL: {'met' if ok else 'NOT met'}")
        print(f"written to {write_results(a.out, result)}")
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
