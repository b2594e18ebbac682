"""What the operator says reaches the bot: operator replies typed in the console, and the
instructions left when a conversation is handed back to the AI.

`operator_messages` and `handoff_instructions` read the store (`StoreReads`). `subscribe` delivers
new replies to callbacks on one daemon thread: with Redis they arrive by pub/sub within
milliseconds (`ControlFeed`), and a store poll every few seconds catches any missed; without Redis
the store is polled every `CONTROL_CACHE_S`. Each reply reaches each callback once, in order. None
of this raises into the bot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from observability import events as ev
from observability.outages import OutageLog
from observability.sdk.control_feed import ControlFeed, FeedCache
from observability.sdk.store_reads import StoreReads
from observability.settings import Settings
from observability.timeutil import as_aware, from_epoch, to_naive_utc

log = logging.getLogger("observability.sdk")

_LOOKBACK = timedelta(seconds=10)  # a store poll re-reads this far back (deduplicated)
_MAX_REMEMBERED = 10_000


# OutageLog kinds
READ = "operator message reads"
DELIVERY = "operator message delivery"


def published_message(item: Any) -> dict | None:
    """An operator message published on the control channel, checked (None if malformed)."""
    if not isinstance(item, dict):
        return None
    mid, cid, ts, text = item.get("id"), item.get("conversation_id"), item.get("ts"), item.get("text")
    if not (isinstance(mid, str) and isinstance(cid, str) and isinstance(text, str)
            and type(ts) in (int, float) and 0 <= ts < ev.MAX_TS):  # fmt: skip
        return None
    author = item.get("author")
    return {"id": mid, "conversation_id": cid, "ts": as_aware(from_epoch(ts)), "text": text,
            "author": author if isinstance(author, str) else None}  # fmt: skip


class OperatorMessages:
    def __init__(self, settings: Settings, feed: ControlFeed, reads: StoreReads, *, pushed: bool) -> None:
        self.settings = settings
        self._feed = feed
        self._reads = reads
        self._pushed = pushed  # True with Redis: replies are published, the store poll is a safety net
        self._handoff = FeedCache(feed, settings.control_cache_s, "handoff instructions")
        self._callbacks: list[tuple[Callable[[dict], Any], str | None, datetime, OrderedDict]] = []
        self._inbox: deque = deque(maxlen=_MAX_REMEMBERED)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._outages = OutageLog(log)  # one line per failure kind per minute, with a count
        feed.on_operator_message(self._published)

    def handoff_instructions(self, conversation_id: str) -> str | None:
        return self._handoff.get(conversation_id, self._reads.handoff_instructions, None)

    def operator_messages(self, conversation_id: str, since: datetime | None = None) -> list[dict]:
        try:
            found = self._reads.operator_messages(conversation_id, to_naive_utc(since))
        except Exception as exc:  # noqa: BLE001
            self._outages.failure(READ, "cannot read operator messages (an empty list returned)", exc)
            return []
        self._outages.recovered(READ, "operator message reads")
        return found

    def subscribe(
        self, callback: Callable[[dict], Any], conversation_id: str | None, since: datetime | None
    ) -> None:
        if not callable(callback):
            log.warning("on_operator_message: callback is not callable; ignored")
            return
        floor = to_naive_utc(since) if since is not None else from_epoch(time.time())
        with self._lock:
            self._callbacks.append((callback, conversation_id, floor, OrderedDict()))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._deliver, name="observability-operator", daemon=True
                )
                self._thread.start()
        self._feed.start()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _published(self, message: dict) -> None:
        self._inbox.append(message)
        self._wake.set()

    def _drain_inbox(self) -> list[dict]:
        out = []
        while self._inbox:
            m = published_message(self._inbox.popleft())
            if m is not None:
                out.append(m)
        return out

    def _deliver(self) -> None:
        cache_s = self.settings.control_cache_s
        poll_s = max(5.0, cache_s) if self._pushed else cache_s
        watermark: datetime | None = None
        next_poll = 0.0
        while not self._closed:
            self._wake.wait(max(0.0, min(next_poll - time.monotonic(), 1.0)))
            self._wake.clear()
            if self._closed:
                return
            try:
                batch = self._drain_inbox()
                callbacks = list(self._callbacks)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + poll_s
                    floor = min(cb[2] for cb in callbacks)
                    after = floor if watermark is None else max(floor, watermark - _LOOKBACK)
                    try:
                        batch.extend(self._reads.operator_messages(None, after))
                    except Exception as exc:  # noqa: BLE001
                        log.debug("operator message poll failed: %s", type(exc).__name__)
                for m in sorted(batch, key=lambda m: m["ts"]):
                    ts = to_naive_utc(m["ts"])
                    watermark = ts if watermark is None else max(watermark, ts)
                    for callback, only, floor, seen in callbacks:
                        if (
                            ts <= floor
                            or (only is not None and only != m["conversation_id"])
                            or m["id"] in seen
                        ):
                            continue
                        seen[m["id"]] = None
                        if len(seen) > _MAX_REMEMBERED:
                            seen.popitem(last=False)
                        try:
                            callback(dict(m))
                        except Exception as exc:  # noqa: BLE001 - the bot's bug must not stop delivery
                            log.warning("operator message callback failed: %r", exc)
            except Exception as exc:  # noqa: BLE001 - this thread must outlive any bug
                # a traceback once (OutageLog keeps it for the first non-outage failure), then a count
                self._outages.failure(DELIVERY, "operator message delivery failed; will retry", exc)
                time.sleep(0.5)
            else:
                self._outages.recovered(DELIVERY, "operator message delivery")
