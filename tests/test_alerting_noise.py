"""Noise audit on the demo simulator's traffic: the worker's alert evaluation walked through three
hours of seeded history at the worker's 15 s tick, counting alert openings, resolutions and the
notifications queued in the outbox.

The bar is Alertmanager's, no noise from flapping: calm periods raise no alert, and each series
an incident breaks opens once and resolves once after the incident ends (no open/close churn while
a rate hovers around its threshold or its traffic around ALERT_MIN_SAMPLES). The counts are exact,
so an extra alert or notification fails as surely as a missing one.

History: `simulate.backfill(hours=3, seed=7, end=2025-03-04 18:00 UTC)`, whose incident schedule is
a rate-limited period 15:38:07-15:50:00 (every bot), an error burst on the lead bot
16:41:44-16:58:02 and a slow lead bot from 17:43:03 (still under way at the end). Default settings
(ALERT_DEFAULT_FOR_S 120, ALERT_KEEP_FIRING_FOR_S 300, ALERT_MIN_SAMPLES 20) and the shipped rules;
every channel configured (nothing is sent: the outbox rows are the notifications).

One opening is justified rather than caused by an incident: `circular_handoff_spike` at 15:43:30,
when the simulator's ordinary circular handoffs reach 11 blocked in the last hour (the rule says
more than 10 in an hour; the calm rate of the simulator sits just below that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from observability.alerting import AlertingService
from observability.demo import simulate
from observability.settings import Settings
from observability.store import Store, schema
from observability.timeutil import to_epoch

END = datetime(2025, 3, 4, 18, 0)  # naive UTC, like the store
HOURS = 3
SEED = 7
WALK_FROM = datetime(2025, 3, 4, 15, 5)  # the first 5 minutes have no full metric window yet
TICK = timedelta(seconds=15)


def at(hms: str) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return END.replace(hour=h, minute=m, second=s)


# (kind, bot, start, end) of the schedule above; the test checks the simulator still plans them
INCIDENTS = [
    ("rate_limit", None, at("15:38:07"), at("15:50:00")),
    ("error_burst", "lead_bot", at("16:41:44"), at("16:58:02")),
    ("slow", "lead_bot", at("17:43:03"), at("18:05:46")),
]
# every opening, by incident; nothing opens anywhere else
OPENED = {
    "rate_limit": [
        'rate_limit_breach{}', 'high_error_rate{bot="seller_bot"}', 'high_error_rate{bot="buyer_bot"}',
        'high_error_rate{}', 'circular_handoff_spike{}', 'high_error_rate{bot="lead_bot"}',
    ],
    "error_burst": [
        'high_error_rate{bot="lead_bot"}', 'handoff_failure{bot="handoff"}', 'high_error_rate{}',
        'sla_violation{bot="lead_bot"}',
    ],
    "slow": ['sla_violation{bot="lead_bot"}', 'sla_violation{bot="handoff"}'],
}  # fmt: skip
# the series whose rule matches the incident: opens once, resolves once after it ends
MATCHING = {
    "rate_limit": 'rate_limit_breach{}',
    "error_burst": 'high_error_rate{bot="lead_bot"}',
    "slow": 'sla_violation{bot="lead_bot"}',
}  # fmt: skip
# outbox rows: (kind, level) -> count. Level 1 goes to the rule's channels, level 2 (critical,
# unacknowledged after 5 min) to email + Slack + webhook, level 3 (after 15 min) to PagerDuty and
# Opsgenie; resolutions go to the channels that keep state (webhook, PagerDuty, Opsgenie).
NOTIFICATIONS = {("trigger", 1): 25, ("trigger", 2): 18, ("trigger", 3): 2, ("resolve", 0): 7}


@dataclass
class Change:
    t: datetime
    kind: str  # opened | resolved
    key: str


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, list[Change], list]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('noise') / 'store.db'}"
    settings = Settings().replace(
        database_url=url,
        auth_mode="none",
        alert_email_enabled=True,
        alert_email_smtp_host="127.0.0.1",
        alert_email_from="alerts@example.test",
        alert_email_to="oncall@example.test",
        alert_slack_enabled=True,
        alert_slack_webhook_url="http://127.0.0.1:9/slack",
        alert_webhook_enabled=True,
        alert_webhook_url="http://127.0.0.1:9/webhook",
        alert_webhook_pagerduty_api_key="pd-key",
        alert_webhook_opsgenie_api_key="og-key",
    )
    store = Store.from_url(url)
    store.migrate()
    result = simulate.backfill(
        store, HOURS, seed=SEED, end=to_epoch(END.replace(tzinfo=UTC)), settings=settings
    )
    svc = AlertingService(store, settings)
    changes: list[Change] = []
    t = WALK_FROM
    while t <= END:
        step = svc.evaluate(t)
        assert step.problems == [], step.problems
        svc.process_escalations(t)
        for kind, ids in (("opened", step.fired), ("resolved", step.resolved)):
            changes += [Change(t, kind, svc.get_alert(i)["dedup_key"]) for i in ids]
        t += TICK
    yield store, changes, result.incidents
    store.dispose()


def _incident(t: datetime) -> str | None:
    """The incident an opening at t belongs to (it must open while the incident is under way)."""
    return next((kind for kind, _, start, end in INCIDENTS if start <= t <= end), None)


def _timeline(changes: list[Change]) -> str:
    return "\n".join(f"{c.t:%H:%M:%S} {c.kind:8} {c.key}" for c in changes)


def test_the_simulator_plans_the_incidents_this_audit_expects(walked: tuple) -> None:
    _, _, incidents = walked
    planned = [
        (i.kind, i.bot, datetime.fromtimestamp(i.start, UTC).replace(tzinfo=None, microsecond=0),
         datetime.fromtimestamp(i.end, UTC).replace(tzinfo=None, microsecond=0))
        for i in incidents
    ]  # fmt: skip
    assert planned == INCIDENTS


def test_calm_periods_raise_nothing_and_incidents_only_their_own_alerts(walked: tuple) -> None:
    _, changes, _ = walked
    opened: dict[str | None, list[str]] = {}
    for c in changes:
        if c.kind == "opened":
            opened.setdefault(_incident(c.t), []).append(c.key)
    assert opened == OPENED, _timeline(changes)


def test_no_series_opens_or_resolves_twice_for_one_incident(walked: tuple) -> None:
    _, changes, _ = walked
    per_incident = Counter((_incident(c.t), c.key) for c in changes if c.kind == "opened")
    assert max(per_incident.values()) == 1, _timeline(changes)
    # every resolution closes the one opening before it: open, resolve, open, resolve... per series
    state: dict[str, str] = {}
    for c in changes:
        assert state.get(c.key, "resolved") != c.kind, (
            f"{c.key} {c.kind} twice in a row\n{_timeline(changes)}"
        )
        state[c.key] = c.kind
    assert Counter(c.kind for c in changes) == {"opened": 12, "resolved": 10}, _timeline(changes)
    still_open = sorted(k for k, s in state.items() if s == "opened")
    assert still_open == [
        'sla_violation{bot="handoff"}',
        'sla_violation{bot="lead_bot"}',
    ]  # the slow lead bot


def test_the_matching_rule_fires_once_and_resolves_once_after_the_incident(walked: tuple) -> None:
    _, changes, _ = walked
    for kind, _, start, end in INCIDENTS:
        key = MATCHING[kind]
        mine = [
            c
            for c in changes
            if c.key == key and start - timedelta(minutes=10) <= c.t <= end + timedelta(minutes=20)
        ]
        assert [c.kind for c in mine][:1] == ["opened"], (kind, _timeline(changes))
        assert start < mine[0].t <= start + timedelta(minutes=6), f"{kind}: {key} opened at {mine[0].t}"
        if end < END:
            assert [c.kind for c in mine] == ["opened", "resolved"], (kind, _timeline(changes))
            assert end < mine[1].t <= end + timedelta(minutes=15), f"{kind}: {key} resolved at {mine[1].t}"
        else:
            assert [c.kind for c in mine] == ["opened"], (kind, _timeline(changes))


def test_notifications_are_counted_exactly(walked: tuple) -> None:
    store, changes, _ = walked
    n = schema.notifications
    with store.connect() as conn:
        rows = conn.execute(sa.select(n.c.kind, n.c.level, n.c.created_at)).all()
    got = Counter((kind, level) for kind, level, _ in rows)
    assert dict(got) == NOTIFICATIONS, _timeline(changes)
    calm = [
        (kind, level, ts)
        for kind, level, ts in rows
        if kind == "trigger" and level == 1 and _incident(ts) is None
    ]
    assert calm == [], "a first notification outside every incident"
