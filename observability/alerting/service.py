"""`AlertingService(store)`: the one entry point pages, the worker, tests and bots use.

Every state-changing method takes the acting user's name and checks it with
`observability.auth.authorize` itself (raising `PermissionDenied`), then changes the store in one
transaction together with its audit rows (alert timeline and activity feed) and its outbox rows.
Methods taking `now=` use it instead of the clock, so tests script time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from observability import auth
from observability.alerting import audit, delivery, escalation, evaluation, inputs, lifecycle, rules
from observability.alerting import channels as ch
from observability.alerting import samples as samples_mod
from observability.alerting.model import (
    ACTIVE_STATES,
    CHANNELS,
    MAX_LEVEL,
    METRICS,
    MIN_SILENCE_S,
    OPEN_STATES,
    SEVERITIES,
    STATE_ACKNOWLEDGED,
    STATE_FIRING,
    STATE_PENDING,
    AlertNotFound,
    AlertRule,
    ConditionStillHolds,
    InvalidTransition,
    RuleNotFound,
    RuleValidationError,
    SilenceNotFound,
    human_duration,
    make_sample,
    parse_metric,
    validate_rule,
)
from observability.alerting.silences import active_silences, longest_silence_s, row_to_silence
from observability.outages import OutageLog
from observability.redaction import redact_if_enabled
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.telemetry import optional_span
from observability.timeutil import to_naive_utc, utcnow

log = logging.getLogger(__name__)

SPAN_SERVICE = "observability.alerting"  # spans: observability.alerting.<operation>

ALERT_FIELDS = (
    "id", "rule_name", "dedup_key", "labels", "state", "severity", "value", "threshold", "message",
    "pending_since", "fired_at", "clear_since", "acknowledged_by", "acknowledged_at", "resolved_by",
    "resolved_at", "escalation_level", "next_escalation_at", "escalation_started_at", "suppressed_by",
    "last_notified_at", "created_at",
)  # fmt: skip


def _now(now: datetime | None) -> datetime:
    return to_naive_utc(now) if now is not None else utcnow()


def public_alert(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    d = {k: m.get(k) for k in ALERT_FIELDS}
    d["labels"] = dict(d["labels"] or {})
    # firing or acknowledged and the last evaluation still saw the condition: resolving it by
    # hand only opens a new alert at the next tick (the page asks first, offering a silence)
    d["condition_holds"] = d["state"] in (STATE_FIRING, STATE_ACKNOWLEDGED) and d["clear_since"] is None
    return d


class AlertingService:
    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or get_settings()
        self._seed_checked = False
        self.outages = OutageLog(delivery.log)  # delivery failures: one line per channel per minute

    # ---- rules --------------------------------------------------------------------------------

    def ensure_seeded(self) -> list[str]:
        """Seed the default rules if the rules table is empty, and upgrade rules seeded by an older
        version (`rules.upgrade_threshold_rules_for`), once per service object."""
        if self._seed_checked:
            return []
        with self.store.connect() as conn:
            seeded = conn.execute(sa.select(sa.func.count()).select_from(schema.alert_rules)).scalar()
        added = [] if seeded else rules.seed_default_rules(self.store, self.settings)
        rules.upgrade_threshold_rules_for(self.store, self.settings)
        self._seed_checked = True
        return added

    def list_rules(self) -> list[AlertRule]:
        self.ensure_seeded()
        with self.store.connect() as conn:
            return rules.all_rules(conn)

    def rule_families(self) -> dict[str, str]:
        """Each stored rule's metric family by name (`AlertRule.family`), reading only (no seeding,
        so a read replica answers it): what an alert is about beyond its labels (an alert of
        circular_handoff_spike is about handoffs and has none)."""
        with self.store.connect() as conn:
            return {r.name: r.family for r in rules.all_rules(conn)}

    def get_rule(self, name: str) -> AlertRule:
        with self.store.connect() as conn:
            rule = rules.get_rule(conn, name)
        if rule is None:
            raise RuleNotFound(f"no alert rule named {name!r}")
        return rule

    def validate_rule(self, data: Mapping[str, Any] | AlertRule, *, existing: str | None = None) -> AlertRule:
        """Check rule input without writing anything (the page previews errors with this)."""
        current = self.get_rule(existing) if existing else None
        raw = data.to_dict() if isinstance(data, AlertRule) else dict(data)
        metric = raw.get("metric")
        custom: list[str] = []
        if isinstance(metric, str) and parse_metric(metric.strip())[0] not in METRICS:
            with self.store.connect() as conn:
                if rules.metric_recorded(conn, metric.strip()):
                    custom.append(metric.strip())
        return validate_rule(raw, custom_metrics=custom, existing=current)

    def add_rule(
        self, rule: Mapping[str, Any] | AlertRule, user: str, *, now: datetime | None = None
    ) -> AlertRule:
        auth.authorize(self.store, user, "rules.edit", self.settings)
        now = _now(now)
        raw = rule.to_dict() if isinstance(rule, AlertRule) else dict(rule)
        raw.pop("builtin", None)
        raw.pop("managed_by", None)
        clean = self.validate_rule(raw)
        with self.store.begin() as conn:
            if not rules.insert_rule(conn, self.store, clean, now, user):
                raise RuleValidationError({"name": f"a rule named {clean.name!r} already exists"})
            audit.activity(conn, now, "alert_rule.created", f"Alert rule {clean.name} created by {user}",
                           actor=user, description=clean.condition_text(), metadata=clean.to_dict())  # fmt: skip
        return self.get_rule(clean.name)

    def update_rule(
        self, name: str, changes: Mapping[str, Any], user: str, *, now: datetime | None = None
    ) -> AlertRule:
        auth.authorize(self.store, user, "rules.edit", self.settings)
        now = _now(now)
        clean = self.validate_rule({**changes, "name": changes.get("name", name)}, existing=name)
        with self.store.begin() as conn:
            before = rules.get_rule(conn, name, lock=True)
            if before is None:
                raise RuleNotFound(f"no alert rule named {name!r}")
            values = rules.rule_values(clean)
            values.update(updated_at=now, updated_by=user)
            conn.execute(
                sa.update(schema.alert_rules).where(schema.alert_rules.c.name == name).values(**values)
            )
            diff = {k: [getattr(before, k), getattr(clean, k)] for k in values if hasattr(clean, k)
                    and k not in ("updated_at", "updated_by") and getattr(before, k) != getattr(clean, k)}  # fmt: skip
            audit.activity(conn, now, "alert_rule.updated", f"Alert rule {name} edited by {user}", actor=user,
                           description=", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items()) or "no change",
                           metadata={"rule": name, "changes": diff})  # fmt: skip
            if before.enabled and not clean.enabled:
                self._close_rule_alerts(conn, clean, now, user, f"rule disabled by {user}")
        return self.get_rule(name)

    def enable_rule(self, name: str, user: str, *, now: datetime | None = None) -> AlertRule:
        return self._toggle(name, True, user, _now(now))

    def disable_rule(self, name: str, user: str, *, now: datetime | None = None) -> AlertRule:
        return self._toggle(name, False, user, _now(now))

    def _toggle(self, name: str, enabled: bool, user: str, now: datetime) -> AlertRule:
        auth.authorize(self.store, user, "rules.toggle", self.settings)
        t = schema.alert_rules
        with self.store.begin() as conn:
            rule = rules.get_rule(conn, name, lock=True)
            if rule is None:
                raise RuleNotFound(f"no alert rule named {name!r}")
            if rule.enabled != enabled:
                conn.execute(
                    sa.update(t)
                    .where(t.c.name == name)
                    .values(enabled=enabled, updated_at=now, updated_by=user)
                )
                verb = "enabled" if enabled else "disabled"
                audit.activity(conn, now, f"alert_rule.{verb}", f"Alert rule {name} {verb} by {user}", actor=user,
                               metadata={"rule": name})  # fmt: skip
                if not enabled:
                    self._close_rule_alerts(conn, rule, now, user, f"rule disabled by {user}")
        return self.get_rule(name)

    def remove_rule(self, name: str, user: str, *, now: datetime | None = None) -> None:
        auth.authorize(self.store, user, "rules.delete", self.settings)
        now = _now(now)
        with self.store.begin() as conn:
            rule = rules.get_rule(conn, name, lock=True)
            if rule is None:
                raise RuleNotFound(f"no alert rule named {name!r}")
            if rule.managed_by is not None:
                raise RuleValidationError(
                    {"name": f"{name!r} is a built-in system rule; disable it instead of deleting"}
                )
            self._close_rule_alerts(conn, rule, now, user, f"rule deleted by {user}")
            conn.execute(sa.delete(schema.alert_rules).where(schema.alert_rules.c.name == name))
            audit.activity(conn, now, "alert_rule.deleted", f"Alert rule {name} deleted by {user}", actor=user,
                           severity="medium", metadata=rule.to_dict())  # fmt: skip

    def _close_rule_alerts(
        self, conn: sa.Connection, rule: AlertRule, now: datetime, user: str, reason: str
    ) -> None:
        a = schema.alerts
        ids = [
            r[0]
            for r in conn.execute(
                sa.select(a.c.id).where(a.c.rule_name == rule.name, a.c.state.in_(OPEN_STATES))
            )
        ]
        for alert_id in ids:
            alert = escalation.lock_alert(conn, alert_id)
            if alert is None or alert["state"] not in OPEN_STATES:
                continue
            if alert["state"] == STATE_PENDING:
                lifecycle.drop_pending(conn, alert)
            else:
                lifecycle.resolve(
                    conn, self.store, self.settings, alert, rule, now, actor=user, reason=reason
                )

    # ---- evaluation ---------------------------------------------------------------------------

    def check_and_send_alerts(
        self,
        stats: Mapping[str, Any] | Iterable[Any],
        now: datetime | None = None,
        *,
        complete: bool = False,
        deliver: bool = True,
    ) -> list[dict[str, Any]]:
        """Evaluate metric values (see `samples.from_stats` for the accepted shapes) against the
        enabled rules and send what is due; returns the alerts that started firing.

        The document's one call to evaluate and dispatch, usable in a process without a worker:
        notifications are queued in the outbox with the alert change, then the due outbox rows are
        delivered here (`deliver=False` leaves them to the worker). Sending goes through the
        worker's deliverer and its per-row claim, so a worker running at the same time never sends
        a row twice; a failed send stays in the outbox for the next deliverer, with backoff."""
        self.ensure_seeded()
        now = _now(now)
        with optional_span(SPAN_SERVICE, "check_and_send_alerts") as s:
            samples, _ = samples_mod.from_stats(stats, rules.sla_targets(self.settings))
            result = evaluation.evaluate(self.store, self.settings, samples, now, complete=complete)
            s.set_attribute("alert_count", len(result.fired))
        if deliver:
            self.deliver_pending(now)
        return [self.get_alert(i) for i in result.fired]

    def update_metric(
        self,
        name: str,
        value: float | None,
        *,
        labels: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Push one value and evaluate the rules that watch it (what `feed_to_alerting` calls)."""
        if labels:
            family, fixed = parse_metric(name)
            return self.check_and_send_alerts([make_sample(family, {**fixed, **labels}, value)], now)
        return self.check_and_send_alerts({name: value}, now)

    def evaluate(self, now: datetime | None = None) -> evaluation.EvaluationResult:
        """The worker's evaluation: every input from the store, judged completely."""
        self.ensure_seeded()
        now = _now(now)
        with optional_span(SPAN_SERVICE, "evaluate"):
            rules.sync_threshold_rules(self.store, self.settings, now)
            got = inputs.gather(self.store, self.settings, now)
            result = evaluation.evaluate(self.store, self.settings, got.samples, now, complete=got.complete)
        result.problems.extend(got.problems)
        return result

    def process_escalations(self, now: datetime | None = None) -> list[tuple[int, int]]:
        with optional_span(SPAN_SERVICE, "process_escalations"):
            return escalation.process_escalations(self.store, self.settings, _now(now))

    def deliver_pending(self, now: datetime | None = None) -> delivery.DeliveryReport:
        with optional_span(SPAN_SERVICE, "deliver_notifications"):
            return delivery.deliver_pending(self.store, self.settings, _now(now), outages=self.outages)

    # ---- alert actions ------------------------------------------------------------------------

    def _act(self, alert_id: int, user: str, action: str, now: datetime | None, fn: Any) -> dict[str, Any]:
        auth.authorize(self.store, user, action, self.settings)
        now = _now(now)
        with self.store.begin() as conn:
            alert = escalation.lock_alert(conn, int(alert_id))
            if alert is None:
                raise AlertNotFound(f"no alert #{alert_id}")
            rule = rules.get_rule(conn, alert["rule_name"])
            fn(conn, alert, rule, now)
        return self.get_alert(alert_id)

    def acknowledge_alert(
        self, alert_id: int, acknowledged_by: str, *, note: str | None = None, now: datetime | None = None
    ) -> dict[str, Any]:
        """Stop escalation; PagerDuty and Opsgenie are acknowledged too."""
        return self._act(alert_id, acknowledged_by, "alerts.acknowledge", now, lambda conn, alert, rule, t:
                         lifecycle.acknowledge(conn, self.store, self.settings, alert, rule, t, actor=acknowledged_by,
                                               note=note))  # fmt: skip

    def resolve_alert(
        self,
        alert_id: int,
        resolved_by: str,
        *,
        note: str | None = None,
        only_if_clear: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Close the alert (PagerDuty, Opsgenie and the webhook are told). If its condition still
        holds, the next evaluation opens a new alert, whose notification the rule's cooldown holds.

        `only_if_clear=True` (what the console's Resolve button sends first) refuses with
        `ConditionStillHolds` while the condition holds, in the same transaction, so an operator
        is asked before a resolve that would fire again at once and lose the acknowledgement."""

        def step(conn: sa.Connection, alert: dict[str, Any], rule: AlertRule | None, t: datetime) -> None:
            if (
                only_if_clear
                and alert["state"] in (STATE_FIRING, STATE_ACKNOWLEDGED)
                and alert["clear_since"] is None
            ):
                raise ConditionStillHolds(
                    f"alert #{alert['id']} ({alert['rule_name']}): its condition still holds, so it will fire "
                    "again at the next evaluation; silence it instead to keep it quiet"
                )
            lifecycle.resolve(conn, self.store, self.settings, alert, rule, t, actor=resolved_by,
                              reason=note or f"resolved by {resolved_by}")  # fmt: skip

        return self._act(alert_id, resolved_by, "alerts.resolve", now, step)

    def silence_alert(
        self,
        alert_id: int,
        user: str,
        *,
        reason: str,
        duration_s: float | None = None,
        duration_min: float | str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A silence matching exactly this alert (its rule and labels): what to do instead of
        resolving an alert whose condition still holds. The duration in seconds or, as the console
        asks for it, in minutes (`add_silence`)."""
        alert = self.get_alert(alert_id)
        if alert["state"] not in OPEN_STATES:  # a stale id would mute the rule's future alerts
            raise InvalidTransition(
                f"alert #{alert['id']} is {alert['state']}: silence an open alert, or make a silence by rule and "
                "labels (Silences tab)"
            )
        return self.add_silence(user, reason=reason, rule_name=alert["rule_name"], matchers=alert["labels"],
                                duration_s=duration_s, duration_min=duration_min, now=now)  # fmt: skip

    def escalate_alert(self, alert_id: int, user: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Move the alert up one level now (its channels are notified even if silenced)."""

        def step(conn: sa.Connection, alert: dict[str, Any], rule: AlertRule | None, t: datetime) -> None:
            if alert["state"] not in ACTIVE_STATES:
                raise InvalidTransition(
                    f"alert #{alert['id']} is {alert['state']}; only open alerts escalate"
                )
            if alert["escalation_level"] >= MAX_LEVEL:
                raise InvalidTransition(f"alert #{alert['id']} is already at the highest level ({MAX_LEVEL})")
            if rule is None:
                raise InvalidTransition(f"the rule of alert #{alert['id']} was deleted")
            escalation.run_step(conn, self.store, self.settings, alert, rule, t, actor=user, manual=True)

        return self._act(alert_id, user, "alerts.escalate", now, step)

    def escalation_preview(self, alert_id: int, *, now: datetime | None = None) -> dict[str, Any]:
        """What escalating the alert now would do, for the question asked before it: the next
        `level` (None at the top), the `channels` of that level (`escalation.level_channels`), those
        that will be `tried` (configured), those `not_configured` (skipped, as `run_step` skips
        them), and those tried but `failing` (channel -> the last error, scrubbed: their last
        delivery attempt failed, so the page may not arrive)."""
        alert = self.get_alert(alert_id)
        level = int(alert["escalation_level"]) + 1
        if level > MAX_LEVEL:
            return {"level": None, "channels": [], "tried": [], "not_configured": [], "failing": {}}
        with self.store.connect() as conn:
            rule = rules.get_rule(conn, alert["rule_name"])
        wanted = (
            list(escalation.level_channels(rule, alert, level))
            if rule is not None
            else list(escalation.LEVEL_CHANNELS.get(level, ()))
        )
        status = {c["channel"]: c for c in self.channel_status(now)}
        tried = [c for c in wanted if ch.configured(c, self.settings)]
        failing = {
            c: status[c]["last_error"] or "its last delivery failed"
            for c in tried
            if status.get(c, {}).get("state") == "failing"
        }
        return {"level": level, "channels": wanted, "tried": tried,
                "not_configured": [c for c in wanted if c not in tried], "failing": failing}  # fmt: skip

    # ---- reads --------------------------------------------------------------------------------

    def get_alert(self, alert_id: int) -> dict[str, Any]:
        a = schema.alerts
        with self.store.connect() as conn:
            row = conn.execute(sa.select(a).where(a.c.id == int(alert_id))).first()
        if row is None:
            raise AlertNotFound(f"no alert #{alert_id}")
        return public_alert(row)

    def highest_alert_id(self) -> int:
        """The highest alert id ever handed out, dropped alerts included (ids only grow: SQLite's
        AUTOINCREMENT sequence, PostgreSQL's serial sequence), 0 before the first: a link to a
        higher id names an alert that never existed, not one that was dropped."""
        with self.store.connect() as conn:
            if self.store.is_postgres:
                seq = conn.execute(sa.text("SELECT pg_get_serial_sequence('alerts', 'id')")).scalar()
                if seq:
                    last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {seq}")).one()
                    return int(last) if called else 0
            else:
                seq = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'alerts'")).scalar()
                if seq is not None:
                    return int(seq)
            return int(conn.execute(sa.select(sa.func.max(schema.alerts.c.id))).scalar() or 0)

    def active_alerts(
        self, *, include_pending: bool = False, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Firing and acknowledged alerts, most severe and newest first.

        Each carries `silenced_by`: the active silence that matches it now ({id, ends_at, reason},
        the one ending last), or None. `suppressed_by` is what held the alert's last due step, set
        when a step comes due; a silence created meanwhile holds the alert's notifications at once,
        and the console says so at once (it said nothing until the worker's next step)."""
        a = schema.alerts
        states = OPEN_STATES if include_pending else ACTIVE_STATES
        now = _now(now)
        with self.store.connect() as conn:
            rows = conn.execute(sa.select(a).where(a.c.state.in_(states)).order_by(a.c.id.desc())).all()
            live = active_silences(conn, now)
        out = [public_alert(r) for r in rows]
        for d in out:
            found = [x for x in live if x.matches(d["rule_name"], d["labels"], d["severity"])]
            sil = max(found, key=lambda x: x.ends_at) if found else None
            d["silenced_by"] = (
                {"id": sil.id, "ends_at": sil.ends_at, "reason": sil.reason} if sil is not None else None
            )
        rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        out.sort(key=lambda d: (d["state"] != "firing", rank.get(d["severity"], 9)))
        return out

    def alert_history(self, filters: Mapping[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
        """Alerts, newest first. Filters: state, severity, rule_name (a value or a list each), bot,
        acknowledged_by, since, until (on when the alert opened), include_unfired, limit (500)."""
        f = {**(filters or {}), **kw}
        a = schema.alerts
        q = sa.select(a)

        def many(key: str, col: Any) -> None:
            nonlocal q
            value = f.get(key)
            if value:
                q = q.where(col.in_([value] if isinstance(value, str) else list(value)))

        many("state", a.c.state)
        many("severity", a.c.severity)
        many("rule_name", a.c.rule_name)
        if f.get("acknowledged_by"):
            q = q.where(a.c.acknowledged_by == f["acknowledged_by"])
        if f.get("since"):
            q = q.where(a.c.created_at >= to_naive_utc(f["since"]))
        if f.get("until"):
            q = q.where(a.c.created_at < to_naive_utc(f["until"]))
        if not f.get("include_unfired"):
            q = q.where(a.c.fired_at.is_not(None))
        limit = int(f.get("limit") or 500)
        bot = f.get("bot")
        q = q.order_by(a.c.id.desc()).limit(limit if not bot else limit * 20)
        with self.store.connect() as conn:
            rows = [public_alert(r) for r in conn.execute(q)]
        if bot:
            rows = [r for r in rows if r["labels"].get("bot") == bot][:limit]
        return rows

    def alert_timeline(self, alert_id: int) -> list[dict[str, Any]]:
        e = schema.alert_events
        with self.store.connect() as conn:
            rows = conn.execute(
                sa.select(e).where(e.c.alert_id == int(alert_id)).order_by(e.c.ts, e.c.id)
            ).all()
        return [
            {"id": r.id, "ts": r.ts, "kind": r.kind, "actor": r.actor, "detail": dict(r.detail or {})}
            for r in rows
        ]

    def notifications(self, alert_id: int | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
        n = schema.notifications
        q = sa.select(n).order_by(n.c.id.desc()).limit(limit)
        if alert_id is not None:
            q = q.where(n.c.alert_id == int(alert_id))
        with self.store.connect() as conn:
            rows = conn.execute(q).all()
        return [{k: r._mapping[k] for k in ("id", "alert_id", "level", "channel", "kind", "status", "attempts",
                 "next_attempt_at", "last_attempt_at", "last_error", "created_at", "sent_at")} for r in rows]  # fmt: skip

    def channel_status(self, now: datetime | None = None) -> list[dict[str, Any]]:
        return delivery.channel_status(self.store, self.settings, _now(now))

    def alert_counts(self, *, hours: int = 24, now: datetime | None = None) -> list[dict[str, Any]]:
        """Alerts fired per hour and severity over the last `hours` (for the page's chart)."""
        now = _now(now)
        a = schema.alerts
        with self.store.connect() as conn:
            rows = conn.execute(
                sa.select(a.c.fired_at, a.c.severity).where(
                    a.c.fired_at > now - timedelta(hours=hours), a.c.fired_at <= now
                )
            ).all()
        counts: dict[tuple[datetime, str], int] = {}
        for fired_at, severity in rows:
            key = (fired_at.replace(minute=0, second=0, microsecond=0), severity)
            counts[key] = counts.get(key, 0) + 1
        return [{"hour": h, "severity": s, "alerts": c} for (h, s), c in sorted(counts.items())]

    # ---- silences -----------------------------------------------------------------------------

    def silence_bounds(self) -> tuple[float, float]:
        """The shortest and longest silence this service accepts, in seconds: what forms show as
        the bound is the one enforced (`silences.longest_silence_s`)."""
        return MIN_SILENCE_S, longest_silence_s(self.settings)

    def add_silence(
        self,
        user: str,
        *,
        reason: str,
        rule_name: str | None = None,
        matchers: Mapping[str, str] | None = None,
        ends_at: datetime | None = None,
        duration_s: float | None = None,
        duration_min: float | str | None = None,
        starts_at: datetime | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A silence from `starts_at` (now) to `ends_at`, or for `duration_s` seconds, or for
        `duration_min` minutes (a number or the text a person typed: the console's field is in
        minutes, so its errors are too, under the key `duration_min`)."""
        auth.authorize(self.store, user, "silences.manage", self.settings)
        now = _now(now)
        errors: dict[str, str] = {}
        start = to_naive_utc(starts_at) if starts_at else now
        min_s, max_s = self.silence_bounds()  # ALERT_SILENCE_MAX_S, default 7 days
        in_minutes = duration_min is not None and duration_s is None and ends_at is None
        field = "duration_min" if in_minutes else "duration_s" if duration_s is not None else "ends_at"
        if in_minutes:
            bounds = (f"at least {min_s / 60:g} min and at most {max_s / 60:.15g} min "
                      f"({human_duration(max_s)}, ALERT_SILENCE_MAX_S)")  # fmt: skip
        else:
            bounds = (
                f"at least {human_duration(min_s)} and at most {human_duration(max_s)} (ALERT_SILENCE_MAX_S)"
            )
        if in_minutes:
            try:
                minutes = float(str(duration_min).strip())
            except (TypeError, ValueError):
                errors[field] = f"Minutes must be a number, not {str(duration_min)!r:.30}"
            else:
                if not min_s <= minutes * 60 <= max_s:  # also refuses nan and inf
                    errors[field] = f"a silence lasts {bounds}, not {minutes:.15g} min"
                else:
                    ends_at = start + timedelta(minutes=minutes)
        elif ends_at is None and duration_s is not None:
            try:
                seconds = float(duration_s)
            except (TypeError, ValueError, OverflowError):
                errors[field] = "duration must be a number of seconds"
            else:
                if not min_s <= seconds <= max_s:  # also refuses nan and inf
                    errors[field] = f"a silence lasts {bounds}, not {seconds:,.15g} s"
                else:
                    ends_at = start + timedelta(seconds=seconds)
        end = to_naive_utc(ends_at) if ends_at else None
        if not isinstance(reason, str) or not reason.strip():
            errors["reason"] = "a reason is required (what maintenance, which ticket)"
        if end is None and field not in errors:
            errors["ends_at"] = "an end time (or a duration) is required"
        elif end is not None and end <= start:
            errors[field] = f"a silence lasts {bounds}; this one ends before it starts"
        elif end is not None and end <= now:
            errors["ends_at"] = "the end must be in the future"
        elif end is not None and not min_s <= (end - start).total_seconds() <= max_s:
            errors[field] = (
                f"a silence lasts {bounds}, not {human_duration(round((end - start).total_seconds()))}"
            )
        clean: dict[str, str] = {}
        if matchers is not None and not isinstance(matchers, Mapping):
            errors["matchers"] = "matchers must map label names to values"
        else:
            for k, v in (matchers or {}).items():
                if not str(k).strip() or v is None or not str(v).strip():
                    errors["matchers"] = "matchers need a label name and a value each"
                    break
                clean[str(k).strip()] = str(v).strip()
        if rule_name:
            with self.store.connect() as conn:
                if rules.get_rule(conn, rule_name) is None:
                    errors["rule_name"] = f"no alert rule named {rule_name!r}"
        if not rule_name and not clean:
            errors["matchers"] = (
                "name a rule or at least one label matcher (a silence must not mute everything)"
            )
        if errors:
            raise RuleValidationError(errors)
        t = schema.silences
        with self.store.begin() as conn:
            sid = conn.execute(
                sa.insert(t)
                .values(
                    rule_name=rule_name or None,
                    matchers=clean,
                    starts_at=start,
                    ends_at=end,
                    reason=redact_if_enabled(reason.strip(), self.settings),
                    created_by=user,
                    created_at=now,
                )
                .returning(t.c.id)  # fmt: skip
            ).scalar()
            audit.activity(conn, now, "alert_silence.created",
                           f"Silence #{sid} by {user} until {end:%Y-%m-%d %H:%M} UTC", actor=user,
                           description=f"{rule_name or 'any rule'} {clean or ''}: {reason.strip()}",
                           metadata={"silence_id": sid, "rule_name": rule_name, "matchers": clean})  # fmt: skip
        return self._silence(sid, now)

    def expire_silence(self, silence_id: int, user: str, *, now: datetime | None = None) -> dict[str, Any]:
        auth.authorize(self.store, user, "silences.manage", self.settings)
        now = _now(now)
        t, a = schema.silences, schema.alerts
        with self.store.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == int(silence_id)).with_for_update()).first()
            if row is None:
                raise SilenceNotFound(f"no silence #{silence_id}")
            if row.ends_at > now:
                conn.execute(sa.update(t).where(t.c.id == row.id).values(ends_at=max(now, row.starts_at)))
                # alerts it held look again at once instead of at the silence's old end
                conn.execute(
                    sa.update(a)
                    .where(a.c.state == "firing", a.c.suppressed_by.like(f"silenced by silence #{row.id} %"))
                    .values(next_escalation_at=now)
                )
                audit.activity(conn, now, "alert_silence.expired", f"Silence #{row.id} ended by {user}", actor=user,
                               metadata={"silence_id": row.id})  # fmt: skip
        return self._silence(int(silence_id), now)

    def _silence(self, silence_id: int, now: datetime) -> dict[str, Any]:
        t = schema.silences
        with self.store.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == silence_id)).first()
        return row_to_silence(row).to_dict(now)

    def list_silences(
        self, *, active_only: bool = False, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        now = _now(now)
        t = schema.silences
        q = sa.select(t).order_by(t.c.ends_at.desc())
        if active_only:
            q = q.where(t.c.starts_at <= now, t.c.ends_at > now)
        with self.store.connect() as conn:
            return [row_to_silence(r).to_dict(now) for r in conn.execute(q.limit(500))]

    # ---- test notifications -------------------------------------------------------------------

    def configured_channels(self) -> list[str]:
        return ch.configured_channels(self.settings)

    def send_test_notification(
        self, channel: str, user: str, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Send a test message through one channel now and report what happened (never raises for
        a failed send: the result says why, `summary` in one sentence). PagerDuty / Opsgenie test
        incidents are closed at once. The attempt is kept in the outbox as a `test` row, so the
        Channels tab shows its outcome; a failed test does not count towards the
        `notification_channel_failing` alert (`delivery.channel_failures`): the person testing sees
        the result, on-call is not paged for it."""
        auth.authorize(self.store, user, "notifications.test", self.settings)
        now = _now(now)
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}: channels are {', '.join(CHANNELS)}")
        need = ch.missing(channel, self.settings)
        if need:
            raise ValueError(f"{channel} is not configured: set {', '.join(need)}")
        payload = {
            "alert_id": None, "rule": "test_notification", "labels": {"channel": channel}, "severity": "info",
            "state": "firing", "message": f"Test notification requested by {user} from the bot operations console",
            "description": "If you can read this, alerts reach this channel.", "fired_at": now.replace(microsecond=0).isoformat(),
            "dedup_key": f"test_notification{{channel=\"{channel}\"}}", "fingerprint": uuid.uuid4().hex[:16],
            "level": 0, "kind": "test",
        }  # fmt: skip
        msg = ch.Outgoing(
            key=f"obs-test-{uuid.uuid4().hex[:12]}", channel=channel, kind="test", level=0, payload=payload
        )
        ok, detail = True, ""
        try:
            detail = ch.send(msg, self.settings)
        except ch.DeliveryError as exc:
            ok, detail = False, str(exc)
        n = schema.notifications
        with self.store.begin() as conn:
            conn.execute(
                sa.insert(n).values(
                    alert_id=None,
                    level=0,
                    channel=channel,
                    kind="test",
                    payload=payload,
                    status="sent" if ok else "dead",
                    attempts=1,
                    next_attempt_at=now,
                    last_attempt_at=now,
                    last_error=None if ok else detail[:2000],
                    created_at=now,
                    sent_at=now if ok else None,
                )  # fmt: skip
            )
            audit.activity(conn, now, "alert.test_notification",
                           f"Test notification via {channel} by {user}: {'sent' if ok else 'failed'}",
                           severity="low" if ok else "medium", actor=user, description=detail,
                           metadata={"channel": channel, "ok": ok})  # fmt: skip
        # the detail often names its channel already ("webhook: ConnectionError ..."): the summary
        # names it once (the page showed "webhook: webhook: ConnectionError ...")
        text = detail[len(channel) + 2 :] if detail.lower().startswith(f"{channel}: ") else detail
        summary = (f"Test notification sent via {channel}: {text}" if ok
                   else f"Test notification via {channel} failed: {text}")  # fmt: skip
        return {"channel": channel, "ok": ok, "detail": detail, "summary": summary, "at": now}


__all__ = ["AlertingService", "public_alert"]
