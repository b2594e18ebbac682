"""Is the worker running? One answer for `/healthz`, the API's health and the console's banner.

The worker records a heartbeat per tick (`worker_heartbeats`). Without one for longer than
`HEALTH_MAX_WORKER_LAG_S` (4 ticks and at least 60 s when unset), alerts are not evaluated or
sent, conversations are not scored and rollups fall behind, while pages go on showing figures
that look current: the console says so on every page, as `/healthz` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from observability.settings import Settings
from observability.store import Store, schema
from observability.store.sqlhelpers import as_datetime
from observability.timeutil import resolve_now


def max_worker_lag_s(settings: Settings) -> float:
    """HEALTH_MAX_WORKER_LAG_S, or 4 ticks and at least 60 s when unset."""
    s = settings
    return s.health_max_worker_lag_s if s.health_max_worker_lag_s > 0 else max(60.0, 4 * s.worker_tick_s)


@dataclass(frozen=True)
class WorkerPulse:
    last_tick_at: datetime | None  # the newest heartbeat of any worker; None: no worker ever ran
    age_s: float | None
    limit_s: float

    @property
    def behind(self) -> bool:
        """No heartbeat within the limit (or none at all)."""
        return self.age_s is None or self.age_s > self.limit_s


def worker_pulse(store: Store, settings: Settings, now: datetime | None = None) -> WorkerPulse:
    now = resolve_now(now)
    hb = schema.worker_heartbeats
    with store.connect() as conn:
        last = as_datetime(conn.execute(sa.select(sa.func.max(hb.c.last_tick_at))).scalar())
    age = None if last is None else max((now - last).total_seconds(), 0.0)
    return WorkerPulse(last, age, max_worker_lag_s(settings))


def current_pulse(store: Store) -> WorkerPulse:
    """`worker_pulse` now, under the process's settings (what the console's banner reads)."""
    from observability.settings import get_settings

    return worker_pulse(store, get_settings())
