"""`ai_may_respond`: may the AI answer in this conversation now?

The answer comes from a cache at most `CONTROL_CACHE_S` old; with Redis, a published change clears
the cache at once (`ControlFeed`). Redis is trusted while it holds a complete mirror of the control
state (`keys.control_synced`); before that, and while Redis is unreachable, the store is read
(`StoreReads`). If the control state cannot be read at all, the last known answer stands (True when
nothing is known yet) and the failure is logged: a gate never raises into the bot. Failures are logged
through an `OutageLog`: one line per minute with a count while Redis is down, one when it is back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from observability import keys
from observability.conversation_state import gate_open
from observability.outages import OutageLog
from observability.sdk.control_feed import ControlFeed, FeedCache
from observability.sdk.store_reads import StoreReads
from observability.settings import Settings

log = logging.getLogger("observability.sdk")

REDIS_READ = "control state from Redis"  # the OutageLog kind of a failed Redis read


class Gates:
    def __init__(self, settings: Settings, redis: Any | None, feed: ControlFeed, reads: StoreReads) -> None:
        self.settings = settings
        self._redis = redis
        self._feed = feed
        self._reads = reads
        self._cache = FeedCache(feed, settings.control_cache_s, "control state")
        self._redis_down_until = 0.0
        self._outages = OutageLog(log)

    def ai_may_respond(self, conversation_id: str) -> bool:
        return self._cache.get(conversation_id, self._open, True)

    def _open(self, conversation_id: str) -> bool:
        return gate_open(*self._read(conversation_id))

    def _read(self, conversation_id: str) -> tuple[bool, str | None]:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return self._reads.gate(conversation_id)
        prefix = self.settings.redis_prefix
        try:
            self._feed.start()
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(keys.control_system(prefix))
            pipe.hget(keys.control_conversations(prefix), conversation_id)
            pipe.exists(keys.control_synced(prefix))
            system, state, synced = pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis is only an accelerator: ask the store
            self._redis_down_until = time.monotonic() + 1.0
            self._outages.failure(REDIS_READ, "control state not readable from Redis; reading the store", exc)
            return self._reads.gate(conversation_id)
        self._outages.recovered(REDIS_READ, "control state reads from Redis")
        stopped = system in (b"stopped", "stopped")
        state = state.decode() if isinstance(state, bytes) else state
        if synced:
            return stopped, state
        try:  # Redis is new or was restarted: its mirror may be incomplete
            return self._reads.gate(conversation_id)
        except Exception as exc:  # noqa: BLE001
            log.debug("store not readable for the gate (%s); using Redis", type(exc).__name__)
            return stopped, state
