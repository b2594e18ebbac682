"""The Alerts page under Streamlit's AppTest: operators act (acknowledge, resolve, escalate, toggle,
create rules, silence, test a channel), analysts only look, and bad input shows a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest
from support.alerting import Peers
from support.markdown import shown

from observability import auth
from observability.alerting import AlertingService
from observability.settings import PROJECT_ROOT, get_settings, reset_settings_cache
from observability.store import Store, schema
from observability.timeutil import utcnow
from observability.ui import common

PAGE = str(PROJECT_ROOT / "pages" / "alerts.py")


@pytest.fixture
def console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password_hash: str, peers: Peers
) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.setenv("ALERT_DEFAULT_FOR_S", "0")  # the scripted alerts below fire at once
    monkeypatch.setenv("ALERT_SLACK_ENABLED", "true")
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", f"{peers.base}/slack")
    reset_settings_cache()
    common.clear_caches()
    store = Store.from_url(url)
    store.migrate()
    with store.begin() as conn:
        conn.execute(sa.insert(schema.users), [
            {"name": f"{role}1", "role": role, "password_hash": password_hash, "created_at": utcnow()}
            for role in auth.ROLES
        ])  # fmt: skip
    svc = AlertingService(store, get_settings())
    now = utcnow() - timedelta(seconds=30)
    # queued only: the worker sends
    svc.check_and_send_alerts({"error_rate": 0.3, "cache_hit_rate": 0.2}, now=now, deliver=False)
    yield store
    store.dispose()
    reset_settings_cache()


def run(role: str, tab: str | None = None) -> AppTest:
    """The page as `role` sees it, on `tab` (the tabs are lazy: only the open one is drawn)."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["user"] = auth.User(f"{role}1", role)
    if tab is not None:
        at.query_params["tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def keys(at: AppTest, kind: str = "button") -> set[str]:
    return {w.key for w in at.get(kind) if getattr(w, "key", None)}


def errors(at: AppTest) -> str:
    return "\n".join(shown(e.value) for e in at.error)


def test_operator_acknowledges_resolves_and_escalates(console: Store) -> None:
    svc = AlertingService(console, get_settings())
    err, cache = sorted(svc.active_alerts(), key=lambda a: a["rule_name"])
    at = run("operator")
    assert {m.label: m.value for m in at.metric}["Firing"] == "2"
    assert {f"ack_{err['id']}", f"resolve_{err['id']}", f"escalate_{err['id']}"} <= keys(at)
    assert "r_del_btn" not in keys(run("operator", tab="Rules")), "only admins see rule deletion"
    at.button(key=f"ack_{err['id']}").click().run()
    assert not at.exception and svc.get_alert(err["id"])["acknowledged_by"] == "operator1"
    at.button(key=f"escalate_{cache['id']}").click().run()
    assert svc.get_alert(cache["id"])["escalation_level"] == 1, "escalation asks first"
    at.button(key=f"escalate_yes_{cache['id']}").click().run()
    assert svc.get_alert(cache["id"])["escalation_level"] == 2
    at.button(key=f"resolve_{cache['id']}").click().run()
    if cache["condition_holds"]:  # resolving what still holds asks first (it would fire again)
        assert svc.get_alert(cache["id"])["state"] != "resolved"
        at.button(key=f"resolve_anyway_{cache['id']}").click().run()
    assert svc.get_alert(cache["id"])["state"] == "resolved"
    at.toggle(key=f"tl_open_{err['id']}").set_value(True).run()  # a card's timeline opens on demand
    timelines = [d.value for d in at.dataframe if "event" in d.value.columns]
    assert any({"fired", "notified", "acknowledged"} <= set(t["event"]) for t in timelines)


def test_each_card_says_what_its_figure_is_and_a_clearing_alert_says_so_once(console: Store) -> None:
    """A cache alert said "cache_hit_rate is 20.0%" and linked to Bot health, whose cache figure is
    another (operations', over the page's window): the card names the figure and its window. An
    alert whose condition cleared said so twice, and counted as held by a silence or cooldown."""
    svc = AlertingService(console, get_settings())
    at = run("analyst")
    captions = [shown(c.value) for c in at.caption]
    [card] = [c for c in captions if c.startswith("cache_hit_rate")]
    assert "cache_hit_rate is the response cache hit rate: Bot responses served from cache / bot responses, " \
        "over the last 5 min" in card, card  # fmt: skip
    assert {m.label: m.value for m in at.metric}["Held (silence, inhibition, cooldown)"] == "0"

    # errors stop: the critical alert keeps firing for keep_firing_for, clearing, and pages nobody
    err = next(a for a in svc.active_alerts() if a["rule_name"] == "high_error_rate")
    svc.check_and_send_alerts({"error_rate": 0.0, "cache_hit_rate": 0.2}, deliver=False)
    svc.process_escalations(utcnow() + timedelta(hours=1))  # its next step comes due: held, it is clear
    cleared = svc.get_alert(err["id"])
    assert cleared["clear_since"] is not None and cleared["suppressed_by"].startswith("condition clear")
    common.clear_caches()  # the page's queries are cached for CONSOLE_CACHE_TTL_S
    at = run("analyst")
    [card] = [shown(c.value) for c in at.caption if shown(c.value).startswith("error_rate")]
    assert card.count("condition clear since") == 1, card
    assert "over the last 5 min" in card
    assert {m.label: m.value for m in at.metric}["Held (silence, inhibition, cooldown)"] == "0"


def test_analyst_sees_alerts_but_no_actions(console: Store) -> None:
    at = run("analyst")
    assert {m.label: m.value for m in at.metric}["Firing"] == "2"
    for tab in (None, "History", "Rules", "Silences", "Channels"):  # each tab is drawn only when open
        at = run("analyst", tab=tab)
        assert not any(
            k.startswith(("ack_", "resolve_", "escalate_", "test_", "toggle_", "r_del"))
            for k in keys(at) | keys(at, "toggle")
        ), tab
        assert not [f for f in at.get("form")], f"no rule or silence forms for analysts ({tab})"


def test_rules_panel_toggles_validates_and_creates(console: Store) -> None:
    svc = AlertingService(console, get_settings())
    at = run("operator", tab="Rules")
    at.toggle(key="toggle_rate_limit_breach").set_value(False).run()
    assert svc.get_rule("rate_limit_breach").enabled is False
    before = [r.name for r in svc.list_rules()]
    at.text_input(key="rf_new_name").input("queue_too_deep")
    at.text_input(key="rf_new_metric").input("queue_dept")
    at.text_input(key="rf_new_thr").input("lots")
    at.button(key="FormSubmitter:rf_new-Create rule").click().run()
    assert "unknown metric 'queue_dept'" in errors(at) and "Threshold must be a number" in errors(at)
    assert [r.name for r in svc.list_rules()] == before
    at.text_input(key="rf_new_metric").input("lead_bot.response_time_p95")
    at.text_input(key="rf_new_thr").input("4000")
    at.button(key="FormSubmitter:rf_new-Create rule").click().run()
    assert not at.exception and svc.get_rule("queue_too_deep").threshold == 4000.0


def test_silence_and_test_notification_from_the_page(console: Store, peers: Peers) -> None:
    svc = AlertingService(console, get_settings())
    at = run("operator", tab="Silences")
    at.selectbox(key="s_rule").select("high_error_rate")
    at.text_input(key="s_reason").input("maintenance window")
    at.button(key="FormSubmitter:silence_form-Create silence").click().run()
    [silence] = svc.list_silences(active_only=True)
    assert silence["rule_name"] == "high_error_rate" and silence["created_by"] == "operator1"
    at.query_params["tab"] = "Channels"
    at.run()
    assert "test_slack" in keys(at) and "test_email" not in keys(at), "only configured channels can be tested"
    at.button(key="test_slack").click().run()
    assert [r.kind for r in peers.of("slack")] == ["test"]
    assert any("slack" in str(s.value) for s in at.success)
