"""Alert actions that cannot misfire: in the service (durations bounded with the bound in the
error, a resolve that would fire again refused unless confirmed, a silence for exactly one alert)
and on the Alerts page under AppTest (cards keep their order and identity, resolving a holding
condition and escalating ask first, built-in thresholds read-only, forms that say what happened)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest
from support.alerting import SMTP_PASSWORD, SMTP_USER, Harness, Peers
from support.markdown import shown as _shown
from support.net import free_port

from observability import auth
from observability.alerting import AlertingService, ConditionStillHolds, RuleValidationError
from observability.alerting.rules import CHANNEL_RULE
from observability.settings import reset_settings_cache
from observability.store import Store, schema
from observability.timeutil import utcnow
from observability.ui import alert_frames as views
from observability.ui import common

ROOT = Path(__file__).resolve().parent.parent
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


# ---- service ------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_resolve_refuses_while_the_condition_holds_unless_confirmed(alerting: Harness) -> None:
    op = alerting.users["operator"]
    alerting.update("high_error_rate", keep_firing_for_s=600)
    [alert] = [a for a in alerting.at(0, {"error_rate": 0.3}) if a["rule_name"] == "high_error_rate"]
    assert alerting.svc.get_alert(alert["id"])["condition_holds"]
    alerting.svc.acknowledge_alert(alert["id"], op, now=alerting.now(5))
    with pytest.raises(ConditionStillHolds, match="will fire again"):
        alerting.svc.resolve_alert(alert["id"], op, only_if_clear=True, now=alerting.now(10))
    after = alerting.svc.get_alert(alert["id"])
    assert after["state"] == "acknowledged" and after["acknowledged_by"] == op, "refused: nothing changed"
    alerting.at(15, {"error_rate": 0.0})  # clear now, kept firing for 600 s
    assert not alerting.svc.get_alert(alert["id"])["condition_holds"]
    done = alerting.svc.resolve_alert(alert["id"], op, only_if_clear=True, now=alerting.now(20))
    assert done["state"] == "resolved" and done["resolved_by"] == op


@SQLITE_ONLY
def test_silence_alert_matches_exactly_that_alert(alerting: Harness) -> None:
    op = alerting.users["operator"]
    fired = alerting.at(0, {"lead_bot.response_time_p95": 3000.0})
    [alert] = [a for a in fired if a["rule_name"] == "sla_violation"]
    sil = alerting.svc.silence_alert(alert["id"], op, duration_s=1800, reason="on it", now=alerting.now(1))
    assert sil["rule_name"] == "sla_violation" and sil["matchers"] == alert["labels"]
    assert (sil["ends_at"] - sil["starts_at"]).total_seconds() == 1800


@SQLITE_ONLY
@pytest.mark.parametrize("duration_s", [-300, 0, 30, 99_999_999 * 60, float("inf"), float("nan")])
def test_silence_durations_are_bounded_with_the_bound_in_the_error(
    alerting: Harness, duration_s: float
) -> None:
    before = alerting.svc.list_silences()
    with pytest.raises(RuleValidationError) as err:
        alerting.svc.add_silence(alerting.users["operator"], rule_name="sla_violation", reason="deploy",
                                 duration_s=duration_s)  # fmt: skip
    assert "at least 1 min and at most 7 days (ALERT_SILENCE_MAX_S)" in err.value.errors["duration_s"], (
        err.value.errors
    )
    assert alerting.svc.list_silences() == before


# ---- the page -----------------------------------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """An operator's console over a store with two firing alerts (both warning) whose conditions hold."""
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.setenv("ALERT_DEFAULT_FOR_S", "0")
    monkeypatch.delenv("REDIS_URL", raising=False)
    reset_settings_cache()
    common.clear_caches()
    store = Store.from_url(url)
    store.migrate()
    for role in auth.ROLES:
        auth.create_user(store, role, role, "a-long-password")
    svc = AlertingService(store)
    svc.check_and_send_alerts({"lead_bot.response_time_p95": 3000.0})
    svc.check_and_send_alerts({"buyer_bot.response_time_p95": 3100.0})
    yield store
    store.dispose()
    reset_settings_cache()
    common.clear_caches()


def _page(role: str = "operator", tab: str | None = None) -> AppTest:
    """The Alerts page as `role` sees it, on `tab` (the tabs are lazy: only the open one is drawn)."""
    at = AppTest.from_file(str(ROOT / "pages" / "alerts.py"), default_timeout=60)
    at.session_state["user"] = auth.User(role, role)
    if tab is not None:
        at.query_params["tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, key: str):  # noqa: ANN202 - streamlit's Button
    return next(b for b in at.button if b.key == key)


def _card_ids(at: AppTest) -> list[int]:
    """Alert ids in the order their cards are drawn (the Acknowledge/Resolve buttons carry the id)."""
    seen: list[int] = []
    for b in at.button:
        if b.key and b.key.startswith("resolve_") and b.key.removeprefix("resolve_").isdigit():
            seen.append(int(b.key.removeprefix("resolve_")))
    return seen


def _texts(at: AppTest) -> str:
    return "\n".join(
        _shown(e.value) for e in (*at.warning, *at.error, *at.success, *at.info, *at.caption, *at.markdown)
    )


def _alerts(store: Store) -> list[dict]:
    return AlertingService(store).active_alerts()


def _held(at: AppTest) -> int:
    """The headline's "Held (silence, inhibition, cooldown)" count."""
    [held] = [m for m in at.metric if m.label.startswith("Held")]
    return int(held.value)


def _captions_with(at: AppTest, text: str) -> list[str]:
    return [_shown(c.value) for c in at.caption if text in _shown(c.value)]


def test_acknowledge_keeps_every_card_in_place_and_the_timeline_with_its_alert(console: Store) -> None:
    at = _page()
    order = _card_ids(at)
    assert len(order) == 2
    first, second = order
    at.toggle(key=f"tl_open_{second}").set_value(True).run()  # the operator opens the lower timeline
    _button(at, f"ack_{first}").click().run()
    assert not at.exception, at.exception
    states = {a["id"]: a["state"] for a in _alerts(console)}
    assert states[first] == "acknowledged" and states[second] == "firing"
    assert _card_ids(at) == order, "nothing moves under the cursor after Acknowledge"
    assert at.toggle(key=f"tl_open_{second}").value is True
    assert at.toggle(key=f"tl_open_{first}").value is False
    captions = [c.value for c in at.caption]
    assert f"Timeline of alert #{second}" in captions, "the open timeline stays with its alert"
    assert f"Timeline of alert #{first}" not in captions
    assert not any(b.key == f"ack_{first}" for b in at.button)


def test_resolving_a_holding_condition_asks_and_offers_a_silence(console: Store) -> None:
    at = _page()
    target = _card_ids(at)[0]
    _button(at, f"resolve_{target}").click().run()
    assert "still holds" in _texts(at) and "fires it again" in _texts(at)
    assert {a["id"] for a in _alerts(console)} >= {target}, "asking changed nothing"
    assert "1 to 10080 minutes (7 days)" in at.text_input(key=f"sil_min_{target}").help
    at.text_input(key=f"sil_min_{target}").set_value("99999999").run()
    _button(at, f"sil_{target}").click().run()
    # in the unit typed (it said "not 6e+09 s" under a field in minutes)
    assert ("a silence lasts at least 1 min and at most 10080 min (7 days, ALERT_SILENCE_MAX_S), not "
            "99999999 min") in _texts(at)  # fmt: skip
    assert at.text_input(key=f"sil_min_{target}").value == "99999999", "typed text kept after the error"
    assert AlertingService(console).list_silences() == []
    at.text_input(key=f"sil_min_{target}").set_value("soon").run()
    _button(at, f"sil_{target}").click().run()
    assert "Minutes must be a number, not 'soon'" in _texts(at)
    assert _held(at) == 0
    at.text_input(key=f"sil_min_{target}").set_value("45").run()
    _button(at, f"sil_{target}").click().run()
    [sil] = AlertingService(console).list_silences()
    assert sil["rule_name"] == "sla_violation" and sil["active"]
    assert target in {a["id"] for a in _alerts(console)}, "silenced, not resolved"
    # the card and the Held count say so at once (they waited for the worker's next step)
    assert len(_captions_with(at, f"silenced by silence #{sil['id']} until")) == 1, "on that card only"
    assert _held(at) == 1
    _button(at, f"resolve_{target}").click().run()
    _button(at, f"resolve_anyway_{target}").click().run()
    assert target not in {a["id"] for a in _alerts(console)}


def test_escalate_asks_first_and_names_who_gets_paged(console: Store) -> None:
    at = _page()
    target = _card_ids(at)[0]
    _button(at, f"escalate_{target}").click().run()
    # no channel is configured here: the question says nobody is notified (it said "people get paged")
    assert (
        "None of the channels of level 2 (email, slack, webhook) is configured: nobody is notified"
        in _texts(at)
    )
    assert "people get paged" not in _texts(at)
    assert AlertingService(console).get_alert(target)["escalation_level"] <= 1, "one click escalates nothing"
    _button(at, f"escalate_no_{target}").click().run()
    level = AlertingService(console).get_alert(target)["escalation_level"]
    _button(at, f"escalate_{target}").click().run()
    _button(at, f"escalate_yes_{target}").click().run()
    assert AlertingService(console).get_alert(target)["escalation_level"] == level + 1


def _links(at: AppTest) -> dict[str, str]:
    """The page's links, label -> URL (outside the router the links are markdown links)."""
    text = "\n".join(str(m.value) for m in at.markdown)
    return {_shown(label): url for label, url in re.findall(r"\[([^\]]+)\]\((\./[^)]+)\)", text)}


def test_an_alert_links_to_its_bot_conversations_and_calls(console: Store) -> None:
    links = _links(_page())
    assert links["Bot health of lead_bot"] == "./bot_health?bot=lead_bot&range=1h"
    assert links["Conversations of lead_bot"] == "./conversations?bot=lead_bot"
    assert any(u.startswith("./llm_calls?bot=lead_bot&from=") for u in links.values()), links


def test_a_bot_response_alert_links_first_to_the_page_showing_its_figure(console: Store) -> None:
    """The cache alert watches bot responses; Bot health, its only bot page, shows the operations'
    cache hit rate, another figure. AI performance shows the bot's response cache hit rate."""
    fired = AlertingService(console).check_and_send_alerts({"seller_bot.cache_hit_rate": 0.1})
    assert [a["rule_name"] for a in fired] == ["low_cache_hit_rate"]
    common.clear_caches()
    links = _links(_page())
    assert (
        links["AI performance of seller_bot: its bot responses"] == "./ai_performance?bot=seller_bot&range=1h"
    )
    assert links["Bot health of seller_bot"] == "./bot_health?bot=seller_bot&range=1h"


def test_an_alert_on_the_handoff_step_links_where_handoffs_are_shown(console: Store) -> None:
    """Its card says "handoff step"; its links did not: "Bot health of handoff" showed every bot,
    "Conversations of handoff" and its LLM calls matched nothing (the step has none of its own)."""
    svc = AlertingService(console)
    fired = svc.check_and_send_alerts({"handoff.sla_p95_ratio": 2.0, "handoff.failure_rate": 0.4})
    assert {a["rule_name"] for a in fired} == {"sla_violation", "handoff_failure"}
    common.clear_caches()
    at = _page()
    cards = [
        _shown(m.value) for m in at.markdown if "handoff step" in _shown(m.value) and "·" in _shown(m.value)
    ]
    assert len(cards) == 2, cards
    links = _links(at)
    assert links["Bot health of the handoff step"] == "./bot_health?bot=handoff+step&range=1h"
    assert links["Handoffs by route, last 1h"] == "./conversation_quality?tab=Handoffs&range=1h"
    urls = list(links.values())
    assert not [u for u in urls if "bot=handoff&" in u or u.endswith("bot=handoff")], urls
    assert not [label for label in links if label.endswith(" of handoff")], links


def test_alerts_about_no_bot_offer_no_bot_links() -> None:
    """The handoff step, handoffs, a channel, the alert volume and a host metric are no bot: none of
    their links filters a page by a bot, and none goes to conversations."""
    now = datetime(2026, 3, 2, 12, 0)

    def alert(rule: str, metric: str | None, labels: dict, fired_min_ago: float = 10) -> dict:
        return {"rule_name": rule, "metric": metric, "labels": labels, "created_at": now,
                "fired_at": now - timedelta(minutes=fired_min_ago), "pending_since": None}  # fmt: skip

    def links(a: dict) -> dict[str, tuple[str, dict]]:
        return {label: (page, params) for label, page, params in views.alert_links(a, now=now)}

    step = links(alert("handoff_failure", "failure_rate", {"bot": "handoff"}, fired_min_ago=120))
    assert step == {
        "Bot health of the handoff step": ("bot_health", {"bot": "handoff step", "range": "24h"}),
        "Handoffs by route, last 6h": ("conversation_quality", {"tab": "Handoffs", "range": "6h"}),
    }, "the window reaches back to 15 minutes before it fired (2 h 15 min)"
    assert views.alert_bot(alert("sla_violation", "sla_p95_ratio", {"bot": "handoff"})) is None
    assert links(alert("circular_handoff_spike", "blocked_handoffs_1h", {})) == {
        "Handoffs by route, last 1h": ("conversation_quality", {"tab": "Handoffs", "range": "1h"}),
    }
    assert links(alert("notification_channel_failing", "notification_failures", {"channel": "slack"})) == {
        "Channels: delivery via slack": ("alerts", {"tab": "Channels"}),
    }
    assert links(alert("excessive_alert_volume", "alerts_fired_1h", {})) == {
        "Alerts fired, in History": ("alerts", {"tab": "History", "h_range": "24h"}),
    }
    [(label, (page, params))] = links(alert("high_system_load", "system_load", {})).items()
    assert page == "llm_calls" and params["bot"] is None and params["from"] == "2026-03-02T11:35"
    lead = links(alert("sla_violation", "sla_p95_ratio", {"bot": "lead_bot"}, fired_min_ago=3 * 24 * 60))
    assert lead["Bot health of lead_bot"] == ("bot_health", {"bot": "lead_bot", "range": "7d"})
    assert "Conversations of lead_bot" in lead


def test_built_in_thresholds_are_read_only_and_name_their_file(console: Store) -> None:
    names = [r.name for r in AlertingService(console).list_rules() if r.managed_by == "thresholds_config"]
    if not names:
        pytest.skip("no threshold rules configured")
    at = _page("admin", tab="Rules")
    at.selectbox(key="r_pick").set_value(names[0]).run()
    k = f"rf_{names[0]}"
    assert at.text_input(key=f"{k}_thr").disabled and at.text_input(key=f"{k}_metric").disabled
    assert "alert_thresholds.json" in _texts(at) and "read-only" in _texts(at)


def test_rule_form_shows_the_bound_beside_the_field_and_keeps_the_input(console: Store) -> None:
    at = _page("admin", tab="Rules")
    at.selectbox(key="r_pick").set_value("sla_violation").run()
    k = "rf_sla_violation"
    at.text_input(key=f"{k}_for").set_value("94608000000")  # ~3,000 years
    at.text_input(key=f"{k}_desc").set_value("my careful description")
    next(b for b in at.button if b.label == "Save rule").click().run()
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert any("between 0 and 86400 s (24 h)" in e for e in errors), errors
    assert at.text_input(key=f"{k}_desc").value == "my careful description"
    assert AlertingService(console).get_rule("sla_violation").for_s != 94608000000
    at.text_input(key=f"{k}_for").set_value("60")
    next(b for b in at.button if b.label == "Save rule").click().run()
    assert AlertingService(console).get_rule("sla_violation").for_s == 60
    assert any("Rule sla_violation saved" in _shown(s.value) for s in at.success)


def test_silence_form_says_what_happened(console: Store) -> None:
    at = _page(tab="Silences")
    assert "1 to 10080 minutes (7 days, ALERT_SILENCE_MAX_S)" in at.text_input(key="s_min").help
    at.text_input(key="s_min").set_value("-5")
    at.text_input(key="s_reason").set_value("deploy OPS-1")
    at.text_input(key="s_match").set_value("bot=lead_bot")
    next(b for b in at.button if b.label == "Create silence").click().run()
    errors = [_shown(e.value) for e in at.error]
    assert any("at least 1 min and at most 10080 min (7 days, ALERT_SILENCE_MAX_S), not -5 min" in e
               for e in errors), errors  # fmt: skip
    assert at.text_input(key="s_reason").value == "deploy OPS-1"
    at.text_input(key="s_min").set_value("30")
    next(b for b in at.button if b.label == "Create silence").click().run()
    assert any("matching alerts stay quiet until" in _shown(s.value) for s in at.success)
    assert len(AlertingService(console).list_silences()) == 1


def test_a_shared_link_opens_the_same_alert_timeline(console: Store) -> None:
    target = _card_ids(_page())[-1]
    at = AppTest.from_file(str(ROOT / "pages" / "alerts.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", "operator")
    at.query_params["alert"] = str(target)
    at.run()
    assert not at.exception, at.exception
    assert at.toggle(key=f"tl_open_{target}").value is True
    assert f"Timeline of alert #{target}" in [c.value for c in at.caption]


def test_a_shared_link_opens_the_history_tab_on_the_same_alert(console: Store) -> None:
    first, target = sorted(a["id"] for a in _alerts(console))
    at = AppTest.from_file(str(ROOT / "pages" / "alerts.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", "operator")
    at.query_params["tab"] = "History"
    at.query_params["alert"] = str(target)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="h_pick").value == target  # not the first row: the alert the link named
    # picking another alert puts it in the URL for the next link
    at.selectbox(key="h_pick").set_value(first).run()
    assert not at.exception, at.exception
    assert at.query_params["alert"] == str(first)


def test_a_link_to_a_pending_or_dropped_alert_says_what_became_of_it(console: Store) -> None:
    """A pending alert is in no list yet another alert's timeline may name it ("inhibited by alert
    #3"), and if it clears without firing it is dropped: a link to it says so instead of nothing."""
    svc = AlertingService(console)
    svc.update_rule("high_error_rate", {"for_s": 600}, "admin")
    svc.check_and_send_alerts({"error_rate": 0.4})  # pending: the condition must hold for 10 min
    [pending] = [a for a in svc.active_alerts(include_pending=True) if a["rule_name"] == "high_error_rate"]

    def linked(tab: str | None) -> str:
        at = AppTest.from_file(str(ROOT / "pages" / "alerts.py"), default_timeout=60)
        at.session_state["user"] = auth.User("operator", "operator")
        if tab:
            at.query_params["tab"] = tab
        at.query_params["alert"] = str(pending["id"])
        at.run()
        assert not at.exception, at.exception
        return _texts(at)

    card = linked(None)  # the Alerts tab shows pending alerts: its card, with its timeline open
    assert f"· pending · level 0 · #{pending['id']}" in card and "pending: fires once its condition" in card
    assert f"Timeline of alert #{pending['id']}" in card and "condition clear" not in card
    note = linked("History")
    assert f"Alert #{pending['id']} (high_error_rate, critical) has not fired: pending since" in note, note
    svc.check_and_send_alerts({"error_rate": 0.0})  # cleared before it fired: dropped
    # the next alert does not take the dropped one's id (SQLite handed the largest id out again, so
    # the link opened "Timeline of alert #N" of this other alert)
    [other] = svc.check_and_send_alerts({"blocked_handoffs_1h": 12})
    assert other["rule_name"] == "circular_handoff_spike" and other["id"] > pending["id"]
    common.clear_caches()  # the page's reads are cached for the TTL
    for tab in (None, "History"):
        text = linked(tab)
        assert f"There is no alert #{pending['id']}: an alert that was pending and cleared" in text
        assert f"Timeline of alert #{pending['id']}" not in text
    # a number no alert ever had is not called dropped
    assert svc.highest_alert_id() == other["id"]
    never = other["id"] + 100
    pending["id"] = never
    assert f"There is no alert #{never}: no alert with that number has been raised." in linked("History")


def test_a_link_to_a_resolved_alert_from_the_active_tab_leads_to_its_history(console: Store) -> None:
    first = min(a["id"] for a in _alerts(console))
    AlertingService(console).resolve_alert(first, "operator")
    at = AppTest.from_file(str(ROOT / "pages" / "alerts.py"), default_timeout=60)
    at.session_state["user"] = auth.User("operator", "operator")
    at.query_params["alert"] = str(first)
    at.run()
    assert not at.exception, at.exception
    assert f"Not active: Alert #{first} (sla_violation, bot=lead_bot, critical) fired at" in _texts(at)
    assert "was resolved at" in _texts(at)
    links = [str(e.proto) for e in at.get("page_link")] + [m.value for m in at.markdown]
    assert any("History" in x and f"alert={first}" in x for x in links), links


def test_the_history_chart_covers_the_range_picked_above_it(console: Store) -> None:
    """The chart under the Range filter says and counts that range (it said "last 24 hours" whatever
    the Range), per hour over a day and per day over 7 and 30 days."""
    fired = len(AlertingService(console).alert_counts(hours=24))
    assert fired, "the console fixture fired no alert"
    for window, bucket in (("24h", "hour"), ("7d", "day"), ("30d", "day")):
        at = AppTest.from_file(str(ROOT / "pages" / "alerts.py"), default_timeout=60)
        at.session_state["user"] = auth.User("operator", "operator")
        at.query_params["tab"] = "History"
        at.query_params["h_range"] = window
        at.run()
        assert not at.exception, at.exception
        [chart] = at.get("plotly_chart")
        fig = json.loads(chart.proto.spec)
        assert f"per {bucket}, last {window}" in fig["layout"]["title"]["text"]
        lo, hi = (pd.Timestamp(x) for x in fig["layout"]["xaxis"]["range"])
        assert hi - lo == pd.Timedelta(days={"24h": 1, "7d": 7, "30d": 30}[window])
        starts = {pd.Timestamp(x) for trace in fig["data"] for x in trace["x"]}
        assert bucket == "hour" or all(t == t.normalize() for t in starts), starts  # days start at midnight


# ---- channels that cannot deliver (a real aiosmtpd and a local HTTP server) -----------------------


@pytest.fixture
def wired(console: Store, peers: Peers, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Peers]]:
    """The console with e-mail to a real aiosmtpd (STARTTLS) whose certificate it does not trust, so
    every e-mail fails; the webhook to a local HTTP server that accepts; Slack not configured."""
    peers.webhook_secret = None
    env = {
        "ALERT_EMAIL_ENABLED": "true", "ALERT_EMAIL_SMTP_HOST": "127.0.0.1", "ALERT_EMAIL_SMTP_PORT": str(peers.smtp_port),
        "ALERT_EMAIL_SECURITY": "starttls", "ALERT_EMAIL_SMTP_USER": SMTP_USER, "ALERT_EMAIL_SMTP_PASSWORD": SMTP_PASSWORD,
        "ALERT_EMAIL_FROM": "alerts@example.test", "ALERT_EMAIL_TO": "oncall@example.test, lead@example.test",
        "ALERT_WEBHOOK_ENABLED": "true", "ALERT_WEBHOOK_URL": f"{peers.base}/webhook",
        "ALERT_WEBHOOK_HEADERS": json.dumps({"X-Team": "bots", "Authorization": "Bearer hook-token"}),
    }  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_settings_cache()
    common.clear_caches()
    yield console, peers


def _card(at: AppTest, channel: str) -> str:
    """A channel card's head: its name and state (markdown)."""
    [head] = [_shown(m.value) for m in at.markdown if _shown(m.value).startswith(f"**{channel}**")]
    return head


def test_escalate_names_the_channels_tried_and_those_not_configured_or_failing(
    wired: tuple[Store, Peers],
) -> None:
    store, peers = wired
    failed = AlertingService(store).send_test_notification("email", "operator")
    assert not failed["ok"] and "certificate" in failed["detail"]
    common.clear_caches()
    at = _page()
    target = _card_ids(at)[0]
    _button(at, f"escalate_{target}").click().run()
    text = _texts(at)
    assert f"**Escalate alert #{target} to level 2?** It is sent now to email, webhook," in text, text
    assert "Not configured, so not sent: slack" in text
    assert (
        "email is failing, this may not arrive: its last delivery failed (SMTP TLS certificate not trusted"
        in text
    )
    _button(at, f"escalate_yes_{target}").click().run()
    assert f"Alert #{target} escalated to level 2: sent to email, webhook" in [
        _shown(t.value) for t in at.toast
    ]
    AlertingService(
        store
    ).deliver_pending()  # the worker's delivery: what the question named is what is tried
    assert [(r.kind, r.alert_id, r.level) for r in peers.of("webhook")] == [("trigger", target, 2)]
    assert peers.of("email") == [] and peers.attempts.get("slack", 0) == 0


def test_channel_cards_show_a_failing_channel_and_its_test_result_with_fresh_counts(
    wired: tuple[Store, Peers], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, peers = wired
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hook/T0KENSECRET")
    reset_settings_cache()
    at = _page(tab="Channels")
    assert _card(at, "webhook").endswith(":green[configured]") and _card(at, "email").endswith(
        ":green[configured]"
    )
    _button(at, "test_webhook").click().run()
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert any(e.startswith("Test notification via webhook failed: ConnectionError") for e in errors), errors
    assert not [e for e in errors if "webhook: webhook" in e], errors
    # the counts beside the result include the test (they said "gave up: 0" beside the failure)
    assert _captions_with(at, "gave up: 1 · failed attempts since last success: 1")
    assert _card(at, "webhook").endswith(":red[failing]")
    [last] = _captions_with(at, "last test failed at")
    assert "ConnectionError" in last and "T0KENSECRET" not in _texts(at), "the error is scrubbed of secrets"
    for _ in range(2):
        _button(at, "test_webhook").click().run()
    _button(at, "test_email").click().run()
    assert _card(at, "email").endswith(":red[failing]")
    assert any("Test notification via email failed: SMTP TLS certificate not trusted" in _shown(e.value)
               for e in at.error)  # fmt: skip
    # three failed tests of one channel page nobody: the channel-failing rule counts real notifications
    svc = AlertingService(store)
    svc.evaluate()
    assert [a for a in svc.active_alerts(include_pending=True) if a["rule_name"] == CHANNEL_RULE] == []
    # ... and the card says so beside the count the rule's threshold (3) would read as reached
    assert _captions_with(
        at, "gave up: 3 · failed attempts since last success: 3 (3 of them tests, which raise no alert)"
    )
    # the webhook works again: the card says so and the success replaces the failure
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{peers.base}/webhook")
    reset_settings_cache()
    _button(at, "test_webhook").click().run()
    assert _card(at, "webhook").endswith(":green[configured]")
    assert any(
        _shown(s.value).startswith("Test notification sent via webhook: HTTP 200 (at ") for s in at.success
    )
    assert [r.kind for r in peers.of("webhook")] == ["test"]


def test_admin_says_which_alert_channel_is_failing(wired: tuple[Store, Peers]) -> None:
    store, _ = wired
    at = AppTest.from_file(str(ROOT / "pages" / "admin.py"), default_timeout=60)
    at.session_state["user"] = auth.User("admin", "admin")
    at.run()
    assert not at.exception and not [e for e in at.error if "is failing" in _shown(e.value)]
    AlertingService(store).send_test_notification("email", "operator")
    common.clear_caches()
    at.run()
    [shown] = [_shown(e.value) for e in at.error if "is failing" in _shown(e.value)]
    assert (
        shown.startswith("**Alert channel email is failing:** its last test failed at")
        and "certificate" in shown
    )
    assert SMTP_PASSWORD not in _texts(at)


def test_a_channel_failing_alert_links_to_the_channels_tab(console: Store) -> None:
    AlertingService(console).update_metric("notification_failures", 5, labels={"channel": "email"})
    common.clear_caches()
    links = _links(_page())
    assert links["Channels: delivery via email"] == "./alerts?tab=Channels", links
    assert "Its LLM calls" not in [label for label, url in links.items() if "notification" in url], links


def test_rule_form_says_what_a_blank_duration_means_and_names_fields_by_their_labels(console: Store) -> None:
    at = _page("admin", tab="Rules")
    at.selectbox(key="r_pick").set_value("sla_violation").run()
    k = "rf_sla_violation"
    assert "Blank: 300 s" in at.text_input(key=f"{k}_cd").help
    assert "Blank: 0 s" in at.text_input(key=f"{k}_for").help
    at.text_input(key=f"{k}_keep").set_value("soon")
    next(b for b in at.button if b.label == "Save rule").click().run()
    errors = [_shown(e.value) for e in at.error]
    assert any(e.startswith("Keep firing must be a number, got 'soon'") for e in errors), errors
    assert not [e for e in errors if "keep_firing_for" in e], errors
    at.text_input(key=f"{k}_keep").set_value("")
    at.text_input(key=f"{k}_cd").set_value("")  # blank: what the help said
    at.text_input(key=f"{k}_for").set_value("")
    next(b for b in at.button if b.label == "Save rule").click().run()
    rule = AlertingService(console).get_rule("sla_violation")
    assert (rule.cooldown_s, rule.for_s) == (300.0, 0.0)


@SQLITE_ONLY
def test_silence_minutes_are_checked_in_minutes_against_the_enforced_bound(alerting: Harness) -> None:
    op = alerting.users["operator"]
    for typed, said in (
        ("999999", "not 999999 min"),
        ("-5", "not -5 min"),
        ("ten", "Minutes must be a number"),
    ):
        with pytest.raises(RuleValidationError) as err:
            alerting.svc.add_silence(op, rule_name="sla_violation", reason="deploy", duration_min=typed)
        assert said in err.value.errors["duration_min"], err.value.errors
    assert err.value.errors["duration_min"].startswith("Minutes must be a number, not 'ten'")
    with pytest.raises(RuleValidationError) as err:
        alerting.svc.add_silence(op, rule_name="sla_violation", reason="deploy", duration_min=999999)
    assert err.value.errors == {"duration_min": "a silence lasts at least 1 min and at most 10080 min (7 days, "
                                "ALERT_SILENCE_MAX_S), not 999999 min"}  # fmt: skip
    shorter = AlertingService(alerting.store, alerting.settings.replace(alert_silence_max_s=3600))
    assert shorter.silence_bounds() == (60.0, 3600.0)
    with pytest.raises(RuleValidationError, match=r"at most 60 min \(1 h, ALERT_SILENCE_MAX_S\), not 90 min"):
        shorter.add_silence(op, rule_name="sla_violation", reason="deploy", duration_min=90)
    made = shorter.add_silence(
        op, rule_name="sla_violation", reason="deploy", duration_min="45", now=alerting.now(0)
    )
    assert made["ends_at"] - made["starts_at"] == timedelta(minutes=45)


def test_escalate_does_not_promise_a_page_when_every_channel_it_goes_to_is_failing(
    wired: tuple[Store, Peers], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "It is sent now to email, webhook: people get paged" stood beside "email is failing" and
    "webhook is failing": with every channel failing, the question says nobody may be paged."""
    store, _ = wired
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hook")  # nothing listens
    reset_settings_cache()
    svc = AlertingService(store)
    assert not svc.send_test_notification("email", "operator")["ok"]
    assert not svc.send_test_notification("webhook", "operator")["ok"]
    target = _card_ids(_page())[0]
    asked = views.escalation_question(store, svc.get_alert(target))
    assert "every one of them is failing: nobody may be paged" in asked["paged"]
    assert "people get paged" not in asked["paged"] and len(asked["notes"]) >= 2


def test_a_held_alert_shows_no_next_step_and_an_overdue_step_says_now(console: Store) -> None:
    """An inhibited or silenced alert takes no escalation step, yet its card said "next step due
    17:47:21" and a later time at each refresh, always already past."""
    first, second = sorted(a["id"] for a in _alerts(console))
    svc = AlertingService(console)
    with console.begin() as conn:  # the worker's next step is overdue for both
        conn.execute(sa.update(schema.alerts).values(next_escalation_at=utcnow() - timedelta(minutes=1)))
    svc.silence_alert(second, "operator", reason="known incident", duration_min=30)
    common.clear_caches()
    text = _texts(_page())
    assert "next step due now (at the worker's next tick)" in text
    assert text.count("next step due") == 1  # the silenced one shows none
