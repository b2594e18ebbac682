"""During an outage the worker writes one line per failure kind per minute, with a count, and no
tracebacks; when the store is back it says so, with how many failures it rode out.

The outage is real: a TCP forwarder in front of PostgreSQL is cut while a bot keeps writing to the
Redis stream and the worker keeps ticking; the worker's own log records are counted.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from support import TcpProxy, free_port, record_llm_calls, wait_for

from observability import redis_client
from observability.outages import OutageLog
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.worker.runner import Worker

TICKS_DOWN = 8


def failure_kind(message: str) -> str:
    """The kind a worker line is about: its text before the exception detail."""
    return re.split(r": |\(", message, maxsplit=1)[0].strip()


def test_a_store_outage_logs_one_line_per_failure_kind_with_a_count_and_no_tracebacks(
    pg_url: str, redis_url: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    truth = Store.from_url(pg_url)
    truth.migrate()
    proxy = TcpProxy.for_url(pg_url).start()
    via_proxy = proxy.url
    settings = make_settings(via_proxy, redis_url, worker_http_port=free_port(), worker_tick_s=0.2)
    store = Store.from_url(via_proxy)
    worker = Worker(store, settings, redis=redis_client.connect(settings), worker_id="w-outage")
    client = ObservabilityClient(settings=settings)
    caplog.set_level(logging.INFO, logger="observability")
    try:
        worker.tick()
        assert worker.leading, "the only worker leads"
        caplog.clear()

        proxy.stop()  # PostgreSQL unreachable: refused from now on, open connections cut
        sent = record_llm_calls(client, 0, 200)
        assert client.flush(5.0), "the bot writes to Redis, which is up"
        for _ in range(TICKS_DOWN):
            outcomes = worker.tick()
            assert outcomes.get("ingest", "").startswith("error"), outcomes
        down = [r for r in caplog.records if r.levelno >= logging.WARNING]
        kinds = Counter(failure_kind(r.getMessage()) for r in down)
        assert kinds, "the outage is logged"
        assert all(n == 1 for n in kinds.values()), f"one line per kind while the outage lasts: {kinds}"
        assert "ingest drain failed" in kinds and "worker steps failed" in kinds, kinds
        assert "leader lock check failed" in kinds, kinds
        assert len(down) <= 6, [r.getMessage() for r in down]  # unthrottled: dozens, in 8 ticks
        assert not any(r.exc_info for r in down), "an outage is no bug: no tracebacks"
        assert all("\n" not in r.getMessage() for r in down), "each failure is one line"
        caplog.clear()

        proxy.start()
        assert wait_for(lambda: worker.tick().get("ingest") is None and _stored(truth) == len(sent), 30.0)
        recovered = [r.getMessage() for r in caplog.records if "recovered after" in r.getMessage()]
        ingest = [m for m in recovered if m.startswith("ingest drain recovered")]
        assert len(ingest) == 1, recovered
        count = int(re.search(r"after (\d+) failure", ingest[0]).group(1))
        assert count >= TICKS_DOWN, f"the recovery line counts every failed drain: {ingest[0]}"
        assert any(m.startswith("worker steps") for m in recovered), recovered
    finally:
        client.close()
        worker.close()
        proxy.stop()
        store.dispose()
        truth.dispose()


def _stored(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.llm_calls)).scalar() or 0)


def test_a_long_outage_writes_one_line_a_minute_that_counts_what_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [1000.0]
    outages = OutageLog(logging.getLogger("observability.test"), clock=lambda: clock[0])
    caplog.set_level(logging.INFO, logger="observability.test")
    error = ConnectionRefusedError(111, "Connection refused\n\tIs the server running?")
    lines = 0
    for _ in range(300):  # one failure every second for five minutes
        lines += outages.failure("ingest", "ingest drain failed", error)
        clock[0] += 1.0
    assert lines == 5
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages[0]
        == "ingest drain failed: ConnectionRefusedError: [Errno 111] Connection refused Is the server running?"
    )
    assert "(60 times in the last 60 s, 61 since it began 60 s ago)" in messages[1], messages[1]
    assert "300 since it began" not in messages[-1] and "241 since it began 240 s ago" in messages[-1]
    assert outages.failing() == {"ingest": 300}
    assert outages.recovered("ingest")
    assert caplog.records[-1].getMessage() == "ingest recovered after 300 failure(s) over 300 s"
    assert not outages.recovered("ingest"), "a success without a failure before it says nothing"


def test_a_bug_keeps_its_traceback_once_and_is_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    outages = OutageLog(logging.getLogger("observability.test"))
    caplog.set_level(logging.INFO, logger="observability.test")
    for _ in range(5):
        outages.failure("steps KeyError", "worker steps failed (rollups)", KeyError("bot"))
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
