"""Concurrent OTLP export requests share transactions, and a 200 still means stored.

The receiver writes the calls of every request that arrives while a transaction runs in the next
transaction (group commit). A client must never be told 200 for spans that are not durable: while
the store holds the first transaction (a real lock held by another PostgreSQL session), the
requests queued behind it are not answered and nothing of theirs is visible; once the lock is
released, they are all answered 200 and every call is stored once, in two transactions in all. When
the store is unreachable, every queued request gets a 503 and a retry stores each call once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from support import wait_for
from support.net import TcpProxy
from test_worker_http import json_span, otlp_json, post_json

from observability.settings import Settings
from observability.store import Store, schema
from observability.timeutil import utcnow
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


def post_all(url: str, docs: list[dict]) -> tuple[list[threading.Thread], list[int]]:
    answers: list[int] = []

    def send(doc: dict) -> None:
        answers.append(post_json(url, doc)[0])

    threads = [threading.Thread(target=send, args=(d,)) for d in docs]
    for t in threads:
        t.start()
    return threads, answers


def call_ids(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(schema.llm_calls.c.trace_id)).scalars())


def test_requests_queued_behind_a_transaction_are_answered_once_stored_in_one_more(
    pg_store: Store, pg_url: str, make_settings: Callable[..., Settings]
) -> None:
    srv = serve(pg_store, make_settings(pg_store.url), port=0)
    writer = srv.app.receiver.writer
    locker = sa.create_engine(pg_url)
    try:
        docs = bodies("grouped")
        with locker.connect() as lock:
            lock.execute(sa.text("LOCK TABLE llm_calls IN EXCLUSIVE MODE"))  # held until rollback
            first, first_answer = post_all(srv.url, docs[:1])
            wait_for(lambda: writer.writing, 30.0, message="the first request never started its write")
            rest, answers = post_all(srv.url, docs[1:])
            wait_for(lambda: writer.waiting == REQUESTS - 1, 30.0, message=lambda: writer.waiting)
            assert first_answer == [] and answers == [], "answered before its spans were stored"
            assert call_ids(pg_store) == []
            transactions = writer.transactions
            lock.rollback()
        for t in first + rest:
            t.join(30)
        assert first_answer + answers == [200] * REQUESTS
        ids = call_ids(pg_store)
        assert sorted(ids) == sorted({f"resp-grouped-{r}-{s}" for r in range(REQUESTS) for s in range(SPANS)})
        assert writer.transactions - transactions == 2  # the first request's, then all the others'
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
