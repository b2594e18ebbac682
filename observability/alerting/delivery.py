"""Delivery: the leading worker sends due outbox rows, oldest first, with exponential backoff.

Per row: claim it, send, record the outcome. The claim is one atomic UPDATE, committed before the
send, that moves a pending, due row's `next_attempt_at` to `now + CLAIM_S`; a second deliverer (the
worker's leader and any process calling `check_and_send_alerts` share this code) finds it not due
and skips it. No transaction or lock is held while the peer answers (on SQLite a held write lock
would stall every writer, ingest included, for up to the HTTP timeout). The outcome is written
only if the row is still as claimed; a claimer that crashed leaves a row that is due again when
the claim expires. Same code on SQLite and PostgreSQL. The row is marked sent only after the peer
accepted it: a crash in between means "send again" (with the same idempotency key: webhook-id,
PagerDuty dedup_key, Opsgenie alias, Message-ID), never "lost".

Failures: retryable ones (timeouts, 429, 5xx) wait `ALERT_DELIVERY_BACKOFF_S * 2^(attempt-1)`
(at least the peer's Retry-After, at most an hour); after `ALERT_DELIVERY_MAX_ATTEMPTS`, or at once
for a permanent failure (HTTP 400, missing configuration), the row is `dead`. Every attempt lands
on the alert's timeline; failed attempts also feed the `notification_failures{channel}` metric
that raises the "notification channel failing" alert (failed test sends do not: a person pressing
"Send test notification" sees the result, on-call is not paged for it). A row given up is logged
once as given up and why it is not retried; a failure that will be retried goes to the per-channel
outage log ("kept in the outbox and retried"), never both for one row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability.alerting import audit
from observability.alerting import channels as ch
from observability.outages import OutageLog
from observability.redaction import scrub
from observability.settings import Settings
from observability.store import Store, schema
from observability.telemetry import increment_counter

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0
# how long a claimed row is left to its deliverer: well above a send's worst case (HTTP and SMTP
# time out after ALERT_HTTP_TIMEOUT_S, 10 s by default); a crashed deliverer's row is retried after it
CLAIM_S = 120.0


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)


def outgoing(row: Any) -> ch.Outgoing:
    m = row._mapping if hasattr(row, "_mapping") else row
    return ch.Outgoing(key=f"obs-notification-{m['id']}", channel=m["channel"], kind=m["kind"],
                       level=int(m["level"]), payload=dict(m["payload"] or {}))  # fmt: skip


def backoff(settings: Settings, attempts: int, retry_after: float | None) -> float:
    wait = settings.alert_delivery_backoff_s * (2 ** max(attempts - 1, 0))
    if retry_after is not None:
        wait = max(wait, retry_after)
    return min(wait, MAX_BACKOFF_S)


def _due_ids(store: Store, now: datetime, limit: int) -> list[int]:
    n = schema.notifications
    earlier = n.alias("earlier")
    # ack/resolve wait for the trigger of the same alert and channel still being retried
    blocked = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.alert_id == n.c.alert_id,
            earlier.c.channel == n.c.channel,
            earlier.c.id < n.c.id,
            earlier.c.status == "pending",
        )  # fmt: skip
        .exists()
    )
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(n.c.id)
            .where(n.c.status == "pending", n.c.next_attempt_at <= now, sa.not_(blocked))
            .order_by(n.c.id)
            .limit(limit)
        ).all()
    return [r[0] for r in rows]


def _claim(store: Store, nid: int, now: datetime) -> tuple[Any, datetime] | None:
    """Claim row `nid` for one send, committed before the send starts: one atomic UPDATE moves its
    `next_attempt_at` to `now + CLAIM_S` if it is still pending and due (unclaimed, or its claim
    expired). rowcount 1 means this deliverer owns it; the moved time is the claim's token. The
    transaction is a single short write, so no lock is held while the peer is slow."""
    n = schema.notifications
    until = now + timedelta(seconds=CLAIM_S)
    with store.begin() as conn:
        took = conn.execute(
            sa.update(n)
            .where(n.c.id == nid, n.c.status == "pending", n.c.next_attempt_at <= now)
            .values(next_attempt_at=until)
        ).rowcount
        if took != 1:
            return None  # sent, given up, or being sent by another deliverer
        row = conn.execute(sa.select(n).where(n.c.id == nid)).first()
    return (row, until) if row is not None else None


def deliver_pending(
    store: Store, settings: Settings, now: datetime, *, limit: int = 200, outages: OutageLog | None = None
) -> DeliveryReport:
    """Send the due outbox rows. Failures are logged per channel through `outages` (one line a
    minute with a count while a channel is down; pass the same `OutageLog` on every call)."""
    report = DeliveryReport()
    outages = outages or OutageLog(log)
    n = schema.notifications
    for nid in _due_ids(store, now, limit):
        claimed = _claim(store, nid, now)
        if claimed is None:
            continue
        row, until = claimed
        msg = outgoing(row)
        attempts = row.attempts + 1
        # still ours: nobody took the row over after our claim expired
        guard = sa.and_(n.c.id == nid, n.c.status == "pending", n.c.attempts == row.attempts,
                        n.c.next_attempt_at == until)  # fmt: skip
        try:
            receipt = ch.send(msg, settings)  # outside any transaction
        except ch.DeliveryError as exc:
            dead = not exc.retryable or attempts >= settings.alert_delivery_max_attempts
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_error": str(exc)[:2000],
                "last_attempt_at": now,
                "next_attempt_at": now + timedelta(seconds=backoff(settings, attempts, exc.retry_after)),
            }
            if dead:
                values["status"] = "dead"
            with store.begin() as conn:
                if conn.execute(sa.update(n).where(guard).values(**values)).rowcount != 1:
                    _lost_claim(nid, msg.channel)
                    continue
                _record_failure(
                    conn, row, msg, attempts, str(exc), dead, None if dead else values["next_attempt_at"], now
                )
            (report.dead if dead else report.retrying).append(nid)
            increment_counter("obs.alert.notification_failed", channel=msg.channel)
            if dead:  # one line per row given up, saying it is not retried (and why not)
                log.warning("notification %s via %s given up after %s attempt(s), not retried (%s): %s", nid,
                            msg.channel, attempts, _why_given_up(settings, exc.retryable), exc)  # fmt: skip
            else:
                outages.failure(f"delivery via {msg.channel}", f"notifications via {msg.channel} failing "
                                "(kept in the outbox and retried with backoff)", exc)  # fmt: skip
            continue
        except Exception as exc:  # noqa: BLE001 - a bug in one channel must not stop the others
            dead = attempts >= settings.alert_delivery_max_attempts
            values = {"attempts": attempts, "last_error": scrub(f"internal error: {exc}")[:2000], "last_attempt_at": now,
                      "next_attempt_at": now + timedelta(seconds=backoff(settings, attempts, None))}  # fmt: skip
            if dead:
                values["status"] = "dead"
                log.warning("notification %s via %s given up after %s attempt(s), not retried (%s): internal "
                            "error: %s", nid, msg.channel, attempts, _why_given_up(settings, True), exc)  # fmt: skip
            else:
                outages.failure(f"delivery via {msg.channel} crashed", f"notifications via {msg.channel} "
                                "crashed (kept in the outbox and retried with backoff)", exc)  # fmt: skip
            with store.begin() as conn:
                conn.execute(sa.update(n).where(guard).values(**values))
            (report.dead if dead else report.retrying).append(nid)
            continue
        with store.begin() as conn:
            done = sa.update(n).where(guard).values(
                status="sent", attempts=attempts, sent_at=now, last_attempt_at=now, last_error=None
            )  # fmt: skip
            if conn.execute(done).rowcount != 1:
                _lost_claim(nid, msg.channel)
                continue
            if row.alert_id is not None:
                audit.timeline(conn, row.alert_id, "delivered", now, channel=msg.channel, level=msg.level,
                               notification=msg.kind, attempts=attempts, receipt=receipt)  # fmt: skip
        report.sent.append(nid)
        outages.recovered(f"delivery via {msg.channel}", f"notifications via {msg.channel}")
        outages.recovered(f"delivery via {msg.channel} crashed", f"notifications via {msg.channel}")
        increment_counter("obs.alert.notification_sent", channel=msg.channel)
    return report


def _why_given_up(settings: Settings, retryable: bool) -> str:
    """Why a row is not retried, for the log line that gives it up."""
    if not retryable:
        return "a permanent failure: sending it again cannot help"
    return f"ALERT_DELIVERY_MAX_ATTEMPTS={settings.alert_delivery_max_attempts} reached"


def _lost_claim(nid: int, channel: str) -> None:
    """The send outlasted CLAIM_S and another deliverer took the row over: it sends again (same
    idempotency key), so the peer may see it twice; say so rather than record a second outcome."""
    log.warning("notification %s via %s: the send outlasted its %.0f s claim; another deliverer took it over",
                nid, channel, CLAIM_S)  # fmt: skip


def _record_failure(
    conn: sa.Connection, row: Any, msg: ch.Outgoing, attempts: int, error: str, dead: bool,
    retry_at: datetime | None, now: datetime,
) -> None:  # fmt: skip
    if row.alert_id is not None:
        audit.timeline(
            conn, row.alert_id, "delivery_dead" if dead else "delivery_failed", now, channel=msg.channel,
            level=msg.level, notification=msg.kind, attempts=attempts, error=error[:500], retry_at=retry_at,
        )  # fmt: skip
    if dead:
        audit.activity(
            conn, now, "alert.notification_failed", f"Notification via {msg.channel} gave up after {attempts} attempt(s)",
            severity="high", description=error[:1000],
            metadata={"notification_id": row.id, "alert_id": row.alert_id, "channel": msg.channel, "kind": msg.kind},
        )  # fmt: skip


def channel_failures(
    conn: sa.Connection, now: datetime, window: timedelta = timedelta(hours=1), *, include_tests: bool = False
) -> dict[str, int]:
    """Failed attempts per channel since that channel's last success (rows touched in `window`).

    Test notifications ("Send test notification") count only with `include_tests`: the
    `notification_channel_failing` rule reads this without them, so a person trying a channel sees
    the result on the page instead of paging on-call (Alertmanager and PagerDuty do not alert on a
    test either); the Channels tab counts them. A successful send of any kind, a test included, is
    a success: it shows the channel works now."""
    n = schema.notifications
    last_ok = dict(
        conn.execute(
            sa.select(n.c.channel, sa.func.max(n.c.sent_at)).where(n.c.status == "sent").group_by(n.c.channel)
        ).all()
    )
    q = sa.select(n.c.channel, n.c.attempts, n.c.last_attempt_at).where(
        n.c.status.in_(("pending", "dead")), n.c.attempts > 0, n.c.last_attempt_at >= now - window
    )
    if not include_tests:
        q = q.where(n.c.kind != "test")
    out: dict[str, int] = {c: 0 for c in ch.REGISTRY}
    for channel, attempts, last_attempt in conn.execute(q).all():
        ok = last_ok.get(channel)
        if ok is None or last_attempt > ok:
            out[channel] = out.get(channel, 0) + int(attempts)
    return out


def last_attempts(conn: sa.Connection) -> dict[str, Any]:
    """Per channel, the row of its most recent delivery attempt (tests included), if any: whether
    the channel works is what its last attempt did, however long ago that was."""
    n = schema.notifications
    latest = (
        sa.select(n.c.channel, sa.func.max(n.c.last_attempt_at).label("at"))
        .where(n.c.attempts > 0, n.c.last_attempt_at.is_not(None))
        .group_by(n.c.channel)
        .subquery()
    )
    rows = conn.execute(
        sa.select(n.c.id, n.c.channel, n.c.kind, n.c.status, n.c.last_error, n.c.last_attempt_at)
        .join(latest, sa.and_(n.c.channel == latest.c.channel, n.c.last_attempt_at == latest.c.at))
        .where(n.c.attempts > 0)
        .order_by(n.c.id)
    ).all()
    return {r.channel: r for r in rows}  # the newest id wins a tie


def channel_status(store: Store, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Per channel: configured?, what is missing, last success, pending and dead rows, recent
    failures (tests included), and `state`: "not configured", "failing" (its last delivery attempt
    failed; `last_error`, scrubbed of secrets, says why, and `last_failed_at` when) or "configured".

    A channel whose every delivery fails is "failing", never "configured" in green."""
    n = schema.notifications
    with store.connect() as conn:
        failures = channel_failures(conn, now, include_tests=True)
        real = channel_failures(conn, now)  # what notification_channel_failing counts
        last = last_attempts(conn)
        stats = {
            r.channel: r
            for r in conn.execute(
                sa.select(
                    n.c.channel,
                    sa.func.max(n.c.sent_at).label("last_sent"),
                    sa.func.sum(sa.case((n.c.status == "pending", 1), else_=0)).label("pending"),
                    sa.func.sum(sa.case((n.c.status == "dead", 1), else_=0)).label("dead"),
                ).group_by(n.c.channel)
            )
        }
    out = []
    for name in ch.REGISTRY:
        s = stats.get(name)
        configured = ch.configured(name, settings)
        tried = last.get(name)
        failed = tried is not None and tried.status != "sent"
        out.append({
            "channel": name,
            "configured": configured,
            "missing": ", ".join(ch.missing(name, settings)),
            "state": "not configured" if not configured else "failing" if failed else "configured",
            "last_error": (scrub(tried.last_error or "")[:500] or None) if failed else None,
            "last_failed_at": tried.last_attempt_at if failed else None,
            "last_failed_kind": tried.kind if failed else None,
            "last_sent_at": s.last_sent if s else None,
            "pending": int(s.pending or 0) if s else 0,
            "dead": int(s.dead or 0) if s else 0,
            "failed_attempts_since_success": failures.get(name, 0),
            "failed_test_attempts": failures.get(name, 0) - real.get(name, 0),  # raise no alert
        })  # fmt: skip
    return out
