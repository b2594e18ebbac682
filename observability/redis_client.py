"""The one way this project opens a Redis connection, with timeouts from the settings.

The SDK, the worker and the control services all connect here, so a Redis that hangs delays each of
them by at most `REDIS_SOCKET_TIMEOUT_S` (a blocking stream read adds its own block time) and a
Redis that is down is noticed within `REDIS_CONNECT_TIMEOUT_S`. redis-py is imported only when a
client is made: a bot or console without `REDIS_URL` never loads it.

With `REDIS_CLUSTER=true`, `REDIS_URL` names any node of a Redis Cluster and the client is redis-py's
`RedisCluster`, which finds the other nodes and sends each command to the node owning its key's
slot. Callers use it as they use a plain client: the key names (`observability.keys`) keep each
multi-key command and transaction within one slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
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

    timeouts = {
        "socket_timeout": s.redis_socket_timeout_s + max(blocking_s, 0.0),
        "socket_connect_timeout": s.redis_connect_timeout_s,
    }
    if s.redis_cluster:
        from redis.cluster import RedisCluster

        url = s.redis_url
        # redis-py retries a command on a moved slot or a failed-over node itself
        return LazyCluster(lambda: RedisCluster.from_url(url, **timeouts))
    return redis.Redis.from_url(s.redis_url, **timeouts)


def connect_async(settings: Settings | None = None) -> Any | None:
    """A new `redis.asyncio` client for `REDIS_URL` (or None without Redis), with the same timeouts,
    for code on an event loop (the API). Bound to the loop it is first used on: make one per loop."""
    s = settings or get_settings()
    if not s.redis_url:
        return None
    timeouts = {
        "socket_timeout": s.redis_socket_timeout_s,
        "socket_connect_timeout": s.redis_connect_timeout_s,
    }
    if s.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(s.redis_url, **timeouts)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(s.redis_url, **timeouts)


class LazyCluster:
    """A `RedisCluster` made on first use, whose "cannot reach the cluster" is a ConnectionError.

    `RedisCluster` connects while it is constructed and reports an unreachable cluster with an
    exception outside redis-py's `RedisError` family. A plain client does neither, and every caller
    (a bot's SDK, the worker) treats a RedisError as "Redis is down, try later": so a bot starting
    while the cluster is down starts anyway, and an outage looks the same on both kinds of Redis.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _translated(self._factory)()
        return self._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._get(), name)
        return _translated(attr) if callable(attr) else attr


def _translated(fn: Callable[..., Any]) -> Callable[..., Any]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(str(exc)) from exc

    return call


@dataclass(frozen=True)
class Persistence:
    """Whether a Redis keeps what it holds across a restart (AOF), as far as it lets us see.

    `durable` is None when Redis would not say (CONFIG and INFO both refused); `source` is where
    the answer came from ("CONFIG", "INFO", or "" when neither answered)."""

    durable: bool | None
    appendonly: bool | None
    save: str | None  # the RDB snapshot schedule ("" = none); None when CONFIG is disabled
    source: str
    error: str | None = None

    @property
    def reason(self) -> str | None:
        """Why the undrained ingest backlog is at risk, in a sentence for /healthz and the console."""
        if self.durable:
            return None
        risk = ("a Redis restart loses the events still waiting in the ingest stream (written by bots, "
                "not yet stored by a worker); set appendonly yes")  # fmt: skip
        if self.durable is None:
            return f"cannot tell whether Redis persists its data ({self.error}); if it does not, {risk}"
        if self.save:
            return f"Redis persists only by RDB snapshots (appendonly no, save {self.save!r}): {risk}"
        if self.save == "":
            return f"Redis has no persistence (appendonly no, save ''): {risk}"
        return f"Redis has no append-only file (INFO persistence: aof_enabled:0; CONFIG is disabled): {risk}"

    def as_dict(self) -> dict[str, Any]:
        return {"durable": self.durable, "appendonly": self.appendonly, "save": self.save,
                "source": self.source, "reason": self.reason}  # fmt: skip


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def persistence(client: Any) -> Persistence:
    """Ask Redis whether it persists: `CONFIG GET appendonly` and `save`, or, where CONFIG is
    disabled or renamed (managed Redis often does that), `INFO persistence` (AOF only)."""
    import redis

    try:
        got = {_text(k): _text(v) for k, v in client.config_get("appendonly").items()}
        got.update({_text(k): _text(v) for k, v in client.config_get("save").items()})
        aof = got.get("appendonly", "no").strip().lower() == "yes"
        save = got.get("save", "").strip()
        return Persistence(durable=aof, appendonly=aof, save=save, source="CONFIG")
    except redis.ResponseError as exc:  # CONFIG disabled, renamed or not allowed for this user
        config_error = str(exc)
    try:
        info = client.info("persistence")
    except redis.ResponseError as exc:
        return Persistence(None, None, None, "", f"CONFIG: {config_error}; INFO: {exc}")
    aof = str(info.get("aof_enabled", "0")) == "1"
    return Persistence(durable=aof, appendonly=aof, save=None, source="INFO")


def persistence_warning(settings: Settings | None = None) -> str | None:
    """The console's question: is the configured Redis at risk of losing the ingest backlog?
    None without Redis, or when it persists; the reason otherwise (also when it cannot be reached)."""
    client = connect(settings)
    if client is None:
        return None
    try:
        return persistence(client).reason
    except Exception as exc:  # noqa: BLE001 - the console shows it; it never breaks the page
        return f"cannot check Redis persistence: {type(exc).__name__}: {exc}"[:300]
    finally:
        client.close()
