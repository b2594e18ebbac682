"""The one way this project opens a Redis connection, with timeouts from the settings.

The SDK, the worker and the control services all connect here, so a Redis that hangs delays each of
them by at most `REDIS_SOCKET_TIMEOUT_S` (a blocking stream read adds its own block time) and a
Redis that is down is noticed within `REDIS_CONNECT_TIMEOUT_S`. redis-py is imported only when a
client is made: a bot or console without `REDIS_URL` never loads it.
"""

from __future__ import annotations

from typing import Any

from observability.settings import Settings, get_settings


def connect(settings: Settings | None = None, *, blocking_s: float = 0.0) -> Any | None:
    """A new client for `REDIS_URL`, or None without Redis.

    `blocking_s` is the longest server-side block the caller asks for (`XREADGROUP BLOCK`, a
    pub/sub wait), added to the socket timeout so a block is not mistaken for a dead server.
    """
    s = settings or get_settings()
    if not s.redis_url:
        return None
    import redis

    return redis.Redis.from_url(
        s.redis_url,
        socket_timeout=s.redis_socket_timeout_s + max(blocking_s, 0.0),
        socket_connect_timeout=s.redis_connect_timeout_s,
    )
