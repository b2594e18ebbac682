"""The SDK bots import. It never blocks or breaks the bot.

`record_*` validates its arguments, builds a flat event list and appends it to a bounded deque:
no I/O, no SQLAlchemy, no lock held on the caller's thread. When the deque is full the event is
dropped and counted (one log line per burst), never raised. A daemon thread closes a batch on
size or interval, whichever first, and sends it to the Redis ingest stream (`REDIS_URL`) or
straight into the SQL store. A failing sink is retried with backoff; after that batches go to
the local spool while a probe checks now and then whether the sink is back, and then the spool is
replayed. Every event carries an id, so a batch delivered twice is stored once.

Imports: settings, events, the control-state helpers and (lazily, off the caller's thread) the
store and ingest path. Never the worker, alerting, control services or Streamlit.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from observability import control_state as cs
from observability import events as ev
from observability.events import EventRejected, check_bool, check_count, check_ms, check_str
from observability.settings import Settings, get_settings
from observability.spool import Spool
from observability.timeutil import to_epoch

log = logging.getLogger("observability.sdk")

F = TypeVar("F", bound=Callable[..., Any])


def _ts(timestamp: datetime | None) -> float:
    if timestamp is None:
        return time.time()
    if not isinstance(timestamp, datetime):
        raise EventRejected(f"timestamp must be a datetime, got {type(timestamp).__name__}")
    return to_epoch(timestamp)


def usage_tokens(usage: Any) -> tuple[int, int, int, int]:
    """(input incl. cached, output, cache_read, cache_write) from an Anthropic `usage`.

    Anthropic reports uncached input apart from cache reads and writes; our `input_tokens` counts
    them all (the OpenTelemetry GenAI convention), so the parts are added up here. Works with the
    SDK's `Usage` object and with a plain dict.
    """

    def get(name: str) -> int:
        v = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return int(v or 0)

    uncached = get("input_tokens")
    read = get("cache_read_input_tokens")
    write = get("cache_creation_input_tokens")
    return uncached + read + write, get("output_tokens"), read, write


class _StoreSink:
    """Writes batches through the shared ingest path into the SQL store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = None

    def store(self):  # noqa: ANN201
        if self._store is None:
            from observability.store import Store

            store = Store.from_url(self.settings.database_url)
            store.migrate()
            self._store = store
        return self._store

    def write(self, batch: list) -> None:
        from observability.ingest import write_batch

        result = write_batch(self.store(), batch, self.settings)
        if result.rejected:
            raise _PartiallyRejected(result.rejected)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


class _RedisSink:
    """One XADD per batch: the whole batch is one JSON document in one stream entry."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.redis = redis
        self.key = cs.ingest_stream_key(settings.redis_prefix)

    def write(self, batch: list) -> None:
        self.redis.xadd(self.key, {"v": "1", "e": json.dumps(batch, separators=(",", ":"))})

    def close(self) -> None:
        pass


class _PartiallyRejected(Exception):
    """The sink stored the batch but rejected some events (counted, not retried)."""

    def __init__(self, count: int) -> None:
        self.count = count


class ObservabilityClient:
    """Record LLM calls, operations, interactions, handoffs, messages, metrics and activity.

    Safe to share between threads; create one per process.
    """

    def __init__(
        self,
        database_url: str | None = None,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        s = settings or get_settings()
        if database_url:
            overrides["database_url"] = database_url
        if redis_url:
            overrides["redis_url"] = redis_url
        self.settings = s.replace(**overrides) if overrides else s
        s = self.settings
        self._dq: deque = deque()
        self._max = s.sdk_queue_size
        self._batch = s.sdk_batch_size
        self._max_text = s.sdk_max_text_bytes
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._closed = False
        self._inflight = 0
        self._counts = {"queued": 0, "written": 0, "spilled": 0, "replayed": 0, "dropped": 0,
                        "rejected": 0}  # fmt: skip
        self._dropping = False
        self._sink_down_until = 0.0
        self.spool = Spool(s.spool_dir)
        self._redis = None
        if s.redis_url:
            import redis as redis_lib

            self._redis = redis_lib.Redis.from_url(
                s.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self._sink: _StoreSink | _RedisSink = _RedisSink(s, self._redis)
        else:
            self._sink = _StoreSink(s)
        self._gate_cache: dict[str, tuple[float, bool]] = {}
        self._gate_store = None
        self._gate_lock = threading.Lock()
        self._subscriber: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name="observability-flush", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ------------------------------------------------------------------ the hot path
    def _put(self, event: list) -> None:
        dq = self._dq
        if len(dq) >= self._max:
            self._counts["dropped"] += 1
            if not self._dropping:
                self._dropping = True
                log.warning("observability queue full (%d events): dropping new events", self._max)
            return
        dq.append(event)
        self._counts["queued"] += 1
        if len(dq) >= self._batch:
            self._wake.set()

    def _reject(self, method: str, exc: Exception) -> None:
        self._counts["rejected"] += 1
        log.warning("observability %s rejected: %s", method, exc)

    def record_llm_call(
        self,
        model: str,
        provider: str,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: float | None = None,
        *,
        cache_hit: bool = False,
        conversation_id: str | None = None,
        bot: str | None = None,
        agent: str | None = None,
        decision_type: str | None = None,
        success: bool = True,
        error_type: str | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cost_usd: float | None = None,
        trace_id: str | None = None,
        timestamp: datetime | None = None,
        usage: Any = None,
    ) -> str:
        """Record one LLM call; returns its trace id. `usage` takes an Anthropic usage object."""
        tid = trace_id or uuid.uuid4().hex
        try:
            if usage is not None:
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens = usage_tokens(usage)
            check_str("model", model, required=True)
            check_str("provider", provider, required=True)
            check_count("input_tokens", input_tokens)
            check_count("output_tokens", output_tokens)
            check_count("cache_read_tokens", cache_read_tokens)
            check_count("cache_write_tokens", cache_write_tokens)
            if cache_read_tokens + cache_write_tokens > input_tokens:
                raise EventRejected(
                    "cache_read_tokens + cache_write_tokens exceed input_tokens "
                    "(input_tokens counts cached tokens too)"
                )
            check_ms("latency_ms", latency_ms)
            check_bool("cache_hit", cache_hit)
            check_bool("success", success)
            if cost_usd is not None:
                check_ms("cost_usd", cost_usd)
            check_str("trace_id", tid, required=True, max_len=64)
            for name, v in (("conversation_id", conversation_id), ("bot", bot), ("agent", agent),
                            ("decision_type", decision_type), ("error_type", error_type)):  # fmt: skip
                check_str(name, v)
            self._put([ev.KIND_LLM, tid, _ts(timestamp), bot, agent, decision_type, model, provider,
                       input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                       float(latency_ms), cache_hit, cost_usd, conversation_id, success,
                       error_type])  # fmt: skip
        except EventRejected as exc:
            self._reject("record_llm_call", exc)
        except Exception as exc:  # noqa: BLE001 - never break the bot
            self._reject("record_llm_call", exc)
        return tid

    def track_operation(
        self,
        bot_name: str,
        operation: str,
        duration_ms: float,
        *,
        success: bool = True,
        cache_hit: bool = False,
        error_type: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        try:
            check_str("bot_name", bot_name, required=True)
            check_str("operation", operation, required=True)
            check_ms("duration_ms", duration_ms)
            check_bool("success", success)
            check_bool("cache_hit", cache_hit)
            check_str("error_type", error_type)
            self._put([ev.KIND_OPERATION, uuid.uuid4().hex, _ts(timestamp), bot_name, operation,
                       float(duration_ms), success, cache_hit, error_type])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("track_operation", exc)

    @asynccontextmanager
    async def track_async_operation(self, bot_name: str, operation: str):  # noqa: ANN201
        """Times the block; an exception is recorded as a failure (its class as error_type)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.track_operation(bot_name, operation, (time.perf_counter() - start) * 1000,
                                 success=False, error_type=type(exc).__name__)  # fmt: skip
            raise
        self.track_operation(bot_name, operation, (time.perf_counter() - start) * 1000)

    def track_performance(self, bot_name: str, operation: str) -> Callable[[F], F]:
        """Decorator for sync and async functions."""

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def awrapper(*args: Any, **kwargs: Any) -> Any:
                    async with self.track_async_operation(bot_name, operation):
                        return await fn(*args, **kwargs)

                return awrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    self.track_operation(bot_name, operation, (time.perf_counter() - start) * 1000,
                                         success=False, error_type=type(exc).__name__)  # fmt: skip
                    raise
                self.track_operation(bot_name, operation, (time.perf_counter() - start) * 1000)
                return result

            return wrapper  # type: ignore[return-value]

        return decorate

    def record_bot_interaction(
        self,
        bot_type: str,
        duration_ms: float,
        *,
        success: bool = True,
        cache_hit: bool = False,
        error_type: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        try:
            check_str("bot_type", bot_type, required=True)
            check_ms("duration_ms", duration_ms)
            check_bool("success", success)
            check_bool("cache_hit", cache_hit)
            check_str("error_type", error_type)
            self._put([ev.KIND_INTERACTION, uuid.uuid4().hex, _ts(timestamp), bot_type,
                       float(duration_ms), success, cache_hit, error_type])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("record_bot_interaction", exc)

    def record_handoff(
        self,
        source: str,
        target: str,
        *,
        success: bool = True,
        duration_ms: float = 0.0,
        blocked: bool = False,
        reason: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        try:
            check_str("source", source, required=True)
            check_str("target", target, required=True)
            check_bool("success", success)
            check_ms("duration_ms", duration_ms)
            check_bool("blocked", blocked)
            check_str("reason", reason, max_len=500)
            self._put([ev.KIND_HANDOFF, uuid.uuid4().hex, _ts(timestamp), source, target, success,
                       float(duration_ms), blocked, reason])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("record_handoff", exc)

    def record_message(
        self,
        conversation_id: str,
        role: str,
        text: str,
        *,
        bot: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
        author: str | None = None,
    ) -> None:
        try:
            check_str("conversation_id", conversation_id, required=True, max_len=100)
            if role not in ev.MESSAGE_ROLES:
                raise EventRejected(f"role must be one of {sorted(ev.MESSAGE_ROLES)}, got {role!r:.20}")
            ev.check_text("text", text, self._max_text)
            check_str("bot", bot)
            check_str("account_id", account_id, max_len=100)
            check_str("author", author, max_len=100)
            self._put([ev.KIND_MESSAGE, uuid.uuid4().hex, _ts(timestamp), conversation_id, role,
                       text, bot, account_id, author])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("record_message", exc)

    def set_account(self, account_id: str, *, name: str | None = None, vip: bool = False) -> None:
        try:
            check_str("account_id", account_id, required=True, max_len=100)
            check_str("name", name)
            check_bool("vip", vip)
            self._put([ev.KIND_ACCOUNT, account_id, time.time(), name, vip])
        except Exception as exc:  # noqa: BLE001
            self._reject("set_account", exc)

    def record_metric(
        self,
        metric_name: str,
        value: float,
        *,
        metric_type: str = "gauge",
        account_id: str | None = None,
        conversation_id: str | None = None,
        metadata: dict | None = None,
        timestamp: datetime | None = None,
        user_id: str | None = None,
    ) -> None:
        try:
            check_str("metric_name", metric_name, required=True, max_len=100)
            ev.check_number("value", value)
            check_str("metric_type", metric_type, required=True, max_len=50)
            check_str("account_id", account_id, max_len=100)
            check_str("conversation_id", conversation_id, max_len=100)
            check_str("user_id", user_id, max_len=100)
            ev.check_metadata(metadata)
            self._put([ev.KIND_METRIC, uuid.uuid4().hex, _ts(timestamp), metric_name, metric_type,
                       float(value), account_id, conversation_id, user_id, metadata])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("record_metric", exc)

    def log_activity(
        self,
        event_type: str,
        title: str,
        *,
        severity: str = "low",
        category: str = "system",
        description: str | None = None,
        account_id: str | None = None,
        conversation_id: str | None = None,
        metadata: dict | None = None,
        timestamp: datetime | None = None,
        user_id: str | None = None,
    ) -> None:
        try:
            check_str("event_type", event_type, required=True, max_len=100)
            check_str("title", title, required=True)
            if severity not in ev.SEVERITIES:
                raise EventRejected(f"severity must be one of {ev.SEVERITIES}, got {severity!r:.20}")
            check_str("category", category, required=True, max_len=50)
            if description is not None:
                ev.check_text("description", description, self._max_text)
            check_str("account_id", account_id, max_len=100)
            check_str("conversation_id", conversation_id, max_len=100)
            ev.check_metadata(metadata)
            self._put([ev.KIND_ACTIVITY, uuid.uuid4().hex, _ts(timestamp), event_type, title,
                       description, severity, category, account_id, conversation_id, user_id,
                       metadata])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("log_activity", exc)

    # ------------------------------------------------------------------ gates
    def ai_may_respond(self, conversation_id: str) -> bool:
        """False while a human holds the conversation, it is stopped, or all bots are stopped.

        Answers from a cache at most `CONTROL_CACHE_S` old; with Redis, published changes clear
        the cache at once. If the control state cannot be read, the last known answer stands
        (True when nothing is known yet) and the failure is logged.
        """
        now = time.monotonic()
        hit = self._gate_cache.get(conversation_id)
        if hit is not None and now - hit[0] < self.settings.control_cache_s:
            return hit[1]
        try:
            if self._redis is not None:
                self._ensure_subscriber()
                stopped, state = cs.read_from_redis(self._redis, self.settings.redis_prefix, conversation_id)
            else:
                with self._gate_lock:
                    if self._gate_store is None:
                        from observability.store import Store

                        self._gate_store = Store.from_url(self.settings.database_url)
                with self._gate_store.connect() as conn:
                    stopped, state = cs.read_from_store(conn, conversation_id)
            allowed = cs.gate_open(stopped, state)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read control state for %s: %s", conversation_id, exc)
            return hit[1] if hit is not None else True
        if len(self._gate_cache) > 10_000:
            self._gate_cache.clear()
        self._gate_cache[conversation_id] = (now, allowed)
        return allowed

    def _ensure_subscriber(self) -> None:
        if self._subscriber is not None and self._subscriber.is_alive():
            return
        with self._gate_lock:
            if self._subscriber is not None and self._subscriber.is_alive():
                return
            self._subscriber = threading.Thread(
                target=self._listen_control, name="observability-control", daemon=True
            )
            self._subscriber.start()

    def _listen_control(self) -> None:
        channel = cs.redis_channel(self.settings.redis_prefix)
        while not self._closed:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                self._gate_cache.clear()
                while not self._closed:
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None:
                        self._gate_cache.clear()
                pubsub.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("control subscription lost: %s", exc)
                self._gate_cache.clear()
                time.sleep(0.5)

    # ------------------------------------------------------------------ flushing
    def _run(self) -> None:
        interval = self.settings.sdk_flush_interval_s
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            self._drain()
            self._replay_spool()
            with self._cond:
                self._cond.notify_all()
            if self._closed and not self._dq:
                return

    def _drain(self) -> None:
        dq = self._dq
        while dq:
            batch = []
            with self._cond:
                self._inflight += 1
            try:
                for _ in range(min(self._batch, len(dq))):
                    batch.append(dq.popleft())
                if self._dropping and len(dq) < self._max // 2:
                    self._dropping = False
                self._send(batch)
            finally:
                with self._cond:
                    self._inflight -= 1

    def _send(self, batch: list) -> None:
        """Deliver with retries; when the sink is down, spill to the spool at once."""
        if time.monotonic() < self._sink_down_until:
            self._spill(batch)
            return
        delay = self.settings.sdk_retry_backoff_s
        for attempt in range(self.settings.sdk_max_retries + 1):
            try:
                self._deliver(batch)
                self._counts["written"] += len(batch)
                return
            except _PartiallyRejected as exc:
                self._counts["written"] += len(batch) - exc.count
                self._counts["rejected"] += exc.count
                return
            except Exception as exc:  # noqa: BLE001
                if attempt == self.settings.sdk_max_retries:
                    log.warning("observability sink unavailable, spooling batch: %s", exc)
                    break
                time.sleep(delay)
                delay *= 2
        self._sink_down_until = time.monotonic() + 1.0
        self._spill(batch)

    def _deliver(self, batch: list) -> None:
        self._sink.write(batch)

    def _spill(self, batch: list) -> None:
        try:
            self.spool.spill(batch)
            self._counts["spilled"] += len(batch)
        except OSError as exc:
            self._counts["dropped"] += len(batch)
            log.error("cannot spool %d events (dropped): %s", len(batch), exc)

    def _replay_spool(self) -> None:
        if time.monotonic() < self._sink_down_until or not self.spool.has_pending():
            return
        self.spool.recover_claims()

        def send(batch: list) -> None:
            try:
                self._deliver(batch)
            except _PartiallyRejected as exc:
                self._counts["rejected"] += exc.count
                self._counts["replayed"] += len(batch) - exc.count
                return
            self._counts["replayed"] += len(batch)

        try:
            self.spool.replay(send)
        except Exception as exc:  # noqa: BLE001
            log.info("spool replay paused, sink still unavailable: %s", exc)
            self._sink_down_until = time.monotonic() + 1.0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is in the store or stream (spool included). Never raises."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._dq and self._inflight == 0 and not self.spool.has_pending():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._thread.is_alive():
                return False
            if self._sink_down_until and time.monotonic() >= self._sink_down_until - 0.8:
                self._sink_down_until = 0.0  # probe again now: a flush is waiting
            self._wake.set()
            with self._cond:
                self._cond.wait(min(remaining, 0.2))

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (spooling what cannot be sent) and stop the background thread."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=max(1.0, timeout / 2))
        if self._dq:  # the sink never came back: keep the rest on disk
            rest = []
            while self._dq:
                rest.append(self._dq.popleft())
            self._spill(rest)
        self._sink.close()
        if self._gate_store is not None:
            self._gate_store.dispose()
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001
            pass

    def stats(self) -> dict:
        """Counters: queued, written, spilled, replayed, dropped, rejected, and pending now."""
        out = dict(self._counts)
        out["pending"] = len(self._dq)
        out["spool_files"] = len(self.spool.pending())
        return out

    def __enter__(self) -> "ObservabilityClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
