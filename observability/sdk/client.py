"""`ObservabilityClient`, the one object a bot uses. It never blocks or breaks the bot.

Every `record_*` call validates its arguments on the caller's thread, builds its event with the
`observability.events` builder of its kind and hands it to the transport's queue: no I/O, no
SQLAlchemy, no lock. A bad argument is logged in one line naming the method and the field, counted
in `stats()["rejected"]`, and never raised (an observability SDK must not take the bot down): a
`usage=` that `record_llm_call` cannot read is rejected so too, never stored as a free call. The
rest of the client's work is delegated: delivery to
`transport`, the gate to `gates`, operator replies and hand-back instructions to `operator`.

`record_llm_call` is the hot path: a bot may call it thousands of times a second, so its common case
is checked in one expression and only an unusual call takes the field-by-field checks that name
what is wrong (`bench/sdk.py` measures it).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from observability import events as ev
from observability.events import EventRejected, check_bool, check_count, check_ms, check_str
from observability.redis_client import connect
from observability.sdk.control_feed import ControlFeed
from observability.sdk.gates import Gates
from observability.sdk.ids import new_id
from observability.sdk.operator import OperatorMessages
from observability.sdk.store_reads import StoreReads
from observability.sdk.transport import Transport
from observability.settings import Settings, get_settings
from observability.timeutil import to_epoch

log = logging.getLogger("observability.sdk")

F = TypeVar("F", bound=Callable[..., Any])

_now = time.time
_INF = math.inf
_MAX_COUNT = ev.MAX_COUNT
_LLM = ev.LIMITS[ev.KIND_LLM]
_LEN_ID, _LEN_BOT, _LEN_MODEL, _LEN_PROVIDER = _LLM["trace_id"], _LLM["bot"], _LLM["model"], _LLM["provider"]
_LEN_AGENT, _LEN_DTYPE, _LEN_ERROR = _LLM["agent"], _LLM["decision_type"], _LLM["error_type"]
_LEN_CONV = _LLM["conversation_id"]
_LEN_OPERATION = ev.LIMITS[ev.KIND_OPERATION]["operation"]
_LEN_REASON = ev.LIMITS[ev.KIND_HANDOFF]["reason"]
_LEN_ACCOUNT_ID, _LEN_ACCOUNT_NAME = ev.LIMITS[ev.KIND_ACCOUNT]["id"], ev.LIMITS[ev.KIND_ACCOUNT]["name"]
_LEN_AUTHOR = ev.LIMITS[ev.KIND_MESSAGE]["author"]
_METRIC = ev.LIMITS[ev.KIND_METRIC]
_ACTIVITY = ev.LIMITS[ev.KIND_ACTIVITY]


def _ts(timestamp: datetime) -> float:
    if not isinstance(timestamp, datetime):
        raise EventRejected(f"timestamp must be a datetime, got {type(timestamp).__name__}")
    ts = to_epoch(timestamp)
    if not 0.0 <= ts < ev.MAX_TS:
        raise EventRejected(f"timestamp must be between 1970 and 9999, got {timestamp.isoformat():.40}")
    return ts


def _check_llm_call(
    trace_id: Any, model: Any, provider: Any, input_tokens: Any, output_tokens: Any, latency_ms: Any,
    cache_hit: Any, conversation_id: Any, bot: Any, agent: Any, decision_type: Any, success: Any,
    error_type: Any, cache_read_tokens: Any, cache_write_tokens: Any, cost_usd: Any,
) -> None:  # fmt: skip
    """Every argument of `record_llm_call`, field by field: raises EventRejected naming the first bad one."""
    check_str("model", model, required=True, max_len=_LEN_MODEL)
    check_str("provider", provider, required=True, max_len=_LEN_PROVIDER)
    check_count("input_tokens", input_tokens)
    check_count("output_tokens", output_tokens)
    check_count("cache_read_tokens", cache_read_tokens)
    check_count("cache_write_tokens", cache_write_tokens)
    if cache_read_tokens + cache_write_tokens > input_tokens:
        raise EventRejected(
            "cache_read_tokens + cache_write_tokens exceed input_tokens (input_tokens counts cached tokens too)"
        )
    check_ms("latency_ms", latency_ms)
    check_bool("cache_hit", cache_hit)
    check_bool("success", success)
    if cost_usd is not None:
        check_ms("cost_usd", cost_usd)
    check_str("trace_id", trace_id, required=True, max_len=_LEN_ID)
    check_str("conversation_id", conversation_id, max_len=_LEN_CONV)
    check_str("bot", bot, max_len=_LEN_BOT)
    check_str("agent", agent, max_len=_LEN_AGENT)
    check_str("decision_type", decision_type, max_len=_LEN_DTYPE)
    check_str("error_type", error_type, max_len=_LEN_ERROR)


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
        self.settings = s = s.replace(**overrides) if overrides else s
        self._max_text = s.sdk_max_text_bytes
        self._closed = False
        redis = connect(s)
        self._transport = Transport(s, redis)
        self.spool = self._transport.spool
        self._put = self._transport.put
        self._counts = self._transport.counts
        reads = self._reads = StoreReads(s)
        feed = self._feed = ControlFeed(s, redis)
        self._gates = Gates(s, redis, feed, reads)
        self._operator = OperatorMessages(s, feed, reads, pushed=redis is not None)
        atexit.register(self.close)

    def _reject(self, method: str, exc: Exception) -> None:
        self._counts["rejected"] += 1
        log.warning("observability %s rejected: %.200s", method, exc)

    # ------------------------------------------------------------------ recording
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
        """Record one LLM call; returns its trace id.

        `usage` takes the provider's usage as returned, object or dict: OpenAI's (`prompt_tokens` or
        Responses' `input_tokens`, cached tokens included) or Anthropic's (cached parts added up);
        see `events.usage_tokens`. A `usage` it cannot read is rejected like any bad argument
        (logged naming the field, counted in `stats()["rejected"]`, nothing recorded): read as zero
        tokens the call would be stored as free."""
        tid = trace_id or new_id()
        try:
            if usage is not None:
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens = ev.usage_tokens(usage)
            ts = _now() if timestamp is None else _ts(timestamp)
            S = str
            if not (  # the common case in one expression; anything else is checked field by field
                type(model) is S and 0 < len(model) <= _LEN_MODEL and not model.isspace()
                and type(provider) is S and 0 < len(provider) <= _LEN_PROVIDER and not provider.isspace()
                and type(input_tokens) is int and type(output_tokens) is int and type(cache_read_tokens) is int
                and type(cache_write_tokens) is int and 0 <= output_tokens <= _MAX_COUNT
                and cache_read_tokens >= 0 and cache_write_tokens >= 0
                and cache_read_tokens + cache_write_tokens <= input_tokens <= _MAX_COUNT
                and type(latency_ms) is float and 0.0 <= latency_ms < _INF
                and type(cache_hit) is bool and type(success) is bool and cost_usd is None
                and type(tid) is S and 0 < len(tid) <= _LEN_ID and not tid.isspace()
                and (conversation_id is None or (type(conversation_id) is S and len(conversation_id) <= _LEN_CONV))
                and (bot is None or (type(bot) is S and len(bot) <= _LEN_BOT))
                and (agent is None or (type(agent) is S and len(agent) <= _LEN_AGENT))
                and (decision_type is None or (type(decision_type) is S and len(decision_type) <= _LEN_DTYPE))
                and (error_type is None or (type(error_type) is S and len(error_type) <= _LEN_ERROR))
            ):  # fmt: skip
                _check_llm_call(tid, model, provider, input_tokens, output_tokens, latency_ms, cache_hit,
                                conversation_id, bot, agent, decision_type, success, error_type,
                                cache_read_tokens, cache_write_tokens, cost_usd)  # fmt: skip
                latency_ms = float(latency_ms)
            self._put(ev.llm_call(
                tid, ts, bot=bot, agent=agent, decision_type=decision_type, model=model, provider=provider,
                input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens, latency_ms=latency_ms, cache_hit=cache_hit,
                cost_usd=cost_usd, conversation_id=conversation_id, success=success, error_type=error_type,
            ))  # fmt: skip
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
            check_str("error_type", error_type, max_len=_LEN_ERROR)
            ts = _now() if timestamp is None else _ts(timestamp)
            self._put(ev.operation(new_id(), ts, bot=bot_name, operation=operation, duration_ms=float(duration_ms),
                                   success=success, cache_hit=cache_hit, error_type=error_type))  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("track_operation", exc)

    def _timed(self, bot_name: str, operation: str, start: float, exc: BaseException | None = None) -> None:
        ms = (time.perf_counter() - start) * 1000
        if exc is None:
            self.track_operation(bot_name, operation, ms)
        else:
            self.track_operation(bot_name, operation, ms, success=False, error_type=type(exc).__name__)

    @asynccontextmanager
    async def track_async_operation(self, bot_name: str, operation: str):  # noqa: ANN201
        """Times the block; an exception is recorded as a failure (its class as error_type)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self._timed(bot_name, operation, start, exc)
            raise
        self._timed(bot_name, operation, start)

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
                    self._timed(bot_name, operation, start, exc)
                    raise
                self._timed(bot_name, operation, start)
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
            check_str("error_type", error_type, max_len=_LEN_ERROR)
            ts = _now() if timestamp is None else _ts(timestamp)
            self._put(ev.interaction(new_id(), ts, bot=bot_type, duration_ms=float(duration_ms), success=success,
                                     cache_hit=cache_hit, error_type=error_type))  # fmt: skip
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
        conversation_id: str | None = None,
    ) -> None:
        """A handoff from bot `source` to bot `target`. With `conversation_id`, it is placed on that
        conversation's timeline in the console (without, it counts in the handoff figures only)."""
        try:
            check_str("source", source, required=True, max_len=_LEN_BOT)
            check_str("target", target, required=True, max_len=_LEN_BOT)
            check_bool("success", success)
            check_ms("duration_ms", duration_ms)
            check_bool("blocked", blocked)
            check_str("reason", reason, max_len=_LEN_REASON)
            check_str("conversation_id", conversation_id, max_len=_LEN_CONV)
            ts = _now() if timestamp is None else _ts(timestamp)
            self._put(ev.handoff(new_id(), ts, source=source, target=target, success=success,
                                 duration_ms=float(duration_ms), blocked=blocked, reason=reason,
                                 conversation_id=conversation_id))  # fmt: skip
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
            if role == "operator":  # bots deliver those to end users as a person's words
                raise EventRejected(
                    "role 'operator' is refused: operator replies are sent through the console's control "
                    "service (send_operator_message), which checks who may write them and audits each one"
                )
            if role not in ev.MESSAGE_ROLES:  # 'operator' is refused above: not offered here
                raise EventRejected(f"role must be 'user' or 'bot', got {role!r:.20}")
            ev.check_text("text", text, self._max_text)
            check_str("bot", bot, max_len=_LEN_BOT)
            check_str("account_id", account_id, max_len=_LEN_ACCOUNT_ID)
            check_str("author", author, max_len=_LEN_AUTHOR)
            ts = _now() if timestamp is None else _ts(timestamp)
            self._put(ev.message(new_id(), ts, conversation_id=conversation_id, role=role, text=text, bot=bot,
                                 account_id=account_id, author=author))  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("record_message", exc)

    def set_account(self, account_id: str, *, name: str | None = None, vip: bool = False) -> None:
        try:
            check_str("account_id", account_id, required=True, max_len=_LEN_ACCOUNT_ID)
            check_str("name", name, max_len=_LEN_ACCOUNT_NAME)
            check_bool("vip", vip)
            self._put(ev.account(account_id, _now(), name=name, vip=vip))
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
            check_str("metric_name", metric_name, required=True, max_len=_METRIC["metric_name"])
            ev.check_number("value", value)
            check_str("metric_type", metric_type, required=True, max_len=_METRIC["metric_type"])
            check_str("account_id", account_id, max_len=_METRIC["account_id"])
            check_str("conversation_id", conversation_id, max_len=_METRIC["conversation_id"])
            check_str("user_id", user_id, max_len=_METRIC["user_id"])
            ev.check_metadata(metadata)
            ts = _now() if timestamp is None else _ts(timestamp)
            self._put(ev.metric(new_id(), ts, metric_name=metric_name, metric_type=metric_type, value=float(value),
                                account_id=account_id, conversation_id=conversation_id, user_id=user_id,
                                metadata=metadata))  # fmt: skip
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
            check_str("event_type", event_type, required=True, max_len=_ACTIVITY["event_type"])
            check_str("title", title, required=True, max_len=_ACTIVITY["title"])
            if severity not in ev.SEVERITIES:
                raise EventRejected(f"severity must be one of {ev.SEVERITIES}, got {severity!r:.20}")
            check_str("category", category, required=True, max_len=_ACTIVITY["category"])
            if description is not None:
                ev.check_text("description", description, self._max_text)
            check_str("account_id", account_id, max_len=_ACTIVITY["account_id"])
            check_str("conversation_id", conversation_id, max_len=_ACTIVITY["conversation_id"])
            check_str("user_id", user_id, max_len=_ACTIVITY["user_id"])
            ev.check_metadata(metadata)
            ts = _now() if timestamp is None else _ts(timestamp)
            self._put(ev.activity(new_id(), ts, event_type=event_type, title=title, description=description,
                                  severity=severity, category=category, account_id=account_id,
                                  conversation_id=conversation_id, user_id=user_id, metadata=metadata))  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._reject("log_activity", exc)

    # ------------------------------------------------------------------ human take-over
    def ai_may_respond(self, conversation_id: str) -> bool:
        """False while a human holds the conversation, it is stopped, or all bots are stopped.

        Answers from a cache at most `CONTROL_CACHE_S` old; with Redis, published changes clear
        the cache at once. Redis is trusted while it holds a complete mirror of the control state;
        before that, and while Redis is unreachable, the store is read. If the control state cannot
        be read at all, the last known answer stands (True when nothing is known yet).
        """
        return self._gates.ai_may_respond(conversation_id)

    def handoff_instructions(self, conversation_id: str) -> str | None:
        """What the operator asked the AI to keep in mind when handing the conversation back
        (None when nothing was left). Cached like the gate; never raises."""
        return self._operator.handoff_instructions(conversation_id)

    def operator_messages(self, conversation_id: str, since: datetime | None = None) -> list[dict]:
        """Operator replies typed in the console for this conversation, oldest first.

        Each is a dict: id, conversation_id, ts (aware UTC datetime), text (PII-redacted), author.
        With `since`, only later ones. Reads the store; never raises (logs and returns []).
        """
        return self._operator.operator_messages(conversation_id, since)

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
        self._operator.subscribe(callback, conversation_id, since)

    # ------------------------------------------------------------------ delivery
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is in the store or stream (spool included). Never raises."""
        return self._transport.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (spooling what cannot be sent) and stop the background threads."""
        if self._closed:
            return
        self._closed = True
        self._transport.close(timeout)
        self._feed.close()
        self._operator.close()
        self._reads.close()
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001
            pass

    def stats(self) -> dict:
        """Counters: queued, written, spilled, replayed, dropped, rejected, and pending now."""
        out = self._transport.stats()
        out["spool_files"] = len(self.spool.pending())
        return out

    def __enter__(self) -> ObservabilityClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
