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
    given_store: Store | None
    redis: Any | None
    limiter: RateLimiter

    @property
    def store(self) -> Store:
        """The given store, else the process's for DATABASE_URL, opened (and migrated) on first use,
        so importing the console's app does not touch the database."""
        return self.given_store or _store_for(self.settings.database_url)


@lru_cache(maxsize=4)
def _store_for(url: str) -> Store:
    store = Store.from_url(url)
    store.migrate()
    return store


def make_context(settings: Settings, store: Store | None = None) -> ApiContext:
    """The context for `settings` (the store is shared per DATABASE_URL within the process)."""
    redis = connect(settings) if settings.redis_url else None
    return ApiContext(settings, store, redis, RateLimiter(settings, redis))
