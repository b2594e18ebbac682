"""SDK benchmark: what a bot pays for importing the SDK and for each record call.

    python bench/sdk.py [--runs 5] [--bursts 20] [--redis-url URL] [--out bench/results/sdk.json]

(a) `import observability.sdk` in a fresh interpreter, several times: the median time in ms, and
    whether SQLAlchemy got loaded (target: <= 50 ms, never SQLAlchemy). Bytecode is cached in a
    temporary directory and warmed by one discarded run, as for an installed package (this
    measures importing, not compiling, even where PYTHONDONTWRITEBYTECODE is set);
(b) `record_llm_call` timed one call at a time on the caller's thread while the SDK's own thread
    flushes: bursts of 5,000 calls with 0.1 s pauses, into SQLite and, separately, into Redis (its
    own key prefix, deleted afterwards). Each iteration also times an empty call with the same
    arguments, so the tail the harness itself shows on this machine (scheduler, GC, timer) is beside
    the SDK's. Every run is a fresh interpreter; the figures are the medians over the runs of each
    run's median and p99, in µs (target: median <= 3 µs and p99 <= 30 µs with either sink).

Figures are printed and written to bench/results/sdk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchlib import machine_facts, measured_at, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sdk.json"
BURST = 5_000
PAUSE_S = 0.1
TARGETS = {"import_ms": 50.0, "median_us": 3.0, "p99_us": 30.0}

IMPORT_PROBE = (
    "import sys, time, json; t = time.perf_counter(); import observability.sdk; "
    "ms = (time.perf_counter() - t) * 1000; "
    "print(json.dumps({'ms': ms, 'sqlalchemy': 'sqlalchemy' in sys.modules, "
    "'store': 'observability.store' in sys.modules}))"
)


def fresh_python(*args: str, env: dict[str, str] | None = None) -> dict:
    """Run this interpreter in a new process from the project root; its last stdout line is JSON."""
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


# ---- (a) import -----------------------------------------------------------------------------------


def import_cost(runs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="bench-sdk-pyc-")
    fresh_python("-c", IMPORT_PROBE, env=env)  # compiles and caches the bytecode
    probes = [fresh_python("-c", IMPORT_PROBE, env=env) for _ in range(runs)]
    return {
        "median_ms": round(statistics.median(p["ms"] for p in probes), 1),
        "runs_ms": [round(p["ms"], 1) for p in probes],
        "sqlalchemy_loaded": any(p["sqlalchemy"] for p in probes),
        "store_loaded": any(p["store"] for p in probes),
    }


# ---- (b) one run of record calls, in a child interpreter -------------------------------------------


def _empty(*args: object, **kwargs: object) -> None:
    return None


def record_run(sink: str, bursts: int, redis_url: str) -> dict:
    """Time record calls and empty calls side by side; returns µs samples' median and p99 of each."""
    from observability.sdk import ObservabilityClient
    from observability.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-sdk-"))
    prefix = f"bench-sdk-{uuid.uuid4().hex[:8]}:"
    settings = Settings().replace(
        database_url=f"sqlite:///{tmp / 'sdk.db'}",
        redis_url=redis_url if sink == "redis" else None,
        redis_prefix=prefix,
        spool_dir=tmp / "spool",
    )
    if sink != "redis":  # what the bootstrap does: a bot never migrates its store
        from observability.store import Store

        Store.from_url(settings.database_url).migrate()
    client = ObservabilityClient(settings=settings)
    rec = client.record_llm_call
    clock = time.perf_counter_ns
    models = [
        ("claude-sonnet-4-5", "anthropic"),
        ("claude-haiku-4-5", "anthropic"),
        ("gemini-2.5-flash", "google"),
    ]
    calls = [(*models[i % 3], 800 + i, 120 + i % 50, 400.0 + i, ("lead", "buyer", "seller")[i % 3], f"conv-{i}")
             for i in range(BURST)]  # fmt: skip
    rec_us: list[float] = []
    empty_us: list[float] = []
    try:
        for _ in range(bursts):
            for model, provider, it, ot, lat, bot, conv in calls:
                t0 = clock()
                rec(model, provider, it, ot, lat, bot=bot, conversation_id=conv)
                t1 = clock()
                _empty(model, provider, it, ot, lat, bot=bot, conversation_id=conv)
                t2 = clock()
                rec_us.append((t1 - t0) / 1000)
                empty_us.append((t2 - t1) / 1000)
            time.sleep(PAUSE_S)
        assert client.flush(60.0), client.stats()
        stats = client.stats()
    finally:
        client.close()
        if sink == "redis":
            from observability.redis_client import connect

            r = connect(settings)
            r.delete(*(r.keys(prefix + "*") or [prefix + "ingest"]))
            r.close()
    # batches made before the store finished opening go through the spool (written on replay)
    stored = stats["written"] + stats["replayed"]
    assert stored == bursts * BURST and stats["dropped"] == stats["rejected"] == 0, stats
    return {
        "record": {"median": statistics.median(rec_us), "p99": pct(rec_us, 99)},
        "empty": {"median": statistics.median(empty_us), "p99": pct(empty_us, 99)},
    }


def record_cost(sink: str, runs: int, bursts: int, redis_url: str) -> dict:
    results = [
        fresh_python(__file__, "--child", sink, "--bursts", str(bursts), "--redis-url", redis_url)
        for _ in range(runs)
    ]
    out: dict = {"calls_per_run": bursts * BURST}
    for what in ("record", "empty"):
        out[what] = {
            stat: round(statistics.median(r[what][stat] for r in results), 2) for stat in ("median", "p99")
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="fresh interpreters per figure (default 5)")
    p.add_argument("--bursts", type=int, default=20, help=f"bursts of {BURST:,} calls per run (default 20)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", choices=["sqlite", "redis"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(record_run(a.child, a.bursts, a.redis_url)))
        return 0

    result = {"measured_at": measured_at(), "machine": machine_facts(), "targets": TARGETS,
              "import": import_cost(a.runs)}  # fmt: skip
    imp = result["import"]
    print(f"import observability.sdk: {imp['median_ms']} ms median of {a.runs} "
          f"(sqlalchemy loaded: {imp['sqlalchemy_loaded']}, store loaded: {imp['store_loaded']})")  # fmt: skip
    ok = imp["median_ms"] <= TARGETS["import_ms"] and not imp["sqlalchemy_loaded"]
    for sink in ("sqlite", "redis"):
        r = result[f"record_{sink}"] = record_cost(sink, a.runs, a.bursts, a.redis_url)
        rec, empty = r["record"], r["empty"]
        print(f"record_llm_call to {sink:6}: median {rec['median']:.2f} µs, p99 {rec['p99']:.1f} µs "
              f"(empty call: median {empty['median']:.2f} µs, p99 {empty['p99']:.1f} µs)")  # fmt: skip
        ok = ok and rec["median"] <= TARGETS["median_us"] and rec["p99"] <= TARGETS["p99_us"]
    result["targets_met"] = ok
    print(f"targets met: {ok}  ->  {write_results(a.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
