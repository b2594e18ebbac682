"""Escalation (level 1 at once, level 2 and 3 after delays shortened by settings), its stop on
acknowledgement, escalation by hand, and the promises that hold across processes: a worker killed
mid-escalation and restarted loses and repeats nothing; two workers send one notification."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from support import subprocess_env
from support.alerting import T0, Harness

from observability.alerting import InvalidTransition
from observability.auth import PermissionDenied
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch
from observability.worker import runner as worker

THREE = ("email", "slack", "webhook")
PAGERS = ("pagerduty", "opsgenie")
ALERTING_STEPS = ("alerts_evaluate", "alerts_escalate", "alerts_deliver")


@pytest.fixture
def fast(alerting: Harness) -> Harness:
    alerting.reconfigure(alert_escalation_l2_delay_s=20.0, alert_escalation_l3_delay_s=60.0)
    return alerting


def test_escalates_through_three_levels_and_ack_resolve_reach_the_pagers(fast: Harness) -> None:
    op = fast.users["operator"]
    fast.run(lambda t: {"error_rate": 0.3}, until=120, step=5)
    [alert] = fast.svc.active_alerts()
    assert alert["escalation_level"] == 3 and alert["next_escalation_at"] is None
    fast.svc.acknowledge_alert(alert["id"], op, now=fast.now(125))
    fast.tick(125)
    fast.at(130, {"error_rate": 0.0})
    fast.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE]
        + [(c, "trigger", "high_error_rate", 2, 20, 20) for c in THREE]
        + [(c, "trigger", "high_error_rate", 3, 60, 60) for c in PAGERS]
        + [(c, "ack", None, 0, 125, 125) for c in PAGERS]  # by dedup_key / alias: no rule in the body
        + [(c, "resolve", None, 0, 130, 130) for c in PAGERS]
        + [("webhook", "resolve", "high_error_rate", 0, 130, 130)]
    )
    pd = [r for r in fast.peers.of("pagerduty")]
    assert len({r.body["dedup_key"] for r in pd}) == 1, "trigger, acknowledge and resolve share one dedup_key"
    og = fast.peers.of("opsgenie")
    assert og[0].body["priority"] == "P1" and og[0].body["alias"].startswith(f"obs-alert-{alert['id']}-")
    assert og[1].body["user"] == op
    kinds = [(e["kind"], e["detail"].get("level")) for e in fast.svc.alert_timeline(alert["id"])]
    assert kinds.count(("escalated", 2)) == 1 and kinds.count(("escalated", 3)) == 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_acknowledgement_stops_escalation(fast: Harness) -> None:
    [alert] = fast.at(0, {"error_rate": 0.3})
    fast.svc.acknowledge_alert(alert["id"], fast.users["operator"], note="looking", now=fast.now(10))
    fast.run(lambda t: {"error_rate": 0.3}, start=15, until=200, step=5)
    fast.peers.expect([(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE])
    after = fast.svc.get_alert(alert["id"])
    assert after["state"] == "acknowledged" and after["acknowledged_by"] == fast.users["operator"]
    assert after["next_escalation_at"] is None and after["escalation_level"] == 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_escalate_by_hand_moves_up_one_level(fast: Harness) -> None:
    [alert] = fast.at(0, {"cache_hit_rate": 0.2})  # a warning: no automatic escalation
    with pytest.raises(PermissionDenied):
        fast.svc.escalate_alert(alert["id"], fast.users["analyst"], now=fast.now(5))
    fast.svc.escalate_alert(alert["id"], fast.users["operator"], now=fast.now(5))
    fast.tick(5)
    fast.svc.escalate_alert(alert["id"], fast.users["admin"], now=fast.now(10))
    fast.tick(10)
    with pytest.raises(InvalidTransition, match="highest level"):
        fast.svc.escalate_alert(alert["id"], fast.users["operator"], now=fast.now(15))
    fast.run(lambda t: {"cache_hit_rate": 0.2}, start=20, until=200, step=20)
    fast.peers.expect(
        [("slack", "trigger", "low_cache_hit_rate", 1, 0, 0)]
        + [(c, "trigger", "low_cache_hit_rate", 2, 5, 5) for c in THREE]
        + [(c, "trigger", "low_cache_hit_rate", 3, 10, 10) for c in PAGERS]
    )
    timeline = fast.svc.alert_timeline(alert["id"])
    manual = [e for e in timeline if e["kind"] == "escalated"]
    assert [(e["actor"], e["detail"]["manual"]) for e in manual] == [("operator1", True), ("admin1", True)]


# ---- across processes -------------------------------------------------------------------------


def _interactions(store: Store, settings: object, start: float, end: float, *, errors: float) -> None:
    """lead_bot answering every 3 s between T0+start and T0+end, a share of them failing."""
    events, t, i = [], start, 0
    while t <= end:
        failed = (i % 10) < errors * 10
        events.append(["interaction", uuid.uuid4().hex, to_epoch(T0 + timedelta(seconds=t)), "lead_bot", 120.0,
                       not failed, True, "upstream_error" if failed else None])  # fmt: skip
        t += 3
        i += 1
    result = write_batch(store, events, settings)
    assert result.rejected == 0


def _worker(h: Harness, name: str) -> worker.Worker:
    steps = [s for s in worker.STEPS if s.name in ALERTING_STEPS]
    return worker.Worker(Store.from_url(h.store.url), h.settings, steps=steps, worker_id=name)


KILLED_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    from observability.worker import runner as worker
    from observability.settings import Settings
    from observability.store import Store

    settings = Settings.from_env()
    steps = [s for s in worker.STEPS if s.name in ("alerts_evaluate", "alerts_escalate")]
    steps.append(worker.Step("killed", lambda ctx: os.kill(os.getpid(), signal.SIGKILL)))
    steps += [s for s in worker.STEPS if s.name == "alerts_deliver"]
    w = worker.Worker(Store.from_url(settings.database_url), settings, steps=steps, worker_id="doomed")
    print(w.tick(now=datetime.fromisoformat(sys.argv[1])), flush=True)
    """
)


def test_worker_killed_mid_escalation_and_restarted_loses_and_repeats_nothing(fast: Harness) -> None:
    _interactions(fast.store, fast.settings, -120, 0, errors=0.5)
    first = _worker(fast, "first")
    fast.peers.clock = 0
    first.tick(now=fast.now(0))  # fires; level 1 delivered
    first.close()
    # a worker in another process runs the level-2 step at t=25 and is SIGKILLed before delivering
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WORKER, fast.now(25).isoformat()],
        env=subprocess_env(**fast.env()), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    n = schema.notifications
    with fast.store.connect() as conn:
        pending = conn.execute(sa.select(n.c.channel, n.c.level).where(n.c.status == "pending")).all()
    assert sorted(pending) == sorted((c, 2) for c in THREE), "the step committed, its delivery did not run"
    restarted = _worker(fast, "restarted")
    for t in (25, 40, 60, 90, 120):
        fast.peers.clock = t
        outcomes = restarted.tick(now=fast.now(t))
        assert all(v == "ok" for v in outcomes.values()), outcomes
    restarted.close()
    fast.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE]
        + [(c, "trigger", "high_error_rate", 2, 25, 25) for c in THREE]
        + [(c, "trigger", "high_error_rate", 3, 60, 60) for c in PAGERS]
    )
    [alert] = [a for a in fast.svc.active_alerts() if a["labels"] == {"bot": "lead_bot"}]
    steps = [
        e["detail"]["level"]
        for e in fast.svc.alert_timeline(alert["id"])
        if e["kind"] in ("notified", "escalated")
    ]
    assert steps == [1, 2, 3]


def test_two_workers_send_one_notification(fast: Harness) -> None:
    _interactions(fast.store, fast.settings, -120, 0, errors=0.5)
    workers = [_worker(fast, "w1"), _worker(fast, "w2")]
    for t in (0, 20, 25, 60):
        fast.peers.clock = t
        threads = [threading.Thread(target=w.tick, kwargs={"now": fast.now(t)}) for w in workers]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    leaders = [w.lock.held for w in workers]
    for w in workers:
        w.close()
    assert sorted(leaders) == [False, True], "exactly one worker leads"
    fast.peers.expect(
        [(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE]
        + [(c, "trigger", "high_error_rate", 2, 20, 20) for c in THREE]
        + [(c, "trigger", "high_error_rate", 3, 60, 60) for c in PAGERS]
    )


def test_concurrent_deliverers_skip_rows_another_is_sending(fast: Harness) -> None:
    """Even two deliverers at once (say, a leader change mid-send) send each row once: the row
    being sent is claimed (committed before the send) and the other deliverer skips it."""
    fast.svc.check_and_send_alerts({"error_rate": 0.3}, now=fast.now(0), deliver=False)
    fast.peers.holding = {"slack"}
    fast.peers.hold.clear()
    fast.peers.clock = 0
    services = [type(fast.svc)(Store.from_url(fast.store.url), fast.settings) for _ in range(2)]
    threads = [threading.Thread(target=s.deliver_pending, kwargs={"now": fast.now(0)}) for s in services]
    for th in threads:
        th.start()
    threads[0].join(1.0)
    fast.peers.hold.set()
    for th in threads:
        th.join(30)
    fast.peers.expect([(c, "trigger", "high_error_rate", 1, 0, 0) for c in THREE])
    assert fast.peers.attempts["slack"] == 1
