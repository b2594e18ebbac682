"""The SDK bots import. It never blocks or breaks the bot.

`record_*` validates its arguments, builds a flat event list and appends it to a bounded deque:
no I/O, no SQLAlchemy, no lock held on the caller's thread. When the deque is full the event is
dropped and counted (one log line per burst), never raised. A daemon thread closes a batch on
size or interval, whichever first, and sends it to the Redis ingest stream (`REDIS_URL`) or
straight into the SQL store. A failing sink is retried with backoff; after that batches go to
the local spool while a probe checks now and then whether the sink is back, and then the spool is
replayed. Every event carries an id, so a batch delivered twice is stored once.

Human take-over: `ai_may_respond` is the gate (Redis while its mirror is complete, else the
store); `on_operator_message(callback)` delivers the operator's replies on a daemon thread (Redis
pub/sub, or a store poll), `operator_messages` and `handoff_instructions` read the store. None of
them raises into the bot.

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
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from os import urandom as _urandom
from typing import Any, TypeVar

from observability import events as ev
from observability import keys, telemetry
from observability.conversation_state import gate_open
from observability.events import EventRejected, check_bool, check_count, check_ms, check_str
from observability.sdk.spool import Spool
from observability.settings import Settings, get_settings
from observability.timeutil import as_aware, from_epoch, to_epoch, to_naive_utc

log = logging.getLogger("observability.sdk")

F = TypeVar("F", bound=Callable[..., Any])

_LOOKBACK = timedelta(seconds=10)  # a store poll for operator messages re-reads this far back (deduplicated)


def _operator_message(item: Any) -> dict | None:
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


def _new_id() -> str:
    """A random 128-bit id as 32 hex digits (a uuid4's randomness, the OpenTelemetry trace-id form).

    `os.urandom(16).hex()` costs a tenth of `uuid.uuid4().hex`, which matters on the hot path.
    """
    return _urandom(16).hex()


def _ts(timestamp: datetime | None) -> float:
    if timestamp is None:
        return time.time()
    if not isinstance(timestamp, datetime):
        raise EventRejected(f"timestamp must be a datetime, got {type(timestamp).__name__}")
    ts = to_epoch(timestamp)
    if not 0.0 <= ts < ev.MAX_TS:
        raise EventRejected(f"timestamp must be between 1970 and 9999, got {timestamp.isoformat():.40}")
    return ts


# Longest value each string column holds: checked on the caller's thread, so a name too long for
# PostgreSQL is rejected with a clear log line instead of failing its whole batch later.
_LEN_ID = ev.column_limit(ev.KIND_LLM, "trace_id")
_LEN_BOT = ev.column_limit(ev.KIND_LLM, "bot")
_LEN_MODEL = ev.column_limit(ev.KIND_LLM, "model")
_LEN_NAME = ev.column_limit(ev.KIND_LLM, "agent")  # agent, decision_type, error_type, provider, ...
_LEN_CONV = ev.column_limit(ev.KIND_LLM, "conversation_id")
_LEN_OPERATION = ev.column_limit(ev.KIND_OPERATION, "operation")
_LEN_REASON = ev.column_limit(ev.KIND_HANDOFF, "reason")
_LEN_ACCOUNT_NAME = ev.column_limit(ev.KIND_ACCOUNT, "name")
_LEN_METRIC_TYPE = ev.column_limit(ev.KIND_METRIC, "metric_type")
_LEN_TITLE = ev.column_limit(ev.KIND_ACTIVITY, "title")
_LEN_CATEGORY = ev.column_limit(ev.KIND_ACTIVITY, "category")


def usage_tokens(usage: Any) -> tuple[int, int, int, int]:
    """(input incl. cached, output, cache_read, cache_write) from an Anthropic `usage`.

    Anthropic reports uncached input apart from cache reads and writes; our `input_tokens` counts
    them all (the OpenTelemetry GenAI convention), so the parts are added up here. Works with the
    SDK's `Usage` object and with a plain dict.
    """

    if not isinstance(usage, dict) and not hasattr(usage, "input_tokens"):
        raise EventRejected(f"usage must be an Anthropic usage object or dict, got {type(usage).__name__}")

    def get(name: str) -> int:
        v = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        if v is None:
            return 0
        if type(v) is not int:
            raise EventRejected(f"usage.{name} must be an integer, got {v!r:.40}")
        return v

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
        from observability.store.ingest import write_batch

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
        self.key = keys.ingest_stream(settings.redis_prefix)

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
        self._sending: list | None = None  # the batch the flush thread is delivering now
        self._counts = {"queued": 0, "written": 0, "spilled": 0, "replayed": 0, "dropped": 0,
                        "rejected": 0}  # fmt: skip
        self._dropping = False
        self._sink_down_until = 0.0
        self._sink_down = False  # set when retries gave up; then one probe a second, not a retry burst
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
        self._gate_gen = 0  # bumped whenever the control state may have changed
        self._redis_gate_down_until = 0.0
        self._handoff_cache: dict[str, tuple[float, str | None]] = {}
        self._op_callbacks: list[tuple[Callable[[dict], Any], str | None, datetime, OrderedDict]] = []
        self._op_inbox: deque = deque(maxlen=10_000)
        self._op_wake = threading.Event()
        self._op_thread: threading.Thread | None = None
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
        log.warning("observability %s rejected: %.200s", method, exc)

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
        tid = trace_id or _new_id()
        try:
            if usage is not None:
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens = usage_tokens(usage)
            check_str("model", model, required=True, max_len=_LEN_MODEL)
            check_str("provider", provider, required=True, max_len=_LEN_NAME)
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
            check_str("trace_id", tid, required=True, max_len=_LEN_ID)
            check_str("conversation_id", conversation_id, max_len=_LEN_CONV)
            check_str("bot", bot, max_len=_LEN_BOT)
            check_str("agent", agent, max_len=_LEN_NAME)
            check_str("decision_type", decision_type, max_len=_LEN_NAME)
            check_str("error_type", error_type, max_len=_LEN_NAME)
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
            check_str("bot_name", bot_name, required=True, max_len=_LEN_BOT)
            check_str("operation", operation, required=True, max_len=_LEN_OPERATION)
            check_ms("duration_ms", duration_ms)
            check_bool("success", success)
            check_bool("cache_hit", cache_hit)
            check_str("error_type", error_type, max_len=_LEN_NAME)
            self._put([ev.KIND_OPERATION, _new_id(), _ts(timestamp), bot_name, operation,
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
            check_str("bot_type", bot_type, required=True, max_len=_LEN_BOT)
            check_ms("duration_ms", duration_ms)
            check_bool("success", success)
            check_bool("cache_hit", cache_hit)
            check_str("error_type", error_type, max_len=_LEN_NAME)
            self._put([ev.KIND_INTERACTION, _new_id(), _ts(timestamp), bot_type,
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
            check_str("source", source, required=True, max_len=_LEN_BOT)
            check_str("target", target, required=True, max_len=_LEN_BOT)
            check_bool("success", success)
            check_ms("duration_ms", duration_ms)
            check_bool("blocked", blocked)
            check_str("reason", reason, max_len=_LEN_REASON)
            self._put([ev.KIND_HANDOFF, _new_id(), _ts(timestamp), source, target, success,
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
            check_str("conversation_id", conversation_id, required=True, max_len=_LEN_CONV)
            if role not in ev.MESSAGE_ROLES:
                raise EventRejected(f"role must be one of {sorted(ev.MESSAGE_ROLES)}, got {role!r:.20}")
            ev.check_text("text", text, self._max_text)
            check_str("bot", bot, max_len=_LEN_BOT)
            check_str("account_id", account_id, max_len=100)
            check_str("author", author, max_len=100)
            self._put([ev.KIND_MESSAGE, _new_id(), _ts(timestamp), conversation_id, role,
                       text, bot, account_id, author])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("record_message", exc)

    def set_account(self, account_id: str, *, name: str | None = None, vip: bool = False) -> None:
        try:
            check_str("account_id", account_id, required=True, max_len=100)
            check_str("name", name, max_len=_LEN_ACCOUNT_NAME)
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
            check_str("metric_type", metric_type, required=True, max_len=_LEN_METRIC_TYPE)
            check_str("account_id", account_id, max_len=100)
            check_str("conversation_id", conversation_id, max_len=100)
            check_str("user_id", user_id, max_len=100)
            ev.check_metadata(metadata)
            self._put([ev.KIND_METRIC, _new_id(), _ts(timestamp), metric_name, metric_type,
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
            check_str("title", title, required=True, max_len=_LEN_TITLE)
            if severity not in ev.SEVERITIES:
                raise EventRejected(f"severity must be one of {ev.SEVERITIES}, got {severity!r:.20}")
            check_str("category", category, required=True, max_len=_LEN_CATEGORY)
            if description is not None:
                ev.check_text("description", description, self._max_text)
            check_str("account_id", account_id, max_len=100)
            check_str("conversation_id", conversation_id, max_len=100)
            check_str("user_id", user_id, max_len=100)
            ev.check_metadata(metadata)
            self._put([ev.KIND_ACTIVITY, _new_id(), _ts(timestamp), event_type, title,
                       description, severity, category, account_id, conversation_id, user_id,
                       metadata])  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("log_activity", exc)

    # ------------------------------------------------------------------ gates
    def ai_may_respond(self, conversation_id: str) -> bool:
        """False while a human holds the conversation, it is stopped, or all bots are stopped.

        Answers from a cache at most `CONTROL_CACHE_S` old; with Redis, published changes clear
        the cache at once. Redis is trusted while it holds a complete mirror of the control state
        (`control_synced_key`); before that, and while Redis is unreachable, the store is read.
        If the control state cannot be read at all, the last known answer stands (True when
        nothing is known yet) and the failure is logged.
        """
        now = time.monotonic()
        hit = self._gate_cache.get(conversation_id)
        if hit is not None and now - hit[0] < self.settings.control_cache_s:
            return hit[1]
        gen = self._gate_gen
        try:
            stopped, state = self._read_gate(conversation_id)
            allowed = gate_open(stopped, state)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read control state for %s: %s", conversation_id, exc)
            return hit[1] if hit is not None else True
        if len(self._gate_cache) > 10_000:
            self._gate_cache.clear()
        if gen == self._gate_gen:  # a change published while reading must not be cached over
            self._gate_cache[conversation_id] = (now, allowed)
        return allowed

    def _read_gate(self, conversation_id: str) -> tuple[bool, str | None]:
        if self._redis is None or time.monotonic() < self._redis_gate_down_until:
            return self._read_store_gate(conversation_id)
        prefix = self.settings.redis_prefix
        try:
            self._ensure_subscriber()
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(keys.control_system(prefix))
            pipe.hget(keys.control_conversations(prefix), conversation_id)
            pipe.exists(keys.control_synced(prefix))
            system, state, synced = pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis is only an accelerator: ask the store
            self._redis_gate_down_until = time.monotonic() + 1.0
            log.warning("control state not readable from Redis (%s); reading the store", type(exc).__name__)
            return self._read_store_gate(conversation_id)
        stopped = system in (b"stopped", "stopped")
        state = state.decode() if isinstance(state, bytes) else state
        if synced:
            return stopped, state
        try:  # Redis is new or was restarted: its mirror may be incomplete
            return self._read_store_gate(conversation_id)
        except Exception as exc:  # noqa: BLE001
            log.debug("store not readable for the gate (%s); using Redis", type(exc).__name__)
            return stopped, state

    def _control_store(self):  # noqa: ANN202 - observability.store.Store, imported lazily
        with self._gate_lock:
            if self._gate_store is None:
                from observability.store import Store

                self._gate_store = Store.from_url(self.settings.database_url)
            return self._gate_store

    def _read_store_gate(self, conversation_id: str) -> tuple[bool, str | None]:
        from observability.store.control_state import read_from_store

        with self._control_store().connect() as conn:
            return read_from_store(conn, conversation_id)

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

    def _invalidate_control(self) -> None:
        self._gate_gen += 1
        self._gate_cache.clear()
        self._handoff_cache.clear()

    def _listen_control(self) -> None:
        channel = keys.control_channel(self.settings.redis_prefix)
        while not self._closed:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                self._invalidate_control()
                while not self._closed:
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None:
                        self._on_control_event(msg.get("data"))
                pubsub.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("control subscription lost: %s", exc)
                self._invalidate_control()
                time.sleep(0.5)

    def _on_control_event(self, data: Any) -> None:
        try:
            payload = json.loads(data) if data else {}
        except (TypeError, ValueError):
            payload = {}
        message = payload.get("operator_message") if isinstance(payload, dict) else None
        if isinstance(message, dict):
            self._op_inbox.append(message)
            self._op_wake.set()
            return
        self._invalidate_control()

    # ------------------------------------------------------------------ human take-over
    def handoff_instructions(self, conversation_id: str) -> str | None:
        """What the operator asked the AI to keep in mind when handing the conversation back
        (None when nothing was left). Cached like the gate; never raises."""
        now = time.monotonic()
        hit = self._handoff_cache.get(conversation_id)
        if hit is not None and now - hit[0] < self.settings.control_cache_s:
            return hit[1]
        gen = self._gate_gen
        try:
            import sqlalchemy as sa

            from observability.store import schema

            c = schema.conversations
            with self._control_store().connect() as conn:
                value = conn.execute(
                    sa.select(c.c.ai_handoff_instructions).where(c.c.id == conversation_id)
                ).scalar()
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read handoff instructions for %s: %s", conversation_id, type(exc).__name__)
            return hit[1] if hit is not None else None
        if len(self._handoff_cache) > 10_000:
            self._handoff_cache.clear()
        if gen == self._gate_gen:
            self._handoff_cache[conversation_id] = (now, value)
        return value

    def operator_messages(self, conversation_id: str, since: datetime | None = None) -> list[dict]:
        """Operator replies typed in the console for this conversation, oldest first.

        Each is a dict: id, conversation_id, ts (aware UTC datetime), text (PII-redacted), author.
        With `since`, only later ones. Reads the store; never raises (logs and returns []).
        """
        try:
            return self._query_operator_messages(conversation_id, to_naive_utc(since))
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read operator messages for %s: %s", conversation_id, type(exc).__name__)
            return []

    def _query_operator_messages(
        self, conversation_id: str | None, after: datetime | None, limit: int = 500
    ) -> list[dict]:
        import sqlalchemy as sa

        from observability.store import schema

        m = schema.messages
        q = sa.select(m.c.id, m.c.conversation_id, m.c.ts, m.c.text, m.c.author).where(m.c.role == "operator")
        if conversation_id is not None:
            q = q.where(m.c.conversation_id == conversation_id)
        if after is not None:
            q = q.where(m.c.ts > after)
        with self._control_store().connect() as conn:
            rows = conn.execute(q.order_by(m.c.ts, m.c.id).limit(limit)).all()
        return [{"id": r.id, "conversation_id": r.conversation_id, "ts": as_aware(r.ts), "text": r.text,
                 "author": r.author} for r in rows]  # fmt: skip

    def on_operator_message(
        self,
        callback: Callable[[dict], Any],
        *,
        conversation_id: str | None = None,
        since: datetime | None = None,
    ) -> None:
        """Call `callback(message)` on a background thread for every new operator reply.

        `message` is the dict of `operator_messages`. Replies stored after `since` (default: now)
        are delivered once each, in order, for every conversation or only `conversation_id`.
        With Redis they arrive by pub/sub within milliseconds (a store poll every few seconds
        catches any missed); without Redis the store is polled every `CONTROL_CACHE_S`. An
        exception in the callback is logged and delivery goes on.
        """
        if not callable(callback):
            log.warning("on_operator_message: callback is not callable; ignored")
            return
        floor = to_naive_utc(since) if since is not None else from_epoch(time.time())
        with self._gate_lock:
            self._op_callbacks.append((callback, conversation_id, floor, OrderedDict()))
            if self._op_thread is None or not self._op_thread.is_alive():
                self._op_thread = threading.Thread(
                    target=self._deliver_operator_messages, name="observability-operator", daemon=True
                )
                self._op_thread.start()
        if self._redis is not None:
            self._ensure_subscriber()

    def _deliver_operator_messages(self) -> None:
        cache_s = self.settings.control_cache_s
        poll_s = cache_s if self._redis is None else max(5.0, cache_s)
        watermark: datetime | None = None
        next_poll = 0.0
        while not self._closed:
            self._op_wake.wait(max(0.0, min(next_poll - time.monotonic(), 1.0)))
            self._op_wake.clear()
            if self._closed:
                return
            try:
                batch = [m for m in (_operator_message(x) for x in self._drain_inbox()) if m is not None]
                callbacks = list(self._op_callbacks)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + poll_s
                    floor = min(cb[2] for cb in callbacks)
                    after = floor if watermark is None else max(floor, watermark - _LOOKBACK)
                    try:
                        batch.extend(self._query_operator_messages(None, after))
                    except Exception as exc:  # noqa: BLE001
                        log.debug("operator message poll failed: %s", type(exc).__name__)
                for m in sorted(batch, key=lambda m: m["ts"]):
                    ts = to_naive_utc(m["ts"])
                    watermark = ts if watermark is None else max(watermark, ts)
                    for callback, only, floor, seen in callbacks:
                        wanted = only is None or only == m["conversation_id"]
                        if ts <= floor or not wanted or m["id"] in seen:
                            continue
                        seen[m["id"]] = None
                        if len(seen) > 10_000:
                            seen.popitem(last=False)
                        try:
                            callback(dict(m))
                        except Exception as exc:  # noqa: BLE001 - the bot's bug must not stop delivery
                            log.warning("operator message callback failed: %r", exc)
            except Exception:  # noqa: BLE001 - this thread must outlive any bug
                log.exception("operator message delivery failed; will retry")
                time.sleep(0.5)

    def _drain_inbox(self) -> list:
        out = []
        while self._op_inbox:
            out.append(self._op_inbox.popleft())
        return out

    # ------------------------------------------------------------------ flushing
    def _run(self) -> None:
        interval = self.settings.sdk_flush_interval_s
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._drain()
                self._replay_spool()
            except Exception:  # noqa: BLE001 - the flush thread must outlive any bug
                log.exception("observability flush failed; will retry")
                time.sleep(min(interval, 1.0))
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
                # while the sink is down every batch goes to the spool: write bigger files, since
                # each costs an fsync, so that spilling keeps up with a busy bot
                size = self._batch * 20 if self._sink_down else self._batch
                for _ in range(min(size, len(dq))):
                    batch.append(dq.popleft())
                if self._dropping and len(dq) < self._max // 2:
                    self._dropping = False
                self._sending = batch
                self._send(batch)
            finally:
                self._sending = None
                with self._cond:
                    self._inflight -= 1

    def _send(self, batch: list) -> None:
        """`_send_batch` in an optional OpenTelemetry span (flush thread only; a no-op without OTel)."""
        if not telemetry.enabled():
            self._send_batch(batch)
            return
        telemetry.count_events(batch)
        spilled, dropped = self._counts["spilled"], self._counts["dropped"]
        with telemetry.optional_span("observability.sdk", "flush", **{"obs.batch_size": len(batch)}) as span:
            self._send_batch(batch)
            if self._counts["spilled"] > spilled or self._counts["dropped"] > dropped:
                span.mark_failed("spooled")

    def _send_batch(self, batch: list) -> None:
        """Deliver with retries; when the sink is down, spill to the spool at once."""
        if time.monotonic() < self._sink_down_until:
            self._spill(batch)
            return
        delay = self.settings.sdk_retry_backoff_s
        retries = 0 if self._sink_down else self.settings.sdk_max_retries  # a known-down sink: one probe
        for attempt in range(retries + 1):
            try:
                self._deliver(batch)
                self._counts["written"] += len(batch)
                self._sink_back()
                return
            except _PartiallyRejected as exc:
                self._counts["written"] += len(batch) - exc.count
                self._counts["rejected"] += exc.count
                self._sink_back()
                return
            except Exception as exc:  # noqa: BLE001
                if attempt == retries or self._closed:  # closing: spool now, do not wait out retries
                    if not self._sink_down:
                        log.warning(
                            "observability sink unavailable, spooling batches until it is back: %s", exc
                        )
                    break
                time.sleep(delay)
                delay *= 2
        self._sink_down = True
        self._sink_down_until = time.monotonic() + 1.0
        self._spill(batch)

    def _sink_back(self) -> None:
        if self._sink_down:
            self._sink_down = False
            log.info("observability sink available again")

    def _deliver(self, batch: list) -> None:
        self._sink.write(batch)

    def _spill(self, batch: list) -> None:
        try:
            self.spool.spill(batch)
            self._counts["spilled"] += len(batch)
        except Exception as exc:  # noqa: BLE001 - a full disk or an unserialisable event
            self._counts["dropped"] += len(batch)
            log.error("cannot spool %d events (dropped): %s", len(batch), exc)

    def _replay_spool(self) -> None:
        # counted as in flight before looking at the spool, so that flush() never sees a file
        # that is claimed (renamed) but not yet sent as "nothing pending, nothing in flight"
        with self._cond:
            self._inflight += 1
        try:
            if time.monotonic() >= self._sink_down_until and self.spool.has_pending():
                self._replay_pending()
        finally:
            with self._cond:
                self._inflight -= 1

    def _replay_pending(self) -> None:
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
            # a few files at a time, so new events keep flowing while a long backlog is replayed
            self.spool.replay(send, limit=20)
            self._sink_back()
            if self.spool.has_pending():
                self._wake.set()
        except Exception as exc:  # noqa: BLE001
            log.info("spool replay paused, sink still unavailable: %s", exc)
            self._sink_down = True
            self._sink_down_until = time.monotonic() + 1.0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is in the store or stream (spool included). Never raises."""
        deadline = time.monotonic() + timeout
        while True:
            # order matters: the queue, then what is in flight, then the spool (see _replay_spool)
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
        sending = self._sending
        if self._thread.is_alive() and sending:
            # the flush thread is stuck delivering (a hanging connect): keep a copy of its batch on
            # disk before the process exits; ids make a second delivery harmless
            self._spill(list(sending))
        if self._dq:  # the sink never came back: keep the rest on disk
            rest = []
            while self._dq:
                rest.append(self._dq.popleft())
            self._spill(rest)
        self._op_wake.set()
        if self._op_thread is not None:
            self._op_thread.join(timeout=1.0)
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
