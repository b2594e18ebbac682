"""`GET /healthz`: is this worker fit to serve? 200 or 503, with the reasons as JSON.

Three checks, each bounded in time so a hung store or Redis cannot hang the probe: the store
answers, Redis answers (when configured), and the workers tick (this worker's own heartbeat and
the leader's are younger than `HEALTH_MAX_WORKER_LAG_S`, default 4 ticks and at least 60 s). A
worker that has just started gets that long to tick before its absence counts against it.

`status` is "ok", "unhealthy" (503) or "degraded" (200: it works, but something is at risk and
`reasons` says what): a Redis without an append-only file is degraded, because a Redis restart
loses the events bots wrote to the stream that no worker has stored yet, and nothing else would
say so (the bots counted them as written).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observability import redis_client
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.heartbeats import max_worker_lag_s
from observability.store.sqlhelpers import as_datetime
from observability.timeutil import utcnow
from observability.worker.response import Response


def live_leader(heartbeats: Iterable[tuple[str, bool, datetime]], now: datetime, limit: float) -> str | None:
    """The worker that leads now, from (worker_id, is_leader, last_tick_at) rows: the newest leader
    claim, if it is younger than `limit` seconds. A leader killed with -9 never clears its flag; a
    successor's newer claim (whose heartbeat also clears the old one), or its age, says it is gone."""
    claims = [(t, w) for w, lead, t in heartbeats if lead and t is not None]
    if not claims:
        return None
    t, w = max(claims)
    return w if (now - t).total_seconds() <= limit else None


class HealthChecker:
    """Store ping, Redis ping (when configured) and worker lag; each check bounded in time."""

    TIMEOUT_S = 3.0

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        redis: Any = None,
        worker_id: str | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.redis = redis
        self.worker_id = worker_id
        self.now = now
        self.started_at = now()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")

    @property
    def max_lag_s(self) -> float:
        return max_worker_lag_s(self.settings)

    def _bounded(self, fn: Callable[[], dict]) -> dict:
        t0 = time.perf_counter()
        try:
            out = self._pool.submit(fn).result(timeout=self.TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            out = {"ok": False, "error": f"no answer within {self.TIMEOUT_S:.0f}s"}
        except Exception as exc:  # noqa: BLE001
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    def _store(self) -> dict:
        now = self.now()
        with self.store.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            hb = schema.worker_heartbeats
            rows = conn.execute(sa.select(hb.c.worker_id, hb.c.is_leader, hb.c.last_tick_at)).all()
        return {
            "ok": True,
            "heartbeats": [(w, bool(lead), as_datetime(t)) for w, lead, t in rows],
            "now": now,
        }

    def _redis(self) -> dict:
        self.redis.ping()
        return {"ok": True, "persistence": redis_client.persistence(self.redis).as_dict()}

    def check(self) -> tuple[bool, dict]:
        """(healthy, the JSON document): every check, and a reason for each one that failed."""
        reasons: list[str] = []
        degraded: list[str] = []  # works, but at risk: status "degraded", still 200
        store = self._bounded(self._store)
        heartbeats = store.pop("heartbeats", None)
        now = store.pop("now", None) or self.now()
        checks: dict[str, Any] = {"store": store}
        if not store["ok"]:
            reasons.append(f"store unreachable: {store.get('error')}")
        if self.redis is not None:
            checks["redis"] = self._bounded(self._redis)
            if not checks["redis"]["ok"]:
                reasons.append(f"redis unreachable: {checks['redis'].get('error')}")
            elif checks["redis"]["persistence"]["reason"]:
                degraded.append(checks["redis"]["persistence"]["reason"])
        checks["monitoring"] = {"enabled": self.settings.monitoring_enabled}  # MONITORING_ENABLED
        checks["worker"], problems = self._workers(heartbeats, now)
        reasons += problems
        healthy = not reasons
        return healthy, {
            "status": "unhealthy" if not healthy else "degraded" if degraded else "ok",
            "reasons": reasons + degraded,
            "checks": checks,
            "worker_id": self.worker_id,
            "time": now.isoformat() + "Z",
        }

    def response(self) -> Response:
        healthy, doc = self.check()
        return Response(200 if healthy else 503, json.dumps(doc, default=str).encode(), "application/json")

    def _workers(self, heartbeats: list | None, now: datetime) -> tuple[dict[str, Any], list[str]]:
        """This worker's lag and the leader's against `max_lag_s`; (the check, its problems)."""
        limit = self.max_lag_s
        worker: dict[str, Any] = {"max_lag_s": limit}
        if heartbeats is None:  # the store check already says why
            worker.update(ok=False, error="unknown: the store cannot be read")
            return worker, []
        in_grace = (now - self.started_at).total_seconds() < limit
        own = [t for w, _, t in heartbeats if self.worker_id is not None and w == self.worker_id]
        leaders = [t for _, lead, t in heartbeats if lead]
        newest = max((t for _, _, t in heartbeats), default=None)

        def lag_of(t: datetime | None) -> float | None:
            return round((now - t).total_seconds(), 1) if t is not None else None

        worker["lag_s"] = lag = lag_of(max(own) if own else newest)
        worker["leader_lag_s"] = leader_lag = lag_of(max(leaders) if leaders else None)
        worker["leader"] = live_leader(heartbeats, now, limit)  # None: no live leader
        problems: list[str] = []
        if self.worker_id is not None and not own:
            if not in_grace:
                problems.append(f"this worker has not ticked within {limit:.0f}s of starting")
        elif lag is None:
            if not in_grace:
                problems.append("no worker heartbeat in the store")
        elif lag > limit:
            problems.append(f"worker lag {lag:.0f}s exceeds {limit:.0f}s")
        if leader_lag is None:
            if not in_grace:
                problems.append("no leading worker heartbeat")
        elif leader_lag > limit:
            problems.append(f"leader lag {leader_lag:.0f}s exceeds {limit:.0f}s")
        worker["ok"] = not problems
        return worker, problems

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
