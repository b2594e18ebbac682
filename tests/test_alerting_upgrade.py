"""A store seeded before threshold rules waited their `for` (for_s 0) gets the shipped default on
its next start, once, except on rules whose `for` a user set."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from support.alerting import T0

from observability.alerting import AlertingService, rules
from observability.settings import Settings
from observability.store import Store, schema

THRESHOLD_RULES = ("high_system_load", "high_response_time", "low_ai_confidence", "low_safety_score")


def for_s(store: Store) -> dict[str, float]:
    t = schema.alert_rules
    with store.connect() as conn:
        return dict(conn.execute(sa.select(t.c.name, t.c.for_s).where(t.c.name.in_(THRESHOLD_RULES))).all())


def test_threshold_rules_seeded_without_a_for_get_the_shipped_one_but_user_edits_stay(
    store: Store, store_url: str, make_settings: Callable[..., Settings], users: dict[str, str]
) -> None:
    settings = make_settings(store_url, auth_mode="password", alert_default_for_s=120.0)
    # the store as an older version left it: threshold rules seeded with for_s 0
    rules.seed_default_rules(store, settings.replace(alert_default_for_s=0.0), now=T0 - timedelta(days=30))
    assert set(for_s(store).values()) == {0.0}
    old = AlertingService(store, settings)  # rule edits and toggles: they seed and upgrade nothing
    admin = users["admin"]
    day = T0 - timedelta(days=2)
    old.update_rule("low_safety_score", {"for_s": 30.0}, admin, now=day)  # a user's own `for`s...
    old.update_rule("low_safety_score", {"for_s": 0.0}, admin, now=day)  # ...back to firing at once
    old.update_rule("low_ai_confidence", {"for_s": 45.0}, admin, now=day)
    old.disable_rule("high_response_time", users["operator"], now=day)  # a toggle is no edit of `for`
    old.update_rule("high_response_time", {"channels": ["email"]}, admin, now=day)  # nor is another field

    svc = AlertingService(store, settings)  # the new version starts
    svc.ensure_seeded()
    assert for_s(store) == {"high_system_load": 120.0, "high_response_time": 120.0,
                            "low_ai_confidence": 45.0, "low_safety_score": 0.0}  # fmt: skip
    assert (
        svc.get_rule("high_response_time").channels == ("email",)
        and not svc.get_rule("high_response_time").enabled
    )
    assert svc.check_and_send_alerts({"system_load": 97.0}, now=T0, deliver=False) == [], "it waits its `for`"

    with store.connect() as conn:
        ae = schema.activity_events
        [title] = conn.execute(
            sa.select(ae.c.title).where(ae.c.event_type == "alert_rule.upgraded")
        ).scalars()
    assert "high_response_time, high_system_load" in title

    svc.update_rule("high_system_load", {"for_s": 0.0}, admin, now=T0)  # a later edit...
    assert rules.upgrade_threshold_rules_for(store, settings) == []  # ...is never undone: once per store
    assert AlertingService(store, settings).get_rule("high_system_load").for_s == 0.0


def test_a_store_seeded_by_this_version_needs_no_upgrade(
    store: Store, store_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(store_url, alert_default_for_s=120.0)
    AlertingService(store, settings).ensure_seeded()
    assert set(for_s(store).values()) == {120.0}
    with store.connect() as conn:
        ae = schema.activity_events
        assert conn.execute(sa.select(sa.func.count()).select_from(ae)
                            .where(ae.c.event_type == "alert_rule.upgraded")).scalar() == 0  # fmt: skip
