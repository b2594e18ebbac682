"""The SDK logs an outage the way the worker does (`observability/outages.py`): one line per
failure kind per minute, a count, and a line when it is over, not a line or a traceback per call.

The outages are real: a TCP forwarder in front of Redis or PostgreSQL is cut while the bot keeps
asking; a Redis restart without persistence (the ingest stream and its group gone) is the stream's
keys deleted under a live consumer. The log records are counted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from itertools import count

import pytest
from support import TcpProxy, wait_for

from observability import keys, redis_client
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store
from observability.store.stream import StreamConsumer


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def failures_in(recovery: str) -> int:
    return int(re.search(r"recovered after (\d+) failure", recovery).group(1))


def test_gate_reads_during_a_redis_outage_log_one_line_and_a_recovery(
    pg_url: str, redis_url: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    Store.from_url(pg_url).migrate()
    proxy = TcpProxy.for_url(redis_url).start()
    client = ObservabilityClient(settings=make_settings(pg_url, proxy.url))
    caplog.set_level(logging.INFO, logger="observability")
    ids = count()
    try:
        assert client.ai_may_respond(f"c-{next(ids)}") is True
        caplog.clear()
        proxy.stop()
        # the gate retries Redis once a second (reading the store in between): ask, with new
        # conversations so no cached answer is used, for 3 s of outage
        end = time.monotonic() + 3.0
        assert wait_for(lambda: client.ai_may_respond(f"c-{next(ids)}") and time.monotonic() >= end, 20.0)
        down = lines(caplog, "control state not readable from Redis")
        assert len(down) == 1, down  # unthrottled: one line per retry
        assert not any(r.exc_info for r in caplog.records if r.name == "observability.sdk"), "no tracebacks"

        proxy.start()
        back = "control state reads from Redis recovered"
        assert wait_for(lambda: client.ai_may_respond(f"c-{next(ids)}") and lines(caplog, back), 20.0)
        [recovered] = lines(caplog, back)
        assert failures_in(recovered) >= 2, f"the recovery line counts every failed read: {recovered}"
        assert len(lines(caplog, "control state not readable from Redis")) == 1
    finally:
        client.close()
        proxy.stop()


def test_operator_message_reads_during_a_store_outage_log_one_line_and_a_recovery(
    pg_url: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    Store.from_url(pg_url).migrate()
    proxy = TcpProxy.for_url(pg_url).start()
    client = ObservabilityClient(settings=make_settings(proxy.url))
    caplog.set_level(logging.INFO, logger="observability")
    try:
        assert client.operator_messages("c-1") == []
        caplog.clear()
        proxy.stop()
        for _ in range(5):
            assert client.operator_messages("c-1") == [], "an outage answers 'no messages', never raises"
        down = lines(caplog, "cannot read operator messages")
        assert len(down) == 1, down
        assert not any(r.exc_info for r in caplog.records), "an outage is no bug: no tracebacks"

        proxy.start()
        back = "operator message reads recovered"
        assert wait_for(lambda: client.operator_messages("c-1") == [] and lines(caplog, back), 20.0)
        [recovered] = lines(caplog, back)
        assert failures_in(recovered) >= 5, recovered
    finally:
        client.close()
        proxy.stop()


def test_a_vanishing_consumer_group_is_one_line_then_a_recovery(
    sqlite_url: str, redis_url: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(sqlite_url, redis_url)
    store = Store.from_url(sqlite_url)
    store.migrate()
    redis = redis_client.connect(settings)
    consumer = StreamConsumer(store, redis, settings, "w-vanish")
    caplog.set_level(logging.INFO, logger="observability")
    try:
        assert consumer.drain_once() == 0
        for _ in range(4):  # Redis restarted without persistence before each drain: the group is gone
            redis.delete(keys.ingest_stream(settings.redis_prefix))
            assert consumer.drain_once() == 0
        down = lines(caplog, "ingest stream or consumer group vanished")
        assert len(down) == 1, down
        assert consumer.drain_once() == 0  # the group is there again
        [recovered] = lines(caplog, "ingest stream consumer group recovered")
        assert failures_in(recovered) == 4, recovered
    finally:
        redis.delete(keys.ingest_stream(settings.redis_prefix))
        store.dispose()
