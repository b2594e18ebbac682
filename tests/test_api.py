"""The HTTP API (/api/v1) of the console, served for real by uvicorn (`support.api_fixtures`).

Every endpoint of source document 004 with each role (allowed → it works, refused → 403 naming the
permission), with no, bad, expired, revoked and foreign tokens and a disabled user's (401 with the
reason), a token narrowed to a smaller scope, the audit rows an API action leaves (the same as the
console's), and the activity feed's cursor paging and filters.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from support.api_fixtures import ROLE_USERS, ServedApi
from support.waiting import wait_for

from observability import control
from observability.alerting import AlertingService
from observability.auth import api_tokens
from observability.auth.roles import ROLES, roles_for
from observability.store import schema
from observability.timeutil import utcnow

TIMEOUT = 30

# key -> (method, path, body, action). {cid}: a conversation of its own per (key, role); {alert}: an
# alert; {silence}: a silence made for the call
ENDPOINTS: dict[str, tuple[str, str, dict | None, str]] = {
    "metrics": ("GET", "/monitoring/metrics", None, "dashboards.view"),
    "drill_down": ("GET", "/monitoring/metrics/detailed/response_time?timeframe=24h", None, "dashboards.view"),
    "health": ("GET", "/monitoring/health", None, "dashboards.view"),
    "performance": ("GET", "/monitoring/performance", None, "dashboards.view"),
    "feed": ("GET", "/monitoring/activity/feed?limit=5", None, "dashboards.view"),
    "vip": ("GET", "/monitoring/activity/vip", None, "dashboards.view"),
    "mark_read": ("POST", "/monitoring/activity/mark-read", {"event_ids": ["no-such-event"]}, "activity.mark_read"),
    "status": ("GET", "/intervention/status/{cid}", None, "dashboards.view"),
    "take_control": ("POST", "/intervention/take-control/{cid}", {"reason": "api test", "priority": "high"},
                     "conversations.control"),
    "reply": ("POST", "/intervention/reply/{cid}", {"text": "A person here: how can I help?"}, "conversations.control"),
    "release_control": ("POST", "/intervention/release-control/{cid}", {"summary": "done"}, "conversations.control"),
    "suggest": ("POST", "/intervention/suggest-response", {"conversation_id": "{cid}"}, "conversations.control"),
    "alerts_active": ("GET", "/alerts/active", None, "dashboards.view"),
    "acknowledge": ("POST", "/alerts/acknowledge/{alert}", {"note": "looking"}, "alerts.acknowledge"),
    "resolve": ("POST", "/alerts/resolve/{alert}", {"note": "fixed"}, "alerts.resolve"),
    "escalate": ("POST", "/alerts/escalate/{alert}", None, "alerts.escalate"),
    "silence": ("POST", "/alerts/silence/{alert}", {"reason": "api test", "duration_minutes": 30}, "silences.manage"),
    "expire_silence": ("POST", "/alerts/silences/expire/{silence}", None, "silences.manage"),
    "stop": ("POST", "/emergency/stop/{cid}", {"reason": "api test"}, "conversations.stop"),
    "reset": ("POST", "/emergency/reset/{cid}", {"reason": "api test"}, "conversations.stop"),
    "system_stop": ("POST", "/emergency/system-wide-stop", {"reason": "drill", "confirmation": "STOP ALL"}, "system.stop"),
    "system_resume": ("POST", "/emergency/system-resume", {"reason": "drill over", "confirmation": "RESUME ALL"},
                      "system.stop"),
    "whoami": ("GET", "/auth/whoami", None, "dashboards.view"),
}  # fmt: skip
WITH_CONVERSATION = [k for k, v in ENDPOINTS.items() if "{cid}" in v[1] or (v[2] and "{cid}" in str(v[2]))]
ALERT_OUTCOMES = (200, 409)  # an alert another allowed role resolved first is a 409 (silence too), never 5xx


def conversation_for(api: ServedApi, key: str, role: str) -> str:
    return api.conversations[WITH_CONVERSATION.index(key) * len(ROLES) + ROLES.index(role)]


def call(api: ServedApi, key: str, role: str | None = None, token: str | None = None) -> requests.Response:
    method, path, body, _ = ENDPOINTS[key]
    cid = conversation_for(api, key, role) if role and key in WITH_CONVERSATION else api.conversations[0]
    alert = api.alert_ids[0] if api.alert_ids else 1
    silence = 1
    if "{silence}" in path:
        made = AlertingService(api.store, api.settings).add_silence(
            ROLE_USERS["admin"],
            reason="to be ended",
            rule_name=None,
            matchers={"bot": "api-test"},
            duration_s=600,
        )
        silence = made["id"]
    path = path.format(cid=cid, alert=alert, silence=silence)
    if body is not None:
        body = {k: (v.format(cid=cid) if isinstance(v, str) else v) for k, v in body.items()}
    return requests.request(
        method, api.base + path, json=body, headers=api.headers(role, token), timeout=TIMEOUT
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", list(ENDPOINTS))
def test_every_endpoint_works_for_the_roles_allowed_and_is_refused_with_403_for_the_others(
    served_api: ServedApi, key: str, role: str
) -> None:
    action = ENDPOINTS[key][3]
    if key in ("release_control", "reply") and role in roles_for(action):  # one must hold it to release it
        control.take_control(served_api.store, conversation_for(served_api, key, role), ROLE_USERS[role], "prepare",
                             settings=served_api.settings)  # fmt: skip
    r = call(served_api, key, role)
    if role in roles_for(action):
        expected = ALERT_OUTCOMES if key in ("acknowledge", "resolve", "escalate", "silence") else (200,)
        assert r.status_code in expected, r.text
        assert r.headers["content-type"].startswith("application/json")
    else:
        assert r.status_code == 403, r.text
        assert action in r.json()["detail"]


@pytest.mark.parametrize(
    "why", ["none", "garbage", "expired", "revoked", "disabled user", "signed elsewhere"]
)
@pytest.mark.parametrize("key", list(ENDPOINTS))
def test_every_endpoint_refuses_a_missing_or_unusable_token_with_401_and_a_reason(
    served_api: ServedApi, key: str, why: str
) -> None:
    token = None if why == "none" else served_api.bad_tokens[why]
    r = call(served_api, key, token=token)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate") == "Bearer"
    detail = r.json()["detail"]
    expected = {"none": "no API token", "garbage": "not valid", "expired": "expired", "revoked": "revoked",
                "disabled user": "disabled", "signed elsewhere": "not valid"}[why]  # fmt: skip
    assert expected in detail
    if token:
        assert token not in detail


def test_a_token_narrowed_to_a_smaller_scope_cannot_do_what_its_admin_user_can(served_api: ServedApi) -> None:
    narrow = served_api.tokens["admin_as_analyst"]
    r = requests.get(
        served_api.base + "/auth/whoami", headers=served_api.headers(token=narrow), timeout=TIMEOUT
    )
    assert r.json() == {"user": "ada", "role": "admin", "scope": "analyst"}
    assert requests.get(served_api.base + "/alerts/active", headers=served_api.headers(token=narrow),
                        timeout=TIMEOUT).status_code == 200  # fmt: skip
    r = requests.post(served_api.base + f"/emergency/stop/{served_api.conversations[40]}", json={"reason": "x"},
                      headers=served_api.headers(token=narrow), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 403 and "scope 'analyst'" in r.json()["detail"]
    assert control.intervention_status(served_api.store, served_api.conversations[40]).state == "ai"


def test_an_admins_operator_scoped_token_cannot_override_another_operators_take_over(
    served_api: ServedApi,
) -> None:
    """A token acts with its scope in every decision, "holder or admin" ones included: an admin's
    operator-scoped token reset and released another operator's conversation (the role was read
    from the store); now it is refused as any operator's is, and nothing changes."""
    cid = served_api.conversations[43]
    r = requests.post(served_api.base + f"/intervention/take-control/{cid}", json={"reason": "mine"},
                      headers=served_api.headers("operator"), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200, r.text
    as_operator = served_api.headers(token=served_api.tokens["admin_as_operator"])
    for path, body in ((f"/emergency/reset/{cid}", {"reason": "override"}),
                       (f"/intervention/release-control/{cid}", {"summary": "override"})):  # fmt: skip
        r = requests.post(served_api.base + path, json=body, headers=as_operator, timeout=TIMEOUT)
        assert r.status_code == 409 and "only they or an admin" in r.json()["detail"], (path, r.text)
    status = control.intervention_status(served_api.store, cid)
    assert status.state == "human" and status.operator == "opal"


def test_a_take_over_through_the_api_leaves_the_same_audit_rows_as_the_console(served_api: ServedApi) -> None:
    cid = served_api.conversations[41]
    r = requests.post(served_api.base + f"/intervention/take-control/{cid}",
                      json={"reason": "User safety concern", "priority": "high", "notify_user": True},
                      headers=served_api.headers("operator"), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["action"] == "take_control" and out["outcome"] == "taken" and out["user"] == "opal"
    assert out["message_id"]  # notify_user: the end user is told a person joined
    iv, act = schema.interventions, schema.activity_events
    with served_api.store.connect() as conn:
        row = conn.execute(sa.select(iv).where(iv.c.id == out["action_id"])).one()
        event = conn.execute(sa.select(act).where(act.c.event_type == "intervention.take_control",
                                                  act.c.conversation_id == cid)).one()  # fmt: skip
    assert (row.conversation_id, row.user_name, row.reason, row.priority) == (
        cid,
        "opal",
        "User safety concern",
        "high",
    )
    assert event.user_id == "opal"
    status = requests.get(served_api.base + f"/intervention/status/{cid}", headers=served_api.headers("analyst"),
                          timeout=TIMEOUT).json()  # fmt: skip
    assert (status["state"], status["operator"], status["ai_may_respond"], status["resolved"]) == (
        "human", "opal", False, False)  # fmt: skip
    again = requests.post(served_api.base + f"/intervention/take-control/{cid}", json={"reason": "mine now"},
                          headers=served_api.headers("admin"), timeout=TIMEOUT)  # fmt: skip
    assert again.status_code == 409 and "already held by opal" in again.json()["detail"]


def test_bad_input_gets_a_clear_error_and_changes_nothing(served_api: ServedApi) -> None:
    h = served_api.headers("operator")
    cid = served_api.conversations[42]
    cases = [
        ("POST", f"/intervention/take-control/{cid}", {"reason": ""}, 422),
        ("POST", f"/intervention/take-control/{cid}", {"reason": "x", "priority": "urgent"}, 422),
        ("POST", f"/intervention/take-control/{cid}", {"reason": "x", "extra": 1}, 422),
        ("POST", "/intervention/take-control/no-such-conversation", {"reason": "x"}, 404),
        ("GET", "/intervention/status/no-such-conversation", None, 404),
        ("POST", "/alerts/acknowledge/999999", {}, 404),
        ("GET", "/monitoring/metrics/detailed/no_such_metric", None, 422),
        ("GET", "/monitoring/activity/feed?limit=201", None, 422),
        ("GET", "/monitoring/activity/feed?cursor=not-a-cursor", None, 422),
        ("GET", "/monitoring/activity/feed?severity=huge", None, 422),
    ]
    for method, path, body, status in cases:
        r = requests.request(method, served_api.base + path, json=body, headers=h, timeout=TIMEOUT)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["detail"]
        if (
            status == 404 and "no-such-conversation" in path
        ):  # an action changed nothing; a read had nothing to
            assert ("nothing was changed" in r.json()["detail"]) == (method == "POST"), (path, r.text)
        if status == 422:  # the shape is the same whether FastAPI or a service found it wrong
            assert all(set(e) == {"loc", "msg", "type"} for e in r.json()["detail"]), (path, r.text)
    assert control.intervention_status(served_api.store, cid).state == "ai"
    before = control.system_status(served_api.store)
    r = requests.post(served_api.base + "/emergency/system-wide-stop", json={"reason": "no phrase"},
                      headers=served_api.headers("admin"), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 400 and "STOP ALL" in r.json()["detail"]
    assert control.system_status(served_api.store) == before


def test_the_activity_feed_pages_by_cursor_without_gaps_or_repeats_and_filters(served_api: ServedApi) -> None:
    h = served_api.headers("analyst")
    whole = requests.get(
        served_api.base + "/monitoring/activity/feed?limit=200", headers=h, timeout=TIMEOUT
    ).json()
    assert whole["events"], "the seeded store has activity events"
    seen, cursor, pages = [], None, 0
    while True:
        q = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = requests.get(
            served_api.base + f"/monitoring/activity/feed?{q}", headers=h, timeout=TIMEOUT
        ).json()
        seen += [e["id"] for e in page["events"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor or len(seen) >= len(whole["events"]):
            break
    head = [e["id"] for e in whole["events"]][: len(seen)]
    assert seen == head and len(set(seen)) == len(seen) and pages > 1
    crit = requests.get(served_api.base + "/monitoring/activity/feed?severity=critical&limit=200", headers=h,
                        timeout=TIMEOUT).json()["events"]  # fmt: skip
    assert crit and all(e["severity"] == "critical" for e in crit)
    typed = requests.get(served_api.base + "/monitoring/activity/feed?event_type=api_token.created", headers=h,
                         timeout=TIMEOUT).json()["events"]  # fmt: skip
    assert typed and all(e["event_type"] == "api_token.created" for e in typed)
    none = requests.get(served_api.base + "/monitoring/activity/feed?account_id=no-such-account", headers=h,
                        timeout=TIMEOUT).json()  # fmt: skip
    assert none["events"] == [] and none["next_cursor"] is None


def test_mark_read_is_per_user(served_api: ServedApi) -> None:
    feed = requests.get(served_api.base + "/monitoring/activity/feed?limit=1", headers=served_api.headers("manager"),
                        timeout=TIMEOUT).json()["events"]  # fmt: skip
    eid = feed[0]["id"]
    r = requests.post(served_api.base + "/monitoring/activity/mark-read", json={"event_ids": [eid]},
                      headers=served_api.headers("manager"), timeout=TIMEOUT)  # fmt: skip
    assert r.json() == {"marked": 1, "user": "max"}

    def read_by(role: str) -> bool:
        events = requests.get(served_api.base + "/monitoring/activity/feed?limit=200", headers=served_api.headers(role),
                              timeout=TIMEOUT).json()["events"]  # fmt: skip
        return next(e for e in events if e["id"] == eid)["read"]

    assert read_by("manager") is True
    assert read_by("analyst") is False
    # ids no event has are not stored nor counted (bad input changes nothing); an over-long one is a 422
    r = requests.post(served_api.base + "/monitoring/activity/mark-read", json={"event_ids": ["nope", eid]},
                      headers=served_api.headers("analyst"), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200 and r.json()["marked"] == 1
    with served_api.store.connect() as conn:
        reads = conn.execute(sa.select(schema.activity_reads.c.event_id)).scalars().all()
    assert "nope" not in reads
    r = requests.post(served_api.base + "/monitoring/activity/mark-read", json={"event_ids": ["x" * 100_000]},
                      headers=served_api.headers("analyst"), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 422


def test_live_metrics_and_drill_down_have_the_documents_shape(served_api: ServedApi) -> None:
    h = served_api.headers("analyst")
    m = requests.get(served_api.base + "/monitoring/metrics", headers=h, timeout=TIMEOUT).json()
    assert set(m) == {"conversations_active", "conversations_total_today", "messages_processed", "ai_confidence_avg",
                      "safety_score_avg", "human_interventions", "alert_count", "system_load", "response_time_avg",
                      "claude_requests_today", "claude_cost_today", "timestamp"}  # fmt: skip
    # the role matrix's system-wide stop may hold when the file's tests run out of order (-n without
    # --dist loadfile): stopped conversations are not active
    stopped = control.system_status(served_api.store)["stopped"]
    assert m["conversations_active"] == 0 if stopped else m["conversations_active"] >= 30, (stopped, m)
    d = requests.get(served_api.base + "/monitoring/metrics/detailed/messages?timeframe=1h", headers=h,
                     timeout=TIMEOUT).json()  # fmt: skip
    assert d["metric_name"] == "messages"
    assert sum(p["value"] or 0 for p in d["historical_data"]) >= 2 * 30
    assert d["percentile_data"] == {}, "no percentiles of per-interval counts (they mean nothing)"
    assert set(d["trend_analysis"]) == {"direction", "percentage_change", "is_concerning"}
    r = requests.get(served_api.base + "/monitoring/metrics/detailed/response_time?timeframe=1h", headers=h,
                     timeout=TIMEOUT).json()  # fmt: skip
    assert r["metric_name"] == "response_time" and set(r["percentile_data"]) == {"p50", "p95", "p99"}


def test_alert_actions_through_the_api_change_the_alert_as_the_console_does(served_api: ServedApi) -> None:
    svc = AlertingService(
        served_api.store, served_api.settings.replace(alert_default_for_s=0.0, alert_min_samples=0)
    )
    fired = svc.check_and_send_alerts({"response_time": 99_000.0})
    assert fired, "the high response time rule fires"
    alert_id = fired[0]["id"]
    h = served_api.headers("operator")
    active = requests.get(served_api.base + "/alerts/active", headers=h, timeout=TIMEOUT).json()
    assert alert_id in [a["id"] for a in active["alerts"]] and active["count"] == len(active["alerts"])
    # filtered by the alerts' own severities (it took the activity feed's: low ... critical, no warning)
    severity = svc.get_alert(alert_id)["severity"]
    for wanted in ("info", "warning", "critical"):
        r = requests.get(served_api.base + f"/alerts/active?severity={wanted}", headers=h, timeout=TIMEOUT)
        assert r.status_code == 200 and (alert_id in [a["id"] for a in r.json()["alerts"]]) == (
            wanted == severity
        )
    r = requests.get(served_api.base + "/alerts/active?severity=low", headers=h, timeout=TIMEOUT)
    assert r.status_code == 422
    # its times say they are UTC, as every other endpoint's do (they came without a zone)
    [listed] = [a for a in active["alerts"] if a["id"] == alert_id]
    assert listed["fired_at"].endswith("Z") and listed["created_at"].endswith("Z")
    level = svc.get_alert(alert_id)["escalation_level"]
    r = requests.post(served_api.base + f"/alerts/escalate/{alert_id}", headers=h, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["alert"]["escalation_level"] == level + 1
    r = requests.post(served_api.base + f"/alerts/resolve/{alert_id}", json={"note": "fixed upstream"}, headers=h,
                      timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200
    alert = svc.get_alert(alert_id)
    assert (alert["state"], alert["resolved_by"]) == ("resolved", "opal")
    kinds = [e["kind"] for e in svc.alert_timeline(alert_id)]
    assert "resolved" in kinds
    again = requests.post(
        served_api.base + f"/alerts/acknowledge/{alert_id}", json={}, headers=h, timeout=TIMEOUT
    )
    assert again.status_code == 409 and "resolved" in again.json()["detail"]


def test_an_operator_takes_over_replies_and_the_bot_receives_it_through_the_api(
    served_api: ServedApi,
) -> None:
    """An on-call operator working from the API alone (a chat-ops bot, a script) can answer the
    user: only while they hold the conversation; empty, oversized and others' replies are refused
    and store nothing; personal data is masked before it is stored, as from the console."""
    from observability.sdk import ObservabilityClient

    cid = served_api.conversations[45]
    h = served_api.headers("operator")

    def reply(text: str, headers: dict[str, str] = h) -> requests.Response:
        return requests.post(served_api.base + f"/intervention/reply/{cid}", json={"text": text}, headers=headers,
                             timeout=TIMEOUT)  # fmt: skip

    bot = ObservabilityClient(settings=served_api.settings)
    try:
        r = reply("Hello, a person here.")
        assert r.status_code == 409 and "take conversation" in r.json()["detail"], r.text
        r = requests.post(served_api.base + f"/intervention/take-control/{cid}", json={"reason": "user asked"},
                          headers=h, timeout=TIMEOUT)  # fmt: skip
        assert r.status_code == 200, r.text
        for bad, status, says in (("", 422, "text"), ("   ", 422, "empty"), ("x" * 70_000, 422, "bytes")):
            r = reply(bad)
            assert r.status_code == status and says in str(r.json()["detail"]), (len(bad), r.text)
            assert bad[:40] not in str(r.json()["detail"]) or not bad.strip()
        r = reply("Not yours.", served_api.headers("admin"))
        assert r.status_code == 409 and "held by opal" in r.json()["detail"], r.text
        assert bot.operator_messages(cid) == [], "a refused reply stored nothing"

        r = reply("Hi, I'm Opal. Write to me at opal.private@example.com if the parcel is not there.")
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["action"], out["outcome"], out["user"], out["conversation_id"]) == (
            "reply",
            "sent",
            "opal",
            cid,
        )
        got = wait_for(
            lambda: bot.operator_messages(cid), timeout=10, message="the bot never received the reply"
        )
        assert [m["id"] for m in got] == [out["message_id"]] and got[0]["author"] == "opal"
        assert got[0]["text"].startswith("Hi, I'm Opal.") and "opal.private@example.com" not in got[0]["text"]
        with served_api.store.connect() as conn:
            audit = conn.execute(sa.select(schema.interventions).where(
                schema.interventions.c.id == out["action_id"])).one()  # fmt: skip
        assert (audit.action, audit.user_name, audit.conversation_id) == ("reply", "opal", cid)
    finally:
        bot.close()


def test_an_alert_is_silenced_and_the_silence_ended_through_the_api(served_api: ServedApi) -> None:
    """The way to keep an alert whose condition still holds quiet: resolving it would fire it again,
    which `only_if_clear` refuses; a silence matches the alert's rule and labels, its bounds are in
    the error of a duration outside them, and ending it shows at once."""
    svc = AlertingService(
        served_api.store, served_api.settings.replace(alert_default_for_s=0.0, alert_min_samples=0)
    )
    fired = svc.check_and_send_alerts({"response_time": 88_000.0})
    assert fired, "the high response time rule fires"
    alert = svc.get_alert(fired[0]["id"])
    h = served_api.headers("operator")
    base = served_api.base

    r = requests.post(base + f"/alerts/resolve/{alert['id']}", json={"only_if_clear": True}, headers=h,
                      timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 409 and "fire again" in r.json()["detail"], r.text
    assert svc.get_alert(alert["id"])["state"] == "firing"

    def silences() -> int:
        return len(svc.list_silences())

    before = silences()
    for body, says in (({"reason": "deploy", "duration_minutes": -5}, "at most"),
                       ({"reason": "deploy", "duration_minutes": 99_999_999}, "at most"),
                       ({"reason": "", "duration_minutes": 30}, "reason"),
                       ({"duration_minutes": 30}, "reason"),
                       ({"reason": "deploy", "duration_minutes": 30, "extra": 1}, "extra")):  # fmt: skip
        r = requests.post(base + f"/alerts/silence/{alert['id']}", json=body, headers=h, timeout=TIMEOUT)
        assert r.status_code == 422 and says in str(r.json()["detail"]), (body, r.text)
        # where and what, as FastAPI's own 422s, under the request's own field names
        assert all(set(e) == {"loc", "msg", "type"} for e in r.json()["detail"]), r.text
        if says == "at most":
            assert r.json()["detail"][0]["loc"] == ["body", "duration_minutes"], r.text
    r = requests.post(base + "/alerts/silence/999999", json={"reason": "deploy", "duration_minutes": 30}, headers=h,
                      timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 404 and "999999" in r.json()["detail"]
    assert silences() == before, "a refused silence made none"

    r = requests.post(base + f"/alerts/silence/{alert['id']}", json={"reason": "deploy in progress",
                      "duration_minutes": 30}, headers=h, timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200, r.text
    made = r.json()
    assert (made["rule_name"], made["matchers"], made["created_by"], made["active"]) == (
        alert["rule_name"], alert["labels"], "opal", True)  # fmt: skip
    assert made["ends_at"].endswith("Z")
    active = requests.get(base + "/alerts/active", headers=h, timeout=TIMEOUT).json()["alerts"]
    [listed] = [a for a in active if a["id"] == alert["id"]]
    assert listed["silenced_by"]["id"] == made["id"] and listed["state"] == "firing"

    r = requests.post(base + f"/alerts/silences/expire/{made['id']}", headers=h, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    active = requests.get(base + "/alerts/active", headers=h, timeout=TIMEOUT).json()["alerts"]
    [listed] = [a for a in active if a["id"] == alert["id"]]
    assert listed["silenced_by"] is None
    r = requests.post(base + "/alerts/silences/expire/999999", headers=h, timeout=TIMEOUT)
    assert r.status_code == 404 and "no silence #999999" in r.json()["detail"]
    svc.resolve_alert(alert["id"], "opal")
    # a stale id: a silence made from a resolved alert would mute its rule's next alerts
    before = silences()
    r = requests.post(base + f"/alerts/silence/{alert['id']}", json={"reason": "late", "duration_minutes": 30},
                      headers=h, timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 409 and "is resolved" in r.json()["detail"], r.text
    assert silences() == before


def test_the_openapi_document_describes_an_alert_field_by_field(served_api: ServedApi) -> None:
    """A client generated from openapi.json knows every field an alert has (it said "object"), and
    what the service adds to an alert reaches the API (the model would drop a field it lacks)."""
    from observability.alerting.service import ALERT_FIELDS

    doc = requests.get(served_api.base + "/openapi.json", timeout=TIMEOUT).json()
    props = doc["components"]["schemas"]["Alert"]["properties"]
    assert set(props) == set(ALERT_FIELDS) | {"condition_holds", "silenced_by"}
    assert props["state"]["enum"] == ["pending", "firing", "acknowledged", "resolved"]
    active = requests.get(served_api.base + "/alerts/active", headers=served_api.headers("analyst"),
                          timeout=TIMEOUT).json()["alerts"]  # fmt: skip
    assert active and all(set(a) == set(props) for a in active)
    assert all(a["condition_holds"] in (True, False) for a in active)
    # a silence as the API gives it has every field the service's silence has
    from observability.alerting.silences import Silence

    silence = doc["components"]["schemas"]["SilenceOut"]["properties"]
    t = utcnow()
    assert set(silence) == set(Silence(0, None, {}, t, t, "", "", t).to_dict(t)), silence


def test_a_token_revoked_by_another_process_is_refused_within_api_token_cache_s(
    served_api: ServedApi,
) -> None:
    s = served_api.settings
    issued = api_tokens.create_token(served_api.store, None, "max", "revoked elsewhere", settings=s)
    whoami = served_api.base + "/auth/whoami"
    assert (
        requests.get(whoami, headers=served_api.headers(token=issued.token), timeout=TIMEOUT).status_code
        == 200
    )
    token_id = next(
        t["id"] for t in api_tokens.list_tokens(served_api.store, "max") if t["name"] == "revoked elsewhere"
    )
    api_tokens.revoke_token(
        served_api.store, None, token_id, settings=s
    )  # this test's process, not the console's

    def refused() -> bool:
        r = requests.get(whoami, headers=served_api.headers(token=issued.token), timeout=TIMEOUT)
        return r.status_code == 401 and "revoked" in r.json()["detail"]

    assert wait_for(refused, timeout=s.api_token_cache_s + 5, interval=0.2,
                    message="a revoked token was still accepted past API_TOKEN_CACHE_S")  # fmt: skip


def test_performance_answers_for_the_window_asked_or_refuses_it(served_api: ServedApi) -> None:
    """6h and 30d were answered with the last hour's figures labelled 1h, and the per-bot block of
    7d was the last hour: each window is its own, and one the endpoint cannot compute is a 422."""
    h = served_api.headers("analyst")
    for window, minutes in (("1h", 60), ("24h", 1440), ("7d", 10080)):
        r = requests.get(
            served_api.base + f"/monitoring/performance?window={window}", headers=h, timeout=TIMEOUT
        )
        assert r.status_code == 200, r.text
        assert r.json()["window"] == window and r.json()["bots"]["window_minutes"] == minutes
    for window in ("6h", "30d", "2h"):
        r = requests.get(
            served_api.base + f"/monitoring/performance?window={window}", headers=h, timeout=TIMEOUT
        )
        assert r.status_code == 422


def test_an_oversized_body_is_refused_and_a_validation_error_does_not_echo_the_input(
    served_api: ServedApi,
) -> None:
    """A 20 MB reason was read, parsed and sent back whole in the 422; an extra field's value came
    back in the error too. Now: 413 before the body is read whole; a 422 says where and what only."""
    cid = served_api.conversations[44]
    h = served_api.headers("operator")
    r = requests.post(served_api.base + f"/intervention/take-control/{cid}", json={"reason": "x" * 2_000_000},
                      headers=h, timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 413 and "larger than 1,000,000 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"reason": "'
        for _ in range(30):
            yield b"y" * 100_000
        yield b'"}'

    r = requests.post(served_api.base + f"/intervention/take-control/{cid}", data=chunks(),
                      headers={**h, "Content-Type": "application/json"}, timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 413
    r = requests.post(served_api.base + f"/intervention/take-control/{cid}",
                      json={"reason": "ok", "priority": "sekrit-abc"}, headers=h, timeout=TIMEOUT)  # fmt: skip
    assert (
        r.status_code == 422 and "sekrit-abc" not in r.text and r.json()["detail"][0]["loc"][-1] == "priority"
    )
    assert control.intervention_status(served_api.store, cid).state == "ai"  # nothing changed


def test_the_docs_page_runs_only_the_pinned_swagger_release_it_names(served_api: ServedApi) -> None:
    """/api/v1/docs loads Swagger UI from one pinned release with Subresource Integrity hashes (a
    changed file is not run), nothing from any other host, and a Content-Security-Policy that lets
    only those files and the page's own script (by its hash) run: the page is on the console's
    origin, where the operator's session cookie goes along with every request."""
    import base64
    import hashlib
    import re

    from observability.api import docs_page

    page = requests.get(served_api.base + "/docs", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert sorted(urls) == sorted(f"{docs_page.CDN}/{name}" for name in docs_page.FILES)
    assert docs_page.CDN.endswith("@" + docs_page.SWAGGER_UI_VERSION) and "@5/" not in text
    for name, digest in docs_page.FILES.items():
        assert re.search(rf'"{re.escape(docs_page.CDN)}/{re.escape(name)}" integrity="{re.escape(digest)}" '
                         r'crossorigin="anonymous"', text), name  # fmt: skip
    [inline] = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    assert '"/api/v1/openapi.json"' in inline  # the document it shows is this API's
    policy = page.headers["content-security-policy"]
    inline_hash = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src {docs_page.CDN}/ 'sha256-{inline_hash}';" in policy
    assert "default-src 'none'" in policy and "unsafe-eval" not in policy
    assert "tiangolo" not in text
    assert requests.get(served_api.base + "/openapi.json", timeout=10).json()["info"]["title"]
