"""Live push over WebSocket: `/api/v1/ws` (rooms chosen with `subscribe`), `/api/v1/ws/conversation/{id}`
and `/api/v1/ws/alerts`, with the rooms and message types of source document 004.

Client → server: `{"type": "subscribe", "rooms": [...]}`, `{"type": "unsubscribe", "rooms": [...]}`,
`{"type": "get_metrics"}`, `{"type": "ping"}`. Server → client: `metrics_update`, `alert_notification`,
`intervention_update`, `activity_update`, and `subscribed`, `pong`, `heartbeat`, `error`.

One hub per console process fans messages out to its connections: the message is encoded once and
put on each member's outbox, whose own task writes it, so a slow client delays nobody else (one
that falls OUTBOX_LIMIT messages behind is closed, 1008). Its sources: Redis pub/sub on
`keys.live_channel` when Redis is configured (take-over, release, stops: published by the control
services right after their commit, so they arrive in milliseconds); and a poll of the store's activity
feed, which every alert change and control action writes in its own transaction (alerts, and without
Redis also the control changes; the activity_feed room always). `metrics_update` goes to the
`monitoring_dashboard` room every METRICS_INTERVAL seconds while it has members.

Authentication: an API token, as `Authorization: Bearer` or `?token=` (browsers cannot set headers on
a WebSocket); re-checked every WEBSOCKET_PING_INTERVAL against the tokens verified within
API_TOKEN_CACHE_S, so a revoked token is disconnected within the two (a revocation made in this
process: at the next check). While the store is down the check is skipped (logged once a minute). Limits:
WEBSOCKET_USER_CONNECTIONS (10) per user and WEBSOCKET_MAX_CONNECTIONS per process; a client silent
for WEBSOCKET_TIMEOUT seconds is disconnected. Close codes: 4401 token refused, 4403 not allowed,
4429 too many connections of this user, 1013 the process is full, 4408 idle timeout, 1008 too slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from observability import keys
from observability.analytics import activity
from observability.api.context import ApiContext
from observability.api.deps import verified_principal
from observability.auth.api_tokens import Principal, TokenInvalid
from observability.outages import OutageLog
from observability.store import live
from observability.timeutil import as_aware, utcnow

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

ROOMS = ("monitoring_dashboard", "activity_feed", "alerts_monitoring", "interventions_monitoring",
         "emergency_monitoring", "alerts")  # fmt: skip
CONVERSATION_PREFIX = "conversation:"
POLL_LOOKBACK_S = 10.0  # an event may commit a little after a later-stamped one
OUTBOX_LIMIT = 256  # messages waiting for one client before it is closed as too slow


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def valid_room(room: Any) -> bool:
    if not isinstance(room, str):
        return False
    if room.startswith(CONVERSATION_PREFIX):
        return 0 < len(room) - len(CONVERSATION_PREFIX) <= 100
    return room in ROOMS


class Connection:
    """One client: its rooms, and its outbox, written by its own task (`write_loop`) in order."""

    def __init__(self, ws: WebSocket, principal: Principal, token: str) -> None:
        self.ws = ws
        self.principal = principal
        self.token = token
        self.rooms: set[str] = set()
        self.last_heard = time.monotonic()
        self.outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_LIMIT)
        self.too_slow = False

    def push(self, text: str) -> bool:
        """Queue `text` for the client; False (and the connection is closed) when it is too far behind."""
        if self.too_slow:
            return False
        try:
            self.outbox.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.too_slow = True
            return False

    async def write_loop(self) -> None:
        try:
            while not self.too_slow:
                text = await self.outbox.get()
                await self.ws.send_text(text)
            await self.ws.close(code=1008, reason=f"too slow: {OUTBOX_LIMIT} messages waiting")
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client is gone: `serve` sees it too and ends the connection


class Hub:
    """A process's WebSocket connections, their rooms, and the tasks that feed them."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.connections: set[Connection] = set()
        self.rooms: dict[str, set[Connection]] = {}
        self.per_user: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._seen: dict[str, float] = {}  # activity event id -> when seen (store poll)
        self._since = utcnow()
        self.outages = OutageLog(log)  # store or Redis down: one line a minute per kind

    # ---- membership ----
    def admit(self, conn: Connection) -> tuple[int, str] | None:
        """None when the connection may stay, else (close code, reason)."""
        s = self.ctx.settings
        user = conn.principal.user
        if self.per_user.get(user, 0) >= s.websocket_user_connections:
            return 4429, f"at most {s.websocket_user_connections} connections per user"
        if len(self.connections) >= s.websocket_max_connections:
            return 1013, f"this console serves at most {s.websocket_max_connections} connections"
        self.connections.add(conn)
        self.per_user[user] = self.per_user.get(user, 0) + 1
        self._start()
        return None

    def leave(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        user = conn.principal.user
        self.per_user[user] = self.per_user.get(user, 1) - 1
        if self.per_user[user] <= 0:
            del self.per_user[user]
        for room in conn.rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.discard(conn)
                if not members:
                    del self.rooms[room]
        conn.rooms.clear()

    def subscribe(self, conn: Connection, rooms: list[str]) -> None:
        for room in rooms:
            conn.rooms.add(room)
            self.rooms.setdefault(room, set()).add(conn)

    def unsubscribe(self, conn: Connection, rooms: list[str]) -> None:
        for room in rooms:
            conn.rooms.discard(room)
            members = self.rooms.get(room)
            if members is not None:
                members.discard(conn)
                if not members:
                    del self.rooms[room]

    # ---- delivery ----
    def broadcast(self, message: dict[str, Any]) -> int:
        """Queue the message for every connection in any of its rooms (encoded once, sent by each
        connection's writer); returns how many it was queued for. Never waits for a client."""
        targets: set[Connection] = set()
        for room in message.get("rooms") or ():
            targets |= self.rooms.get(room, set())
        if not targets:
            return 0
        text = json.dumps(message, default=str)
        return sum(1 for c in targets if c.push(text))

    # ---- sources ----
    def _start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._poll_store()))
        self._tasks.append(asyncio.create_task(self._metrics()))
        if self.ctx.settings.redis_url:
            self._tasks.append(asyncio.create_task(self._redis_listener()))

    async def _redis_listener(self) -> None:
        import redis.asyncio as aioredis

        channel = keys.live_channel(self.ctx.settings.redis_prefix)
        backoff = 0.5
        while True:
            client = aioredis.Redis.from_url(self.ctx.settings.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    backoff = 0.5
                    self.outages.recovered("live channel")
                    async for item in pubsub.listen():
                        if item.get("type") != "message":
                            continue
                        try:
                            message = json.loads(item["data"])
                        except ValueError:
                            continue
                        self.broadcast(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: retry; the store poll still runs
                self.outages.failure("live channel", "live channel: Redis failed; retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _messages_for(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        ts = as_aware(event["ts"]).isoformat()
        data = {"id": event["id"], "event_type": event["event_type"], "title": event["title"],
                "description": event["description"], "severity": event["severity"],
                "category": event["category"], "account_id": event["account_id"],
                "conversation_id": event["conversation_id"], "user": event["user_id"],
                "metadata": event["metadata"], "created_at": ts}  # fmt: skip
        out = [live.message(live.ACTIVITY_UPDATE, ["activity_feed"], data, ts)]
        kind = str(event["event_type"])
        if kind.startswith("alert."):
            out.append(live.message(live.ALERT_NOTIFICATION, ["alerts_monitoring", "alerts"], data, ts))
        elif kind.startswith(("intervention.", "emergency.")) and not self.ctx.settings.redis_url:
            action = kind.split(".", 1)[1]
            change = {"action": action, "conversation_id": event["conversation_id"], "user": event["user_id"],
                      "reason": event["description"], "metadata": event["metadata"]}  # fmt: skip
            if action in ("system_stop", "system_resume"):
                change["system_stopped"] = action == "system_stop"
            out.append(live.control_message(change, ts))
        return out

    async def _poll_store(self) -> None:
        interval = max(0.05, self.ctx.settings.websocket_poll_interval_s)
        while True:
            await asyncio.sleep(interval)
            if not self.connections:  # nobody to tell: what happens meanwhile is not news to the
                self._since = max(self._since, utcnow())  # next client (it got events minutes old)
                continue
            try:  # new events from the cursor on, and late commits in the look-back window before it
                fresh = await run_in_threadpool(activity.events_since, self.ctx.store, self._since)
                late = await run_in_threadpool(activity.events_since, self.ctx.store,
                                               self._since - timedelta(seconds=POLL_LOOKBACK_S), until=self._since)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - store down: try again next round
                self.outages.failure("live poll", "live poll: the store failed; trying every round", exc)
                continue
            self.outages.recovered("live poll")
            mono = time.monotonic()
            for event in sorted(late + fresh, key=lambda e: (e["ts"], e["id"])):
                if event["id"] in self._seen:
                    continue
                self._seen[event["id"]] = mono
                self._since = max(self._since, event["ts"])
                for message in self._messages_for(event):
                    self.broadcast(message)
            if len(self._seen) > 2000:
                cutoff = mono - 4 * POLL_LOOKBACK_S
                self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}

    async def metrics_message(self) -> dict[str, Any]:
        data = await self.ctx.metrics.get()
        return live.message(live.METRICS_UPDATE, ["monitoring_dashboard"], data, _now_iso())

    async def _metrics(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.ctx.settings.metrics_interval_s))
            if not self.rooms.get("monitoring_dashboard"):
                continue
            try:
                self.broadcast(await self.metrics_message())
            except Exception as exc:  # noqa: BLE001 - store down: next interval
                self.outages.failure("metrics", "metrics_update skipped", exc)
            else:
                self.outages.recovered("metrics")


def hub_for(ctx: ApiContext, app: Any) -> Hub:
    hub = getattr(app.state, "hub", None)
    if hub is None:
        hub = app.state.hub = Hub(ctx)
    return hub


def _token(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return ws.query_params.get("token")


def _send(conn: Connection, kind: str, rooms: Sequence[str] = (), **data: Any) -> None:
    """A reply to this connection alone, in the one wire shape (`live.message`): `rooms` are the
    rooms it concerns (a `subscribed`'s: the connection's rooms now), `data` the rest (an
    `error`'s `detail`)."""
    conn.push(json.dumps(live.message(kind, rooms, data, _now_iso()), default=str))


async def serve(ws: WebSocket, initial_rooms: list[str]) -> None:
    """One client's connection, from the handshake to its end."""
    ctx: ApiContext = ws.app.state.ctx
    await ws.accept()
    token = _token(ws)
    try:
        principal = await verified_principal(ctx, token)
    except TokenInvalid as exc:
        await ws.close(code=4401, reason=str(exc)[:120])
        return
    if not principal.may("dashboards.view"):
        await ws.close(code=4403, reason="dashboards.view: not allowed for this token")
        return
    hub = hub_for(ctx, ws.app)
    conn = Connection(ws, principal, token or "")
    refused = hub.admit(conn)
    if refused is not None:
        await ws.close(code=refused[0], reason=refused[1])
        return
    writer = asyncio.create_task(conn.write_loop())
    keeper = asyncio.create_task(_keep_alive(hub, conn))
    try:
        if initial_rooms:
            hub.subscribe(conn, initial_rooms)
            _send(conn, "subscribed", rooms=sorted(conn.rooms))
        while True:
            raw = await ws.receive_text()
            conn.last_heard = time.monotonic()
            await _handle(hub, conn, raw)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        keeper.cancel()
        writer.cancel()
        hub.leave(conn)


async def _handle(hub: Hub, conn: Connection, raw: str) -> None:
    try:
        msg = json.loads(raw)
    except ValueError:
        _send(conn, "error", detail="messages are JSON objects with a 'type'")
        return
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind in ("subscribe", "unsubscribe"):
        rooms = msg.get("rooms")
        if not isinstance(rooms, list) or not rooms or len(rooms) > 50:
            _send(conn, "error", detail="'rooms' is a list of 1 to 50 room names")
            return
        bad = [r for r in rooms if not valid_room(r)]
        if bad:
            _send(
                conn, "error", detail=f"unknown rooms {bad!r}; rooms: {', '.join(ROOMS)}, conversation:<id>"
            )
            return
        (hub.subscribe if kind == "subscribe" else hub.unsubscribe)(conn, rooms)
        _send(conn, "subscribed", rooms=sorted(conn.rooms))
    elif kind == "get_metrics":
        conn.push(json.dumps(await hub.metrics_message(), default=str))
    elif kind == "ping":
        _send(conn, "pong")
    else:
        _send(conn, "error", detail="type must be subscribe, unsubscribe, get_metrics or ping")


async def _keep_alive(hub: Hub, conn: Connection) -> None:
    """Heartbeat every WEBSOCKET_PING_INTERVAL; re-check the token; close idle clients."""
    s = hub.ctx.settings
    interval = max(0.1, min(s.websocket_ping_interval_s, s.websocket_timeout_s))
    while True:
        await asyncio.sleep(interval)
        if time.monotonic() - conn.last_heard > s.websocket_timeout_s:
            await conn.ws.close(code=4408, reason=f"no message for {s.websocket_timeout_s:g} s")
            return
        try:
            await verified_principal(hub.ctx, conn.token)
        except TokenInvalid as exc:
            await conn.ws.close(code=4401, reason=str(exc)[:120])
            return
        except Exception as exc:  # noqa: BLE001 - store down: keep the connection, check next time
            hub.outages.failure(
                "token check", "WebSocket token check skipped (the store failed); connections stay open", exc
            )
        else:
            hub.outages.recovered("token check")
        _send(conn, "heartbeat")


@router.websocket("/ws")
async def ws_monitoring(websocket: WebSocket) -> None:
    await serve(websocket, [])


@router.websocket("/ws/conversation/{conversation_id}")
async def ws_conversation(websocket: WebSocket, conversation_id: str) -> None:
    room = CONVERSATION_PREFIX + conversation_id
    if not valid_room(room):
        await websocket.close(code=4400)
        return
    await serve(websocket, [room])


@router.websocket("/ws/alerts")
async def ws_alerts(websocket: WebSocket) -> None:
    await serve(websocket, ["alerts"])
