"""What every API request shares: the settings, the store, Redis (or None), the rate limiter, the
tokens verified a moment ago, and the latest live metrics.

One `ApiContext` per app, kept on `app.state.ctx`; tests build an app with their own settings.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from starlette.concurrency import run_in_threadpool

from observability.analytics import monitoring
from observability.api.ratelimit import RateLimiter
from observability.auth.api_tokens import VerifiedTokens
from observability.redis_client import connect
from observability.settings import Settings
from observability.store import Store


@dataclass
class ApiContext:
    settings: Settings
    given_store: Store | None
    redis: Any | None
    limiter: RateLimiter
    verified: VerifiedTokens
    metrics: LiveMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = LiveMetrics(self)

    @property
    def store(self) -> Store:
        """The given store, else the process's for DATABASE_URL, opened (and migrated) on first use,
        so importing the console's app does not touch the database."""
        return self.given_store or _store_for(self.settings.database_url)


class LiveMetrics:
    """`monitoring.live_metrics` (the Live monitoring page's figures, about 0.1 s of queries) at most
    API_METRICS_MAX_AGE_S old, computed once for every caller that asks meanwhile: the API's
    `/monitoring/metrics`, `get_metrics` and the `metrics_update` push all share it."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None

    async def get(self) -> dict[str, Any]:
        max_age = self.ctx.settings.api_metrics_max_age_s
        if self._value is not None and time.monotonic() - self._at < max_age:
            return self._value
        loop = asyncio.get_running_loop()
        if self._running is not None and self._running[0] is loop:  # one computation for all askers
            return await asyncio.shield(self._running[1])
        future = loop.create_future()
        self._running = (loop, future)
        try:
            started = time.monotonic()
            value = await run_in_threadpool(monitoring.live_metrics, self.ctx.store)
            self._value, self._at = value, started
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            if self._running is not None and self._running[1] is future:
                self._running = None


@lru_cache(maxsize=4)
def _store_for(url: str) -> Store:
    store = Store.from_url(url)
    store.migrate()
    return store


def make_context(settings: Settings, store: Store | None = None) -> ApiContext:
    """The context for `settings` (the store is shared per DATABASE_URL within the process)."""
    redis = connect(settings) if settings.redis_url else None
    return ApiContext(
        settings, store, redis, RateLimiter(settings, redis), VerifiedTokens(settings.api_token_cache_s)
    )
