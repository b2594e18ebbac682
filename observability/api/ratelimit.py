"""Requests per user and minute: API_RATE_LIMIT_PER_MIN for every endpoint, and a stricter
API_EMERGENCY_RATE_LIMIT_PER_MIN for emergency resets and the resume. A STOP (one conversation or
system-wide) is never counted and never refused: stopping must always be possible.

Fixed one-minute windows. With Redis the counters live there (`keys.api_rate`, INCR and EXPIRE in one
Lua script, sent without blocking the event loop), so every console process shares them; without
Redis, or while Redis fails, they are kept in this process (a Redis fault must not lock users out of
the API). After a Redis failure the next RETRY_REDIS_S seconds count in process without asking Redis,
so an outage does not add a connect timeout to every request; the failure is logged once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from observability import keys
from observability.outages import OutageLog
from observability.redis_client import connect_async
from observability.settings import Settings

log = logging.getLogger(__name__)
RETRY_REDIS_S = 5.0
# one round trip: count, and give a new minute's counter its expiry (EVALSHA once Redis knows it)
COUNT = """local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return n"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # seconds until the window ends (0 when allowed)


class RateLimiter:
    """Counts a user's requests per scope (`api`, `emergency`) in the current minute."""

    def __init__(self, settings: Settings, redis: Any | None = None) -> None:
        self.settings = settings
        self.redis = redis  # a sync client: not used for counting, only says Redis is configured
        self.outages = OutageLog(log)
        self._lock = threading.Lock()
        self._local: dict[tuple[str, str, int], int] = {}
        self._aredis: tuple[asyncio.AbstractEventLoop, tuple[Any, Any]] | None = (
            None  # loop, (client, script)
        )
        self._redis_down_until = 0.0

    def limit_for(self, scope: str) -> int:
        s = self.settings
        return s.api_emergency_rate_limit_per_min if scope == "emergency" else s.api_rate_limit_per_min

    async def hit(self, user: str, scope: str = "api", now: float | None = None) -> Verdict:
        """Count one request and say whether it may go ahead."""
        limit = self.limit_for(scope)
        if limit <= 0:
            return Verdict(True, 0, 0, 0)
        t = time.time() if now is None else now
        minute = int(t // 60)
        retry = max(1, int(60 - (t - minute * 60)))
        count = await self._count_redis(user, scope, minute) if self.redis is not None else None
        if count is None:
            count = self._count_local(user, scope, minute)
        if count > limit:
            return Verdict(False, limit, 0, retry)
        return Verdict(True, limit, limit - count, 0)

    def _client(self) -> tuple[Any, Any]:
        """The async client for the running loop (a test client may run each request on a new loop),
        and the counting script registered on it."""
        loop = asyncio.get_running_loop()
        if self._aredis is None or self._aredis[0] is not loop:
            client = connect_async(self.settings)
            self._aredis = (loop, (client, client.register_script(COUNT)))
        return self._aredis[1]

    async def _count_redis(self, user: str, scope: str, minute: int) -> int | None:
        if time.monotonic() < self._redis_down_until:
            return None
        key = keys.api_rate(self.settings.redis_prefix, user, scope, minute)
        try:
            count = int(await self._client()[1](keys=[key]))
        except Exception as exc:  # noqa: BLE001 - fall back to this process's counters
            self._redis_down_until = time.monotonic() + RETRY_REDIS_S
            self._aredis = None
            self.outages.failure("rate limit", "rate limit counters in process: Redis failed", exc)
            return None
        self.outages.recovered("rate limit")
        return count

    def _count_local(self, user: str, scope: str, minute: int) -> int:
        with self._lock:
            if len(self._local) > 10_000:  # forget past minutes
                self._local = {k: v for k, v in self._local.items() if k[2] >= minute}
            k = (user, scope, minute)
            self._local[k] = self._local.get(k, 0) + 1
            return self._local[k]
