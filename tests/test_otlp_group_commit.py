"""Concurrent OTLP export requests share transactions, and a 200 still means stored.

The receiver writes the calls of every request that arrives while its transactions run in the next
transaction (group commit), with up to `OTLP_WRITE_TRANSACTIONS` transactions at once. A client must
never be told 200 for spans that are not durable: while the store holds the first transactions (a
real lock held by another PostgreSQL session), those and the requests queued behind them are not
answered and nothing of theirs is visible; once the lock is released, they are all answered 200 and
every call is stored once, in one transaction more than ran at once. When
the store is unreachable, every queued request gets a 503 and a retry stores each call once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from support import wait_for
from support.net import TcpProxy
from test_worker_http import json_span, otlp_json, post_json

from observability.settings import Settings
from observability.store import Store, schema
from observability.timeutil import EPOCH, utcnow
from observability.worker.server import serve

CALL = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 50}  # fmt: skip
REQUESTS = 6
SPANS = 5  # per request


def bodies(tag: str) -> list[dict]:
    now = utcnow() - timedelta(minutes=5)
    return [
        otlp_json([json_span({**CALL, "gen_ai.response.id": f"{tag}-{r}-{s}"}, start=now, ms=100)
                   for s in range(SPANS)])
        for r in range(REQUESTS)
    ]  # fmt: skip


def post_all(url: str, docs: list[dict], timeout: float = 10.0) -> tuple[list[threading.Thread], list[int]]:
    answers: list[int] = []

    def send(doc: dict) -> None:
        answers.append(post_json(url, doc, timeout=timeout)[0])

    threads = [threading.Thread(target=send, args=(d,)) for d in docs]
    for t in threads:
        t.start()
    return threads, answers


def call_ids(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(schema.llm_calls.c.trace_id)).scalars())


@pytest.mark.parametrize("at_once", [1, 2])
def test_requests_queued_behind_transactions_are_answered_once_stored_in_one_more(
    pg_store: Store, pg_url: str, make_settings: Callable[..., Settings], at_once: int
) -> None:
    srv = serve(pg_store, make_settings(pg_store.url, otlp_write_transactions=at_once), port=0)
    writer = srv.app.receiver.writer
    locker = sa.create_engine(pg_url)
    try:
        docs = bodies(f"grouped{at_once}")
        with locker.connect() as lock:
            lock.execute(sa.text("LOCK TABLE llm_calls IN EXCLUSIVE MODE"))  # held until rollback
            first: list[threading.Thread] = []
            first_answers: list[list[int]] = []
            for n in range(at_once):  # one request a transaction, each blocked by the lock
                threads, answered = post_all(srv.url, docs[n : n + 1])
                first += threads
                first_answers.append(answered)
                wait_for(
                    lambda n=n: writer.writing == n + 1, 30.0, message="a request never started its write"
                )
            rest, answers = post_all(srv.url, docs[at_once:])
            wait_for(lambda: writer.waiting == REQUESTS - at_once, 30.0, message=lambda: writer.waiting)
            assert writer.writing == at_once  # no more transactions than allowed
            assert first_answers == [[]] * at_once and answers == [], "answered before its spans were stored"
            assert call_ids(pg_store) == []
            transactions = writer.transactions
            lock.rollback()
        for t in first + rest:
            t.join(30)
        assert sum(first_answers, []) + answers == [200] * REQUESTS
        ids = call_ids(pg_store)
        assert sorted(ids) == sorted(
            {f"resp-grouped{at_once}-{r}-{s}" for r in range(REQUESTS) for s in range(SPANS)}
        )
        assert writer.transactions - transactions == at_once + 1  # the first requests', then all the others'
    finally:
        srv.stop()
        locker.dispose()


def test_a_store_outage_answers_every_queued_request_503_and_a_retry_stores_each_call_once(
    pg_url: str, make_settings: Callable[..., Settings]
) -> None:
    proxy = TcpProxy.for_url(pg_url).start()
    store = Store.from_url(proxy.url)
    store.migrate()
    srv = serve(store, make_settings(store.url), port=0)
    try:
        docs = bodies("outage")
        proxy.stop()
        threads, answers = post_all(srv.url, docs)
        for t in threads:
            t.join(60)
        assert answers == [503] * REQUESTS  # OTLP exporters retry a 503
        proxy.start()
        for doc in docs + docs[:2]:  # the retries, and two re-delivered again
            assert post_json(srv.url, doc)[0] == 200
        ids = call_ids(store)
        assert len(ids) == len(set(ids)) == REQUESTS * SPANS
    finally:
        srv.stop()
        store.dispose()
        proxy.stop()


def test_a_transaction_chosen_as_a_deadlock_victim_is_run_again(
    pg_store: Store, pg_url: str, make_settings: Callable[..., Settings]
) -> None:
    """Two transactions that each hold a row the other needs: PostgreSQL rolls one back. When that
    is the receiver's, it runs it again instead of answering 500 (which OTLP exporters drop).

    PostgreSQL looks for a deadlock once, `deadlock_timeout` after a session starts waiting, and
    rolls back the session that finds it. The receiver waits first, so its sessions look after
    5 s (time for this test to close the cycle, even on a loaded machine) and the other session
    never looks in time."""
    url = sa.make_url(pg_url)
    receiver_url = url.update_query_dict(
        {"options": f"{url.query.get('options', '')} -cdeadlock_timeout=5s".strip()}
    ).render_as_string(hide_password=False)
    receiver_store = Store.from_url(receiver_url)
    srv = serve(receiver_store, make_settings(receiver_url), port=0)
    other = sa.create_engine(pg_url)
    now = utcnow() - timedelta(minutes=5)
    span = json_span({**CALL, "gen_ai.response.id": "deadlock-a", "gen_ai.conversation.id": "deadlock-conv"},
                     start=now, ms=100)  # fmt: skip
    ts = EPOCH + timedelta(seconds=int(span["startTimeUnixNano"]) / 1e9)  # the row's ts, as stored
    try:
        with other.connect() as conn:
            conn.execute(sa.text("SET deadlock_timeout = '120s'"))  # this session never finds the cycle
            conn.commit()
            # 1. the other session holds the rollup mark of the call's minute, the receiver's last write
            minute = EPOCH + timedelta(minutes=int(int(span["startTimeUnixNano"]) // 60_000_000_000))
            conn.execute(sa.text("INSERT INTO rollup_dirty (kind, minute, mark) VALUES ('llm', :m, 'other') "
                                 "ON CONFLICT (kind, minute) DO UPDATE SET mark = 'other'"), {"m": minute})  # fmt: skip
            # the answer comes after the wait below (up to 30 s on a loaded machine) and the 5 s deadlock check
            threads, answers = post_all(srv.url, [otlp_json([span])], timeout=60.0)

            # 2. the receiver has inserted its call and waits for that mark
            def receiver_waits() -> bool:
                q = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                with pg_store.connect() as c:
                    return c.execute(sa.text(q)).scalar() == 1

            wait_for(receiver_waits, 30.0, message="the receiver never waited for the rollup mark")
            # 3. the other session now needs the receiver's call row: a cycle, and the receiver,
            # waiting longer, is the one PostgreSQL rolls back; this insert then goes through
            conn.execute(schema.llm_calls.insert().values(trace_id="resp-deadlock-a", ts=ts, model="m", provider="p",
                                                          input_tokens=0, output_tokens=0, latency_ms=0))  # fmt: skip
            conn.rollback()  # the receiver's second run stores the call
        for t in threads:
            t.join(60)
        assert answers == [200]
        with pg_store.connect() as conn:
            row = conn.execute(
                sa.select(schema.llm_calls).where(schema.llm_calls.c.trace_id == "resp-deadlock-a")
            ).one()
        assert (row.model, row.input_tokens, row.conversation_id) == ("gpt-4o-mini", 1000, "deadlock-conv")
    finally:
        srv.stop()
        other.dispose()
        receiver_store.dispose()
