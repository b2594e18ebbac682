"""Real local peers for the alerting tests and a harness with a scripted clock (the fixtures that
build them are in `support/alerting_fixtures.py`, registered from `tests/conftest.py`).

- an SMTP server (aiosmtpd) speaking STARTTLS or implicit TLS with a throw-away certificate;
- one HTTP server on 127.0.0.1 standing in for Slack, the generic webhook, PagerDuty's Events API
  v2 and Opsgenie's Alerts API. Each route checks the payload against the documented schema and
  answers like the real service (Slack "ok", PagerDuty and Opsgenie 202); a test can script
  answers per route (500 then 200, 429 with Retry-After, 400).

Every accepted notification is recorded as a `Received` (channel, kind, rule, alert id, level)
stamped with the scripted time the test was at (`peers.clock`), so tests assert in the manner of
Alertmanager's acceptance tests: these notifications, within these windows, and nothing else.
"""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from support.net import free_port

if TYPE_CHECKING:  # the service is imported when a harness is built, not when pytest loads the plugin
    from observability.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, 0)
PD_KEY = "R0UTINGKEY0123456789abcdefABCDEF"
OG_KEY = "og-key-1234"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"super-secret-signing-key-32bytes").decode()
SMTP_USER, SMTP_PASSWORD = "alerts", "smtp-password"
PASSWORD = "password-123"
_TITLE = re.compile(r"^\[(?P<tag>[A-Z]+)\] (?P<rule>[\w.\-]+)")
_LEVEL = re.compile(r"escalation level (\d)")


@dataclass
class Received:
    channel: str
    kind: str  # trigger | ack | resolve | test
    rule: str | None
    alert_id: int | None
    level: int | None
    t: float | None  # scripted seconds since T0 when it arrived
    body: Any = None
    headers: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.channel, self.kind, self.rule, self.level)


def _from_title(text: str) -> tuple[str, str | None, int | None]:
    m = _TITLE.match(text or "")
    if not m:
        return "unknown", None, None
    tag = m.group("tag")
    kind = {"RESOLVED": "resolve", "ACKNOWLEDGED": "ack", "TEST": "test"}.get(tag, "trigger")
    lvl = _LEVEL.search(text)
    level = int(lvl.group(1)) if lvl else (1 if kind == "trigger" else 0)
    return kind, (None if kind == "test" else m.group("rule")), level


def _alert_id(text: str) -> int | None:
    m = re.search(r"#(\d+)", text or "")
    return int(m.group(1)) if m else None


def _alias_id(value: str) -> int | None:
    m = re.match(r"obs-alert-(\d+)-", value or "")
    return int(m.group(1)) if m else None


def verify_signature(secret: str, headers: dict, body: bytes) -> bool:
    key = base64.b64decode(secret[len("whsec_") :]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(f"v1,{expected}", sig) for sig in headers["webhook-signature"].split())


class Peers:
    """The HTTP and SMTP stand-ins plus what they received."""

    def __init__(self, cert: tuple[Path, Path]) -> None:
        self.clock: float | None = None
        self.received: list[Received] = []
        self.attempts: Counter = Counter()  # requests per route, accepted or not
        self.webhook_ids: list[str | None] = []  # webhook-id header of every webhook request
        self.errors: list[str] = []  # schema violations seen by a peer
        self.script: dict[str, list[tuple[int, dict, str]]] = {}
        self.hold = threading.Event()  # set(): routes in `holding` wait until released
        self.holding: set[str] = set()
        self.webhook_secret: str | None = WEBHOOK_SECRET
        self.lock = threading.Lock()
        self.cert, self.key = cert
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.http.daemon_threads = True
        self.http_thread = threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True)
        self.http_thread.start()
        self.smtp: Controller | None = None
        self.smtp_port: int | None = None
        self.smtp_mode: str | None = None

    # ---- set-up ---------------------------------------------------------------------------------
    def start_smtp(self, mode: str = "starttls") -> int:
        """aiosmtpd on a free port: `starttls` (STARTTLS required, then AUTH) or `tls` (implicit)."""
        self.stop_smtp()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        port = free_port()
        handler = _SmtpHandler(self)

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
            return AuthResult(success=ok)

        if mode == "tls":
            self.smtp = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=ctx,
                                   authenticator=authenticator, auth_require_tls=False)  # fmt: skip
        else:
            self.smtp = Controller(handler, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                                   authenticator=authenticator, auth_require_tls=True)  # fmt: skip
        self.smtp.start()
        self.smtp_port, self.smtp_mode = port, mode
        return port

    def stop_smtp(self) -> None:
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None

    def close(self) -> None:
        self.hold.set()
        self.stop_smtp()
        self.http.shutdown()
        self.http.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def settings(self, base: Settings, **overrides: Any) -> Settings:
        """Settings with every channel pointed at these peers."""
        values = dict(
            alert_email_enabled=True, alert_email_smtp_host="127.0.0.1",
            alert_email_smtp_port=self.smtp_port or self.start_smtp(), alert_email_security=self.smtp_mode or "starttls",
            alert_email_ca_file=self.cert, alert_email_smtp_user=SMTP_USER, alert_email_smtp_password=SMTP_PASSWORD,
            alert_email_from="alerts@example.test", alert_email_to="oncall@example.test, lead@example.test",
            alert_slack_enabled=True, alert_slack_webhook_url=f"{self.base}/slack", alert_slack_channel="#ops-alerts",
            alert_webhook_enabled=True, alert_webhook_url=f"{self.base}/webhook",
            alert_webhook_headers={"X-Team": "bots", "Authorization": "Bearer hook-token"},
            alert_webhook_secret=self.webhook_secret,
            alert_webhook_pagerduty_url=f"{self.base}/pagerduty/v2/enqueue", alert_webhook_pagerduty_api_key=PD_KEY,
            alert_webhook_opsgenie_url=f"{self.base}/opsgenie/v2/alerts", alert_webhook_opsgenie_api_key=OG_KEY,
            alert_delivery_backoff_s=10.0, alert_http_timeout_s=5.0,
        )  # fmt: skip
        values.update(overrides)
        return base.replace(**values)

    def answer(self, route: str, *responses: tuple[int, dict, str]) -> None:
        """Script the next answers of a route ("slack", "webhook", "pagerduty", "opsgenie")."""
        with self.lock:
            self.script.setdefault(route, []).extend(responses)

    # ---- what arrived -----------------------------------------------------------------------------
    def record(self, item: Received) -> None:
        with self.lock:
            item.t = self.clock
            self.received.append(item)

    def of(self, channel: str | None = None, kind: str | None = None) -> list[Received]:
        return [
            r
            for r in self.received
            if (channel is None or r.channel == channel) and (kind is None or r.kind == kind)
        ]

    def keys(self) -> Counter:
        return Counter(r.key for r in self.received)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.attempts.clear()

    def expect(self, expected: list[tuple], *, exact: bool = True) -> None:
        """Alertmanager-style check: each expected (channel, kind, rule, level, t_from, t_to) is
        matched by one notification received in [t_from, t_to]; with `exact`, nothing else came."""
        assert not self.errors, f"peers saw malformed payloads: {self.errors}"
        left = list(self.received)
        missing = []
        for channel, kind, rule, level, t_from, t_to in expected:
            hit = next((r for r in left if r.key == (channel, kind, rule, level) and r.t is not None
                        and t_from <= r.t <= t_to), None)  # fmt: skip
            if hit is None:
                missing.append((channel, kind, rule, level, t_from, t_to))
            else:
                left.remove(hit)
        got = sorted((r.channel, r.kind, r.rule, r.level, r.t) for r in self.received)
        assert not missing, f"missing notifications {missing}; received {got}"
        if exact:
            assert not left, f"unexpected notifications {[(r.key, r.t) for r in left]}; received {got}"

    # ---- HTTP -------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        peers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                url = urlparse(self.path)
                route = url.path.strip("/").split("/")[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                with peers.lock:
                    peers.attempts[route] += 1
                    if route == "webhook":
                        peers.webhook_ids.append(headers.get("webhook-id"))
                if route in peers.holding:
                    peers.hold.wait(30)
                with peers.lock:
                    scripted = peers.script.get(route)
                    forced = scripted.pop(0) if scripted else None
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                handler = getattr(peers, f"_on_{route}", None)
                if handler is None:
                    return self._reply(404, {}, "no such route")
                status, hdrs, text, item = handler(url, headers, raw, body)
                if forced is not None:
                    status, hdrs, text = forced
                elif item is not None:
                    peers.record(item)
                self._reply(status, hdrs, text)

            def _reply(self, status: int, headers: dict, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _bad(self, route: str, why: str) -> tuple[int, dict, str, None]:
        self.errors.append(f"{route}: {why}")
        return 400, {}, json.dumps({"status": "invalid event", "errors": [why]}), None

    def _on_slack(self, url: Any, headers: dict, raw: bytes, body: Any) -> tuple:
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            return self._bad("slack", "text missing")
        blocks = body.get("blocks")
        if (
            not isinstance(blocks, list)
            or not blocks
            or not all(isinstance(b, dict) and b.get("type") for b in blocks)
        ):
            return self._bad("slack", "blocks missing or malformed")
        if blocks[0]["type"] != "header" or len(blocks[0]["text"]["text"]) > 150:
            return self._bad("slack", "first block must be a header of at most 150 characters")
        for b in blocks:
            if b["type"] == "section" and "fields" in b and len(b["fields"]) > 10:
                return self._bad("slack", "a section has more than 10 fields")
        kind, rule, level = _from_title(blocks[0]["text"]["text"])
        return 200, {"Content-Type": "text/plain"}, "ok", Received("slack", kind, rule, _alert_id(json.dumps(blocks)),
                                                                   level, None, body, headers)  # fmt: skip

    def _on_webhook(self, url: Any, headers: dict, raw: bytes, body: Any) -> tuple:
        if headers.get("x-team") != "bots" or headers.get("authorization") != "Bearer hook-token":
            return self._bad("webhook", "ALERT_WEBHOOK_HEADERS not sent")
        if self.webhook_secret:
            if not all(h in headers for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
                return self._bad("webhook", "signature headers missing")
            if abs(int(headers["webhook-timestamp"]) - time.time()) > 300:
                return self._bad("webhook", "webhook-timestamp too far from now")
            if not verify_signature(self.webhook_secret, headers, raw):
                return 401, {}, "bad signature", None
        if not isinstance(body, dict):
            return self._bad("webhook", "body is not a JSON object")
        for k in (
            "version",
            "status",
            "receiver",
            "groupKey",
            "alerts",
            "commonLabels",
            "notificationId",
            "kind",
        ):
            if k not in body:
                return self._bad("webhook", f"{k} missing")
        alert = body["alerts"][0]
        for k in ("status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"):
            if k not in alert:
                return self._bad("webhook", f"alerts[0].{k} missing")
        if body["status"] not in ("firing", "resolved") or "alertname" not in alert["labels"]:
            return self._bad("webhook", "bad status or alertname")
        if self.webhook_secret and headers["webhook-id"] != body["notificationId"]:
            return self._bad("webhook", "webhook-id differs from notificationId")
        kind = body["kind"]
        rule = None if kind == "test" else alert["labels"]["alertname"]
        return 200, {}, "", Received("webhook", kind, rule, alert.get("alertId"), body["escalationLevel"], None, body,
                                     headers)  # fmt: skip

    def _on_pagerduty(self, url: Any, headers: dict, raw: bytes, body: Any) -> tuple:
        if not isinstance(body, dict) or body.get("routing_key") != PD_KEY:
            return self._bad("pagerduty", "routing_key missing or wrong")
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve") or not body.get("dedup_key"):
            return self._bad("pagerduty", "event_action or dedup_key missing")
        level = 0
        rule = None
        if action == "trigger":
            p = body.get("payload") or {}
            if not p.get("summary") or not p.get("source") or p.get("severity") not in ("critical", "error",
                                                                                          "warning", "info"):  # fmt: skip
                return self._bad("pagerduty", "payload.summary/source/severity missing or invalid")
            if len(p["summary"]) > 1024:
                return self._bad("pagerduty", "summary longer than 1024")
            rule = p.get("class")
            level = (p.get("custom_details") or {}).get("level", 3)
        kind = {"trigger": "trigger", "acknowledge": "ack", "resolve": "resolve"}[action]
        if body["dedup_key"].startswith("obs-test-"):
            kind, rule, level = "test" if action == "trigger" else "test_" + kind, None, 0
        item = Received("pagerduty", kind, rule, _alias_id(body["dedup_key"]), level, None, body, headers)
        reply = json.dumps(
            {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}
        )
        return 202, {"Content-Type": "application/json"}, reply, item

    def _on_opsgenie(self, url: Any, headers: dict, raw: bytes, body: Any) -> tuple:
        if headers.get("authorization") != f"GenieKey {OG_KEY}":
            return 422, {}, json.dumps({"message": "Key format is not valid!"}), None
        parts = url.path.strip("/").split("/")  # opsgenie v2 alerts [alias action]
        reply = json.dumps({"result": "Request will be processed", "took": 0.01, "requestId": "r-1"})
        if parts[1:] == ["v2", "alerts"]:
            if not isinstance(body, dict) or not body.get("message") or not body.get("alias"):
                return self._bad("opsgenie", "message and alias are required")
            if len(body["message"]) > 130 or body.get("priority") not in ("P1", "P2", "P3", "P4", "P5"):
                return self._bad("opsgenie", "message too long or bad priority")
            test = body["alias"].startswith("obs-test-")
            level = int((body.get("details") or {}).get("level", 3))
            rule = None if test else body["tags"][0]
            item = Received("opsgenie", "test" if test else "trigger", rule, _alias_id(body["alias"]),
                            0 if test else level, None, body, headers)  # fmt: skip
            return 202, {"Content-Type": "application/json"}, reply, item
        if len(parts) == 5 and parts[4] in ("acknowledge", "close"):
            if parse_qs(url.query).get("identifierType") != ["alias"]:
                return self._bad("opsgenie", "identifierType=alias missing")
            alias = unquote(parts[3])
            if alias.startswith("obs-test-"):
                return 202, {}, reply, Received("opsgenie", "test_close", None, None, 0, None, body, headers)
            kind = "ack" if parts[4] == "acknowledge" else "resolve"
            return 202, {}, reply, Received("opsgenie", kind, None, _alias_id(alias), 0, None, body, headers)
        return 404, {}, json.dumps({"message": "no such endpoint"}), None


class _SmtpHandler:
    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        for h in ("Subject", "From", "To", "Message-ID", "Date"):
            if not msg[h]:
                self.peers.errors.append(f"email: header {h} missing")
        if sorted(envelope.rcpt_tos) != ["lead@example.test", "oncall@example.test"]:
            self.peers.errors.append(f"email: recipients {envelope.rcpt_tos}")
        if not session.authenticated:
            self.peers.errors.append("email: not authenticated")
        text = msg.get_content()
        kind, rule, level = _from_title(str(msg["Subject"]))
        if kind != msg["X-Alert-Kind"]:
            self.peers.errors.append(f"email: subject says {kind}, X-Alert-Kind {msg['X-Alert-Kind']}")
        self.peers.record(Received("email", kind, rule, _alert_id(text), level, None, msg, dict(msg.items())))
        return "250 Message accepted for delivery"


class Harness:
    """A service, its peers and a scripted clock: `at(t, stats)` runs one worker-like tick."""

    def __init__(self, store: Any, settings: Settings, peers: Peers, users: dict) -> None:
        from observability.alerting import AlertingService

        self.store, self.settings, self.peers, self.users = store, settings, peers, users
        self.svc = AlertingService(store, settings)
        self.svc.ensure_seeded()

    def reconfigure(self, **overrides: Any) -> None:
        """Same store and peers, settings changed (e.g. escalation delays shortened)."""
        from observability.alerting import AlertingService

        self.settings = self.settings.replace(**overrides)
        self.svc = AlertingService(self.store, self.settings)

    def env(self) -> dict[str, str]:
        """The same configuration as environment variables (for a worker in another process)."""
        s = self.settings
        return {
            "DATABASE_URL": s.database_url, "AUTH_MODE": s.auth_mode, "WORKER_LOCK_FILE": str(s.worker_lock_file),
            "ALERT_EMAIL_ENABLED": "true", "ALERT_EMAIL_SMTP_HOST": s.alert_email_smtp_host,
            "ALERT_EMAIL_SMTP_PORT": str(s.alert_email_smtp_port), "ALERT_EMAIL_SECURITY": s.alert_email_security,
            "ALERT_EMAIL_CA_FILE": str(s.alert_email_ca_file), "ALERT_EMAIL_SMTP_USER": s.alert_email_smtp_user,
            "ALERT_EMAIL_SMTP_PASSWORD": s.alert_email_smtp_password, "ALERT_EMAIL_FROM": s.alert_email_from,
            "ALERT_EMAIL_TO": s.alert_email_to, "ALERT_SLACK_ENABLED": "true",
            "ALERT_SLACK_WEBHOOK_URL": s.alert_slack_webhook_url, "ALERT_SLACK_CHANNEL": s.alert_slack_channel,
            "ALERT_WEBHOOK_ENABLED": "true", "ALERT_WEBHOOK_URL": s.alert_webhook_url,
            "ALERT_WEBHOOK_HEADERS": json.dumps(s.alert_webhook_headers), "ALERT_WEBHOOK_SECRET": s.alert_webhook_secret,
            "ALERT_WEBHOOK_PAGERDUTY_URL": s.alert_webhook_pagerduty_url,
            "ALERT_WEBHOOK_PAGERDUTY_API_KEY": s.alert_webhook_pagerduty_api_key,
            "ALERT_WEBHOOK_OPSGENIE_URL": s.alert_webhook_opsgenie_url,
            "ALERT_WEBHOOK_OPSGENIE_API_KEY": s.alert_webhook_opsgenie_api_key,
            "ALERT_ESCALATION_L2_DELAY_S": str(s.alert_escalation_l2_delay_s),
            "ALERT_ESCALATION_L3_DELAY_S": str(s.alert_escalation_l3_delay_s),
            "ALERT_KEEP_FIRING_FOR_S": str(s.alert_keep_firing_for_s),
            "ALERT_DEFAULT_FOR_S": str(s.alert_default_for_s), "ALERT_MIN_SAMPLES": str(s.alert_min_samples),
            "ALERT_METRIC_WINDOW_S": str(s.alert_metric_window_s),
            "ALERT_DELIVERY_BACKOFF_S": str(s.alert_delivery_backoff_s),
        }  # fmt: skip

    def now(self, t: float) -> datetime:
        return T0 + timedelta(seconds=t)

    def at(self, t: float, stats: dict | None = None) -> list[dict]:
        now = self.now(t)
        self.peers.clock = t  # check_and_send_alerts delivers what it queues at once
        fired = self.svc.check_and_send_alerts(stats, now=now) if stats is not None else []
        self.tick(t)
        return fired

    def tick(self, t: float) -> None:
        """Escalations and deliveries at scripted time t (what the worker's later steps do)."""
        now = self.now(t)
        self.svc.process_escalations(now)
        self.peers.clock = t
        self.svc.deliver_pending(now)

    def run(self, script: Any, until: float, step: float = 15.0, start: float = 0.0) -> None:
        """Drive `script(t) -> stats` every `step` seconds from `start` to `until` inclusive."""
        t = start
        while t <= until + 1e-9:
            self.at(t, script(t))
            t += step

    def only_rules(self, *names: str) -> None:
        """Disable every other rule (keeps a scenario's expected notifications small)."""
        admin = self.users["admin"]
        for rule in self.svc.list_rules():
            if rule.name not in names and rule.enabled:
                self.svc.disable_rule(rule.name, admin, now=T0 - timedelta(hours=1))

    def update(self, name: str, **changes: Any) -> None:
        self.svc.update_rule(name, changes, self.users["admin"], now=T0 - timedelta(hours=1))
