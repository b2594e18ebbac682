"""The control channel as the SDK hears it: one Redis pub/sub subscriber per client.

Control services publish every gate change and every operator message on one channel
(`keys.control_channel`). This thread turns a change into a bump of `generation` plus the change
listeners (the gate and hand-back caches clear themselves), and an operator message into a call of
the message listener. While the subscription is (re)established nothing is known to be current, so
the caches are cleared then too. Without Redis, `start` does nothing and nothing ever changes here.
`FeedCache` is such a cache: answers kept for `CONTROL_CACHE_S`, forgotten at once on a change.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from observability import keys
from observability.settings import Settings

log = logging.getLogger("observability.sdk")

T = TypeVar("T")
_MAX_CACHED = 10_000


class ControlFeed:
    def __init__(self, settings: Settings, redis: Any | None) -> None:
        self.generation = 0  # bumped whenever the control state may have changed
        self._channel = keys.control_channel(settings.redis_prefix)
        self._redis = redis
        self._change_listeners: list[Callable[[], None]] = []
        self._message_listener: Callable[[dict], None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def on_change(self, listener: Callable[[], None]) -> None:
        self._change_listeners.append(listener)

    def on_operator_message(self, listener: Callable[[dict], None]) -> None:
        self._message_listener = listener

    def start(self) -> None:
        """Subscribe (once; again if the thread died). Cheap when already running."""
        if self._redis is None or self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._listen, name="observability-control", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closed = True

    def _changed(self) -> None:
        self.generation += 1
        for listener in self._change_listeners:
            listener()

    def _listen(self) -> None:
        while not self._closed:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                self._changed()
                while not self._closed:
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None:
                        self._on_event(msg.get("data"))
                pubsub.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("control subscription lost: %s", exc)
                self._changed()
                time.sleep(0.5)

    def _on_event(self, data: Any) -> None:
        try:
            payload = json.loads(data) if data else {}
        except (TypeError, ValueError):
            payload = {}
        message = payload.get("operator_message") if isinstance(payload, dict) else None
        if isinstance(message, dict):
            if self._message_listener is not None:
                self._message_listener(message)
            return
        self._changed()


class FeedCache:
    """Answers read from Redis or the store, each kept for `max_age_s`, all forgotten on a change."""

    def __init__(self, feed: ControlFeed, max_age_s: float, what: str) -> None:
        self._feed = feed
        self._max_age_s = max_age_s
        self._what = what  # for the log line when a read fails
        self._entries: dict[str, tuple[float, Any]] = {}
        feed.on_change(self._entries.clear)

    def get(self, key: str, read: Callable[[str], T], default: T) -> T:
        """`read(key)`, cached. When it fails: the last known answer, else `default` (logged, never raised)."""
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self._max_age_s:
            return hit[1]
        gen = self._feed.generation
        try:
            value = read(key)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read %s for %s: %s", self._what, key, type(exc).__name__)
            return hit[1] if hit is not None else default
        if len(self._entries) > _MAX_CACHED:
            self._entries.clear()
        if gen == self._feed.generation:  # a change published while reading must not be cached over
            self._entries[key] = (now, value)
        return value
