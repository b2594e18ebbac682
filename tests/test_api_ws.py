"""Live push over WebSocket (/api/v1/ws): a client sees a take-over, an alert and a system-wide stop
as they happen; subscribe, get_metrics and ping; per-user and per-process connection limits; tokens
refused at the handshake and revoked while connected.

The served console (`support.api_fixtures`) pushes control changes through Redis pub/sub when
TEST_REDIS_URL is set; an in-process server without Redis shows the store-polling path.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests
import uvicorn
from support import TcpProxy, free_port, wait_for
from support.api_fixtures import ServedApi, seed
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from observability import control
from observability.alerting import AlertingService
from observability.api import create_app
from observability.auth import api_tokens
from observability.settings import Settings
from observability.store import Store

RECV_S = 10.0  # longest wait for one expected message (a bound, not a pause)


def open_ws(url: str, token: str | None, path: str = "/ws") -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(url + path, additional_headers=headers, open_timeout=10, close_timeout=2)


def next_of(ws: ClientConnection, kind: str, match=lambda m: True) -> dict:  # noqa: ANN001
    """The next message of `kind` that `match`es (others, like heartbeats, are skipped)."""
    while True:
        message = json.loads(ws.recv(timeout=RECV_S))
        if message.get("type") == kind and match(message):
            return message


def subscribe(ws: ClientConnection, *rooms: str) -> dict:
    ws.send(json.dumps({"type": "subscribe", "rooms": list(rooms)}))
    return next_of(ws, "subscribed")


def close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=RECV_S)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def test_a_subscriber_sees_a_take_over_and_its_release_as_they_happen(served_api: ServedApi) -> None:
    cid = served_api.conversations[30]
    with open_ws(served_api.ws_base, served_api.tokens["analyst"]) as ws:
        assert subscribe(ws, "interventions_monitoring", f"conversation:{cid}")["rooms"] == [
            f"conversation:{cid}", "interventions_monitoring"]  # fmt: skip
        r = requests.post(served_api.base + f"/intervention/take-control/{cid}", json={"reason": "safety"},
                          headers=served_api.headers("operator"), timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        update = next_of(ws, "intervention_update", lambda m: m["data"]["conversation_id"] == cid)
        assert update["data"]["action"] == "take_control" and update["data"]["user"] == "opal"
        assert f"conversation:{cid}" in update["rooms"]
        control.release_control(served_api.store, cid, "opal", "all good", settings=served_api.settings)
        update = next_of(ws, "intervention_update", lambda m: m["data"]["conversation_id"] == cid)
        assert update["data"]["action"] == "release_control"


def test_the_conversation_endpoint_follows_one_conversation_only(served_api: ServedApi) -> None:
    mine, other = served_api.conversations[31], served_api.conversations[32]
    with open_ws(served_api.ws_base, served_api.tokens["analyst"], f"/ws/conversation/{mine}") as ws:
        assert next_of(ws, "subscribed")["rooms"] == [f"conversation:{mine}"]
        control.stop_conversation(served_api.store, other, "opal", "not yours", settings=served_api.settings)
        control.stop_conversation(served_api.store, mine, "opal", "yours", settings=served_api.settings)
        update = next_of(ws, "intervention_update")
        assert update["data"]["conversation_id"] == mine and update["data"]["action"] == "stop"


def test_alerts_room_sees_an_alert_fire_and_its_acknowledgement(served_api: ServedApi) -> None:
    with open_ws(served_api.ws_base, served_api.tokens["operator"], "/ws/alerts") as ws:
        next_of(ws, "subscribed")
        svc = AlertingService(served_api.store, served_api.settings.replace(alert_default_for_s=0.0,
                                                                            alert_min_samples=0))  # fmt: skip
        fired = svc.check_and_send_alerts({"safety_score": 0.1})
        assert fired, "the low safety score rule fires"
        alert_id = fired[0]["id"]
        note = next_of(
            ws, "alert_notification", lambda m: (m["data"]["metadata"] or {}).get("alert_id") == alert_id
        )
        assert note["data"]["event_type"] == "alert.fired"
        r = requests.post(served_api.base + f"/alerts/acknowledge/{alert_id}", json={"note": "on it"},
                          headers=served_api.headers("operator"), timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.json()["alert"]["acknowledged_by"] == "opal"
        note = next_of(ws, "alert_notification", lambda m: m["data"]["event_type"] == "alert.acknowledged")
        assert note["data"]["metadata"]["alert_id"] == alert_id and note["data"]["user"] == "opal"


def test_emergency_room_sees_a_system_wide_stop(served_api: ServedApi) -> None:
    with open_ws(served_api.ws_base, served_api.tokens["manager"]) as ws:
        subscribe(ws, "emergency_monitoring")
        h = served_api.headers(token=served_api.tokens["admin2"])
        r = requests.post(served_api.base + "/emergency/system-wide-stop",
                          json={"reason": "incident drill", "confirmation": "STOP ALL"}, headers=h, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        try:
            update = next_of(ws, "intervention_update", lambda m: m["data"]["action"] == "system_stop")
            assert update["data"]["system_stopped"] is True and update["data"]["user"] == "adele"
        finally:
            requests.post(served_api.base + "/emergency/system-resume",
                          json={"reason": "drill over", "confirmation": "RESUME ALL"}, headers=h, timeout=30)  # fmt: skip
        update = next_of(ws, "intervention_update", lambda m: m["data"]["action"] == "system_resume")
        assert update["data"]["system_stopped"] is False


def test_get_metrics_ping_and_bad_messages(served_api: ServedApi) -> None:
    with open_ws(served_api.ws_base, served_api.tokens["analyst"]) as ws:
        ws.send(json.dumps({"type": "get_metrics"}))
        metrics = next_of(ws, "metrics_update")
        assert metrics["data"]["conversations_active"] >= 30 and "claude_cost_today" in metrics["data"]
        ws.send(json.dumps({"type": "ping"}))
        pong = next_of(ws, "pong")
        # every frame has the one wire shape the README gives, replies to this client included
        assert (
            set(pong) == {"type", "rooms", "data", "timestamp"} and pong["rooms"] == [] and pong["data"] == {}
        )
        ws.send(json.dumps({"type": "subscribe", "rooms": ["no_such_room"]}))
        error = next_of(ws, "error")
        assert (
            set(error) == {"type", "rooms", "data", "timestamp"}
            and "unknown rooms" in error["data"]["detail"]
        )
        ws.send("not json")
        assert next_of(ws, "error")["data"]["detail"]
        ws.send(json.dumps({"type": "launch"}))
        assert "type must be" in next_of(ws, "error")["data"]["detail"]
        subscribed = subscribe(ws, "monitoring_dashboard")  # METRICS_INTERVAL=1 in the served console
        assert set(subscribed) == {"type", "rooms", "data", "timestamp"}
        assert subscribed["rooms"] == ["monitoring_dashboard"]
        assert next_of(ws, "metrics_update")["rooms"] == ["monitoring_dashboard"]


@pytest.mark.parametrize("why", ["none", "garbage", "expired", "revoked", "disabled user"])
def test_the_handshake_refuses_unusable_tokens_with_4401(served_api: ServedApi, why: str) -> None:
    token = None if why == "none" else served_api.bad_tokens[why]
    with open_ws(served_api.ws_base, token) as ws:
        assert close_code(ws) == 4401


def test_a_token_in_the_query_string_works_for_browsers(served_api: ServedApi) -> None:
    with connect(f"{served_api.ws_base}/ws?token={served_api.tokens['analyst']}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert next_of(ws, "pong")


def test_a_revoked_token_is_disconnected(served_api: ServedApi) -> None:
    issued = api_tokens.create_token(served_api.store, None, "max", "to revoke", settings=served_api.settings)
    with open_ws(served_api.ws_base, issued.token) as ws:
        ws.send(json.dumps({"type": "ping"}))
        next_of(ws, "pong")
        token_id = next(
            t["id"] for t in api_tokens.list_tokens(served_api.store, "max") if t["name"] == "to revoke"
        )
        api_tokens.revoke_token(served_api.store, "max", token_id, settings=served_api.settings)
        assert close_code(ws) == 4401


def test_ten_connections_per_user_the_eleventh_is_refused(served_api: ServedApi) -> None:
    issued = api_tokens.create_token(served_api.store, None, "ana", "ten", settings=served_api.settings)
    opened = [open_ws(served_api.ws_base, issued.token) for _ in range(10)]
    try:
        for ws in opened:
            ws.send(json.dumps({"type": "ping"}))
            next_of(ws, "pong")
        with open_ws(served_api.ws_base, issued.token) as extra:
            assert close_code(extra) == 4429
        other = served_api.tokens["manager"]  # another user is not affected
        with open_ws(served_api.ws_base, other) as ws:
            ws.send(json.dumps({"type": "ping"}))
            assert next_of(ws, "pong")
        opened.pop().close()

        def admitted() -> bool:
            with open_ws(served_api.ws_base, issued.token) as again:
                again.send(json.dumps({"type": "ping"}))
                try:
                    return next_of(again, "pong")["type"] == "pong"
                except ConnectionClosed:
                    return False

        assert wait_for(admitted, timeout=10, message="a freed slot was not given back")
    finally:
        for ws in opened:
            ws.close()


# ---- without Redis: the hub polls the store ------------------------------------------------------


@contextmanager
def serve_in_process(app) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=20, message="uvicorn did not start")
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_without_redis_the_hub_polls_the_store_and_the_process_limit_holds(
    sqlite_url: str,
    sqlite_store: Store,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(sqlite_url, auth_mode="password", session_secret="in-process-" + "s" * 24,
                             websocket_poll_interval_s=0.1, websocket_max_connections=3)  # fmt: skip
    tokens, _, cids, _ = seed(sqlite_store, settings)
    app = create_app(settings, sqlite_store)
    with serve_in_process(app) as base:
        with open_ws(base, tokens["analyst"]) as ws:
            subscribe(ws, "interventions_monitoring")
            control.take_control(sqlite_store, cids[0], "opal", "polling", settings=settings)
            update = next_of(ws, "intervention_update")
            assert update["data"]["action"] == "take_control" and update["data"]["conversation_id"] == cids[0]
            assert update["data"]["user"] == "opal"
            with open_ws(base, tokens["operator"]) as b, open_ws(base, tokens["manager"]) as c:
                for w in (b, c):
                    w.send(json.dumps({"type": "ping"}))
                    next_of(w, "pong")
                with open_ws(base, tokens["admin"]) as full:
                    assert close_code(full) == 1013


def test_a_store_outage_keeps_connections_and_is_logged_once_per_kind(
    pg_url: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    truth = Store.from_url(pg_url)
    truth.migrate()
    proxy = TcpProxy.for_url(pg_url).start()
    via_proxy = proxy.url
    settings = make_settings(via_proxy, auth_mode="password", session_secret="outage-" + "s" * 24,
                             websocket_poll_interval_s=0.1, websocket_ping_interval_s=0.2,
                             api_token_cache_s=0.0)  # fmt: skip  # every re-check reads the store
    store = Store.from_url(via_proxy)
    tokens, _, _, _ = seed(truth, settings)
    app = create_app(settings, store)
    caplog.set_level(logging.INFO, logger="observability.api")
    try:
        with serve_in_process(app) as base, open_ws(base, tokens["analyst"]) as ws:
            subscribe(ws, "interventions_monitoring")
            next_of(ws, "heartbeat")  # the token re-check has passed once
            caplog.clear()
            proxy.stop()  # PostgreSQL unreachable: refused from now on, open connections cut
            hub = app.state.hub

            def failing() -> dict[str, int]:
                return hub.outages.failing()

            wait_for(lambda: failing().get("live poll", 0) >= 5 and failing().get("token check", 0) >= 3,
                     timeout=30, message=lambda: f"the outage was not seen: {failing()}")  # fmt: skip
            ws.send(json.dumps({"type": "ping"}))
            assert next_of(ws, "pong"), "the connection stays open while the store is down"
            down = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert sum("live poll" in m for m in down) == 1, down
            assert sum("token check skipped" in m for m in down) == 1, down
            assert not any(r.exc_info for r in caplog.records), "an outage is no bug: no tracebacks"
            proxy.start()
            wait_for(lambda: not failing(), timeout=30, message=lambda: f"still failing: {failing()}")
            recovered = [r.getMessage() for r in caplog.records if "recovered after" in r.getMessage()]
            assert any(m.startswith("live poll") for m in recovered), recovered
    finally:
        proxy.stop()
        store.dispose()
        truth.dispose()
