"""Sign-in benchmark: memory and password checks of a console process under a burst of guesses.

    python bench/sign_in.py [--attempts 40] [--out bench/results/sign_in.json]

With the production argon2 cost (3 passes, 64 MiB per hash) and `PASSWORD_HASH_CONCURRENCY` from
the environment (default 2), this process (the console's own sign-in code over an embedded SQLite
store in a temporary directory) sends `--attempts` wrong sign-ins at one account at once, in
threads released together:

(a) all from one address: how many passwords were actually checked (the throttle allows at most
    `SIGN_IN_MAX_FAILURES`, 5) and the peak RSS above the idle process;
(b) each from its own address, so every attempt reaches a password check: the peak RSS above idle
    versus the bound `PASSWORD_HASH_CONCURRENCY` x 64 MiB.

RSS is sampled every 2 ms by psutil. Local only, bounded, stops by itself. Figures are printed and
written to bench/results/sign_in.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The production cost, whatever the caller's environment says (tests set a cheap one).
os.environ["PASSWORD_HASH_TIME_COST"] = "3"
os.environ["PASSWORD_HASH_MEMORY_KIB"] = "65536"

from argon2 import PasswordHasher  # noqa: E402
from benchlib import machine_facts, measured_at, write_results  # noqa: E402

from observability import auth  # noqa: E402
from observability.auth.users import BUSY  # noqa: E402
from observability.settings import get_settings  # noqa: E402
from observability.store import Store  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sign_in.json"
MIB = 1024 * 1024
_checks = 0
_checks_lock = threading.Lock()
_original_verify = PasswordHasher.verify


def _counting_verify(hasher: PasswordHasher, hash_: str, password: str) -> bool:
    global _checks
    with _checks_lock:
        _checks += 1
    return _original_verify(hasher, hash_, password)


PasswordHasher.verify = _counting_verify  # count every password check (the one argon2 entry)


class PeakRss:
    """Samples this process's RSS in a thread until stopped; keeps the highest."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def burst(store: Store, attempts: int, one_address: bool) -> dict:
    """Send `attempts` wrong sign-ins at once; peak RSS above idle, checks made, answers seen."""
    global _checks
    barrier = threading.Barrier(attempts)

    def attempt(i: int) -> str:
        barrier.wait()
        client = "198.51.100.7" if one_address else f"10.40.{i // 200}.{i % 200}"
        try:
            auth.authenticate(store, "olga", "wrong-password", client=client)
        except auth.AuthError as exc:
            return "busy" if str(exc) == BUSY else "refused"
        return "signed in"

    idle = psutil.Process().memory_info().rss
    _checks = 0
    start = time.perf_counter()
    with PeakRss() as rss, ThreadPoolExecutor(max_workers=attempts) as pool:
        answers = list(pool.map(attempt, range(attempts)))
    return {
        "attempts": attempts,
        "passwords_checked": _checks,
        "refused": answers.count("refused"),
        "busy": answers.count("busy"),
        "idle_rss_mib": round(idle / MIB, 1),
        "peak_rss_above_idle_mib": round((rss.peak - idle) / MIB, 1),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attempts", type=int, default=40)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    s = get_settings()
    bound_mib = s.password_hash_concurrency * s.password_hash_memory_kib / 1024
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(f"sqlite:///{tmp}/console.db")
        store.migrate()
        auth.create_user(store, "olga", auth.OPERATOR, "correct-horse-battery")
        one = burst(store, args.attempts, one_address=True)
        many = burst(store, args.attempts, one_address=False)
        store.dispose()
    result = {
        "measured_at": measured_at(),
        "machine": machine_facts(),
        "argon2": {"time_cost": s.password_hash_time_cost, "memory_mib": s.password_hash_memory_kib / 1024},
        "hash_concurrency": s.password_hash_concurrency,
        "sign_in_max_failures": s.sign_in_max_failures,
        "memory_bound_mib": bound_mib,
        "one_address": one,
        "one_address_each": many,
    }
    print(
        f"argon2id {s.password_hash_time_cost} passes x {s.password_hash_memory_kib // 1024} MiB, "
        f"PASSWORD_HASH_CONCURRENCY={s.password_hash_concurrency} (bound {bound_mib:.0f} MiB)"
    )
    print(
        f"(a) {args.attempts} at once from one address: {one['passwords_checked']} passwords checked "
        f"(limit {s.sign_in_max_failures}); peak RSS +{one['peak_rss_above_idle_mib']} MiB over "
        f"{one['idle_rss_mib']} MiB idle; {one['seconds']} s"
    )
    print(
        f"(b) {args.attempts} at once from {args.attempts} addresses: {many['passwords_checked']} checked, "
        f"{many['busy']} told busy; peak RSS +{many['peak_rss_above_idle_mib']} MiB "
        f"(bound {bound_mib:.0f} MiB); {many['seconds']} s"
    )
    print(f"written to {write_results(args.out, result)}")


if __name__ == "__main__":
    main()
