"""What every API request shares: the settings, the store, Redis (or None) and the rate limiter.

One `ApiContext` per app, kept on `app.state.ctx`; tests build an app with their own settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from observability.api.ratelimit import RateLimiter
from observability.redis_client import connect
from observability.settings import Settings
from observability.store import Store


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    redis: Any | None
    limiter: RateLimiter


@lru_cache(maxsize=4)
def _store_for(url: str) -> Store:
    store = Store.from_url(url)
    store.migrate()
    return store


def make_context(settings: Settings, store: Store | None = None) -> ApiContext:
    """The context for `settings` (the store is shared per DATABASE_URL within the process)."""
    redis = connect(settings) if settings.redis_url else None
    return ApiContext(
        settings, store or _store_for(settings.database_url), redis, RateLimiter(settings, redis)
    )
