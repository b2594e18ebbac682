"""`check_and_send_alerts` is source document 000's one call to evaluate and dispatch: a process
without a worker gets its notifications sent, still through the outbox, and a worker running at
the same time never sends one twice (both take the deliverer's per-row claim). The claim is
committed before the send, so a slow peer holds up no other writer.

The peers are real local servers (SMTP, Slack, webhook; `tests/support/alerting.py`)."""

from __future__ import annotations

import threading
import uuid

import pytest
from support import wait_for
from support.alerting import Harness

from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch
from observability.worker.runner import Worker
from observability.worker.steps import Step, step_alerts_deliver

THREE = ("email", "slack", "webhook")
SENT_AT_0 = [(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE]


def deliverer(alerting: Harness) -> Worker:
    """A worker (its own store connection) that runs only the outbox delivery step."""
    store = Store.from_url(alerting.store.url)
    return Worker(store, alerting.settings, worker_id="deliverer",
                  steps=[Step("alerts_deliver", step_alerts_deliver)])  # fmt: skip


def test_one_call_evaluates_and_sends_without_a_worker(alerting: Harness) -> None:
    alerting.peers.clock = 0
    [fired] = alerting.svc.check_and_send_alerts({"error_rate": 0.5}, now=alerting.now(0))
    assert fired["rule_name"] == "high_error_rate"
    alerting.peers.expect(SENT_AT_0)  # sent by the call itself: no worker ran
    assert {n["status"] for n in alerting.svc.notifications(fired["id"])} == {"sent"}, "through the outbox"

    worker = deliverer(alerting)
    try:
        alerting.peers.clock = 1
        assert worker.tick(now=alerting.now(1)) == {"alerts_deliver": "ok"}
    finally:
        worker.close()
        worker.store.dispose()
    alerting.peers.expect(SENT_AT_0)  # exact: the worker found nothing left to send


def test_queue_only_leaves_sending_to_the_worker(alerting: Harness) -> None:
    alerting.peers.clock = 0
    [fired] = alerting.svc.check_and_send_alerts({"error_rate": 0.5}, now=alerting.now(0), deliver=False)
    assert alerting.peers.received == []
    assert {n["status"] for n in alerting.svc.notifications(fired["id"])} == {"pending"}
    alerting.tick(0)
    alerting.peers.expect(SENT_AT_0)


def test_a_worker_delivering_at_the_same_time_sends_nothing_twice(alerting: Harness) -> None:
    peers = alerting.peers
    peers.clock = 0
    peers.holding = {"slack"}  # Slack answers only when released: the one call sits in that send
    peers.hold.clear()
    errors: list[BaseException] = []

    def one_call() -> None:
        try:
            alerting.svc.check_and_send_alerts({"error_rate": 0.5}, now=alerting.now(0))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    caller = threading.Thread(target=one_call)
    caller.start()
    worker = deliverer(alerting)
    try:
        assert wait_for(lambda: peers.attempts["slack"] == 1, 20.0), "the call is sending to Slack"
        # the worker's deliverer runs while that row is claimed: it skips it, sends what is left
        assert worker.tick(now=alerting.now(0)) == {"alerts_deliver": "ok"}
        peers.hold.set()
        caller.join(30)
        assert not caller.is_alive() and not errors, errors
        assert worker.tick(now=alerting.now(0)) == {"alerts_deliver": "ok"}
    finally:
        peers.hold.set()
        worker.close()
        worker.store.dispose()
    peers.expect(SENT_AT_0)  # exact: each channel told once
    assert peers.attempts["slack"] == 1 and peers.attempts["webhook"] == 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_slow_peer_does_not_hold_up_ingest_on_sqlite(alerting: Harness) -> None:
    """While the one call sits in a send that the peer holds open, the bots' events still commit:
    the deliverer holds no write lock over a send (SQLite has one for the whole database)."""
    peers = alerting.peers
    peers.clock = 0
    peers.holding = {"slack"}
    peers.hold.clear()
    caller = threading.Thread(target=alerting.svc.check_and_send_alerts, args=({"error_rate": 0.5},),
                              kwargs={"now": alerting.now(0)})  # fmt: skip
    caller.start()
    ingest = Store.from_url(alerting.store.url)
    try:
        assert wait_for(lambda: peers.attempts["slack"] == 1, 20.0), "the call is sending to Slack"
        tid = uuid.uuid4().hex
        event = ["llm", tid, to_epoch(alerting.now(0)), "lead_bot", "qualifier", "qualify", "claude-sonnet-4-5",
                 "anthropic", 1000, 100, 0, 0, 400.0, False, 0.01, "conv-slow-peer", True, None]  # fmt: skip
        result = write_batch(ingest, [event], alerting.settings)
        assert result.accepted == 1 and result.rejected == 0
        assert caller.is_alive() and not peers.hold.is_set(), "the write committed while the send was open"
    finally:
        peers.hold.set()
        caller.join(30)
        ingest.dispose()
    assert not caller.is_alive()
    peers.expect(SENT_AT_0)
