"""Issue 14, clean data paths: secrets never stored, shown or logged; channels that cannot leak;
personal data masked at the ingest boundary; data rendered as text; private files; permissions."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.alerting import Harness
from support.net import free_port
from support.waiting import wait_for

from observability.redaction import scrub
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

# ---- 1. secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /T0/B0/PathS3cret",
            "PathS3cret",
        ),
        ("POST https://hooks.example.com/services/T0/B0/PathS3cret failed", "PathS3cret"),
        ("GET https://api.example.com/v1/alerts?token=QueryS3cret&x=1 refused", "QueryS3cret"),
        ("slack said xoxb-1234-5678-S3cretS3cret", "S3cretS3cret"),
        ("bad key AKIAIOSFODNN7S3CRETX", "IOSFODNN7S3CRETX"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJTM2NyZXQifQ.c2lnbmF0dXJlUzNjcmV0", "c2lnbmF0dXJlUzNjcmV0"),
        ("GenieKey og-S3cret-key-1234 rejected", "og-S3cret-key-1234"),
    ],
)
def test_scrub_reduces_urls_to_scheme_and_host_and_masks_token_shapes(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    if "://" in text:
        host = text.split("://")[1].split("/")[0]
        assert host in cleaned, "the host stays, so an operator can tell which peer failed"


def test_settings_repr_masks_every_secret_including_url_passwords() -> None:
    s = Settings.from_env({
        "DATABASE_URL": "postgresql+psycopg://app:db-S3cret@db:5432/obs",
        "REDIS_URL": "redis://:redis-S3cret@cache:6379/0",
        "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-S3cret",
        "ALERT_WEBHOOK_URL": "https://hooks.example.com/in?token=hook-S3cret",
        "ALERT_WEBHOOK_HEADERS": json.dumps({"Authorization": "Bearer header-S3cret"}),
        "ALERT_WEBHOOK_PAGERDUTY_URL": "https://events.example.com/v2/enqueue?key=pd-S3cret",
        "SESSION_SECRET": "session-S3cret",
    })  # fmt: skip
    text = repr(s)
    assert "S3cret" not in text and "db:5432" in text and "cache:6379" in text
    assert s.database_url.endswith("app:db-S3cret@db:5432/obs"), "the value itself is unchanged"


@SQLITE_ONLY
def test_a_failed_delivery_stores_shows_and_logs_no_webhook_token(
    alerting: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead_url = f"http://127.0.0.1:{free_port()}/services/T0/B0/PathS3cret?token=QueryS3cret"
    alerting.reconfigure(alert_slack_webhook_url=dead_url, alert_delivery_max_attempts=1)
    result = alerting.svc.send_test_notification("slack", alerting.users["operator"])
    assert not result["ok"] and "127.0.0.1" in result["detail"] and "S3cret" not in result["detail"]
    [a] = alerting.at(0, {"cache_hit_rate": 0.2})  # slack only, dead after one attempt
    timeline = alerting.svc.alert_timeline(a["id"])
    assert "delivery_dead" in [e["kind"] for e in timeline]
    with alerting.store.connect() as conn:
        errors = conn.execute(sa.select(schema.notifications.c.last_error)).scalars().all()
        feed = conn.execute(
            sa.select(schema.activity_events.c.title, schema.activity_events.c.description)
        ).all()
    assert any(e and "127.0.0.1" in e for e in errors)
    stored = json.dumps([errors, [tuple(f) for f in feed], [e["detail"] for e in timeline]], default=str)
    assert any("gave up" in (f.title or "") and "127.0.0.1" in (f.description or "") for f in feed)
    assert "S3cret" not in stored
    assert "S3cret" not in caplog.text


# ---- 2. channels --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ssl", "STARTTLS-maybe", "plain", "ssl/tls"])
def test_email_security_other_than_tls_starttls_none_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ValueError, match="ALERT_EMAIL_SECURITY"):
        Settings.from_env({"ALERT_EMAIL_SECURITY": value})
    assert Settings.from_env({"ALERT_EMAIL_SECURITY": "TLS"}).alert_email_security == "tls"


def test_a_login_without_tls_is_refused_at_start_naming_the_settings() -> None:
    """With ALERT_EMAIL_SECURITY=none and a login, every e-mail was refused one by one while the
    console showed the channel "configured" in green: the process now refuses to start."""
    env = {"ALERT_EMAIL_ENABLED": "true", "ALERT_EMAIL_SECURITY": "none", "ALERT_EMAIL_SMTP_HOST": "127.0.0.1",
           "ALERT_EMAIL_SMTP_USER": "mailer", "ALERT_EMAIL_SMTP_PASSWORD": "pw-S3cret"}  # fmt: skip
    with pytest.raises(ValueError) as err:
        Settings.from_env(env)
    for name in ("ALERT_EMAIL_SECURITY", "ALERT_EMAIL_SMTP_USER", "ALERT_EMAIL_ALLOW_PLAIN_AUTH"):
        assert name in str(err.value)
    assert "S3cret" not in str(err.value)
    assert Settings.from_env({**env, "ALERT_EMAIL_ALLOW_PLAIN_AUTH": "true"}).alert_email_allow_plain_auth
    assert Settings.from_env({**env, "ALERT_EMAIL_SMTP_USER": ""}).alert_email_security == "none"  # no login
    assert not Settings.from_env({**env, "ALERT_EMAIL_ENABLED": "false"}).alert_email_enabled  # never sends


class _PlainRelay:
    """An SMTP relay on 127.0.0.1 that offers AUTH without TLS and records who logged in."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.logins: list[bytes] = []
        self.mails: list[bytes] = []
        relay = self

        class Handler:
            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
                relay.mails.append(envelope.content)  # type: ignore[attr-defined]
                return "250 OK"

        def authenticator(
            server: object, session: object, envelope: object, mechanism: str, data: object
        ) -> object:
            relay.logins.append(data.password)  # type: ignore[attr-defined]
            return AuthResult(success=True)

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator,
                                     auth_require_tls=False)  # fmt: skip
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@SQLITE_ONLY
def test_smtp_auth_is_refused_without_tls_unless_explicitly_allowed(alerting: Harness) -> None:
    relay = _PlainRelay()
    try:
        # a login without TLS is refused at start, naming the settings (every e-mail would be refused)
        with pytest.raises(ValueError, match="ALERT_EMAIL_SECURITY=none with ALERT_EMAIL_SMTP_USER") as err:
            alerting.reconfigure(alert_email_smtp_port=relay.port, alert_email_security="none")
        assert "ALERT_EMAIL_ALLOW_PLAIN_AUTH=true" in str(err.value)
        assert relay.logins == [] and relay.mails == [], "no password crossed the network in clear"
        alerting.reconfigure(alert_email_smtp_port=relay.port, alert_email_security="none",
                             alert_email_allow_plain_auth=True)  # fmt: skip
        assert alerting.svc.send_test_notification("email", alerting.users["operator"])["ok"]
        assert len(relay.logins) == 1 and len(relay.mails) == 1
    finally:
        relay.stop()


class _Http:
    """A tiny HTTP peer on 127.0.0.1: answers every POST with (status, headers, body), records requests."""

    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, str]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer.requests.append(dict(self.headers.items()))
                data = body.encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@SQLITE_ONLY
def test_webhook_follows_no_redirect_and_stores_a_short_scrubbed_answer(alerting: Harness) -> None:
    elsewhere = _Http(200, {}, "ok")
    redirector = _Http(307, {"Location": f"{elsewhere.url}/collect"}, "moved")
    noisy = _Http(500, {}, "upstream says token=BodyS3cret " + "x" * 20_000)
    try:
        op = alerting.users["operator"]
        alerting.reconfigure(alert_webhook_url=f"{redirector.url}/hook")
        result = alerting.svc.send_test_notification("webhook", op)
        assert not result["ok"] and "redirect" in result["detail"]
        assert len(redirector.requests) == 1 and elsewhere.requests == [], "headers never reach another host"
        alerting.reconfigure(alert_webhook_url=f"{noisy.url}/hook")
        result = alerting.svc.send_test_notification("webhook", op)
        assert not result["ok"] and "HTTP 500" in result["detail"]
        with alerting.store.connect() as conn:
            errors = conn.execute(sa.select(schema.notifications.c.last_error)).scalars().all()
        assert all(len(e) <= 400 and "BodyS3cret" not in e for e in errors if e)
    finally:
        for peer in (elsewhere, redirector, noisy):
            peer.close()


@SQLITE_ONLY
def test_slack_text_is_escaped_so_data_cannot_mention_a_channel_or_disguise_a_link(alerting: Harness) -> None:
    from observability.alerting import channels as ch

    evil = "<!channel> <https://evil.example/login|Open the console> & more"
    payload = {"alert_id": 7, "rule": "sla_violation", "severity": "critical", "message": f"bot {evil} slow",
               "description": evil, "labels": {"bot": evil}, "acknowledged_by": evil}  # fmt: skip
    ch.send(
        ch.Outgoing(key="k-1", channel="slack", kind="trigger", level=1, payload=payload), alerting.settings
    )
    [got] = alerting.peers.of("slack")
    raw = json.dumps(got.body)
    assert "<!channel>" not in raw and "<https://evil" not in raw
    assert "&lt;!channel&gt;" in got.body["text"] and "&amp; more" in got.body["text"]


# ---- 3. personal data -----------------------------------------------------------------------------

PII = "call jo@example.com or +44 20 7946 0958, code ZX-99-SECRET"


def _everything_stored(store: Store) -> str:
    tables = (schema.messages, schema.accounts, schema.handoffs, schema.llm_calls, schema.bot_operations,
              schema.system_metrics, schema.activity_events, schema.alert_events, schema.silences)  # fmt: skip
    with store.connect() as conn:
        return json.dumps([[tuple(r) for r in conn.execute(sa.select(t))] for t in tables], default=str)


def test_every_free_text_field_of_every_sdk_event_kind_is_redacted_at_ingest(
    sqlite_store: Store, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(sqlite_url, redact_extra_patterns=(r"ZX-\d+-SECRET",))
    client = ObservabilityClient(settings=settings)
    try:
        client.set_account("acc-1", name=f"Jo {PII}")
        client.record_message("c-1", "user", PII, bot="lead_bot", account_id="acc-1")
        client.record_handoff("lead_bot", "buyer_bot", reason=PII)
        client.record_llm_call(
            "claude-sonnet-4-5", "anthropic", 10, 5, 100.0, success=False, error_type=PII[:100]
        )
        client.track_operation("lead_bot", "qualify", 5.0, success=False, error_type=PII[:100])
        client.record_metric("custom.score", 1.0, metadata={"note": PII, "nested": [PII], "n": 4155552671})
        client.log_activity("bot.note", PII[:200], description=PII, metadata={"who": PII})
        assert client.flush(10.0), client.stats()
    finally:
        client.close()
    stored = _everything_stored(sqlite_store)
    assert "lead_bot" in stored and "[email redacted]" in stored and "[redacted]" in stored
    for secret in ("jo@example.com", "7946 0958", "ZX-99-SECRET"):
        assert secret not in stored


@SQLITE_ONLY
def test_activity_alert_notes_and_silence_reasons_are_redacted(alerting: Harness) -> None:
    op = alerting.users["operator"]
    [a] = alerting.at(0, {"cache_hit_rate": 0.2})
    alerting.svc.acknowledge_alert(a["id"], op, note=PII, now=alerting.now(1))
    alerting.svc.resolve_alert(a["id"], op, note=PII, now=alerting.now(2))
    alerting.svc.add_silence(
        op, reason=PII, rule_name="low_cache_hit_rate", duration_s=3600, now=alerting.now(3)
    )
    stored = _everything_stored(alerting.store)
    assert "[email redacted]" in stored and "jo@example.com" not in stored and "7946 0958" not in stored


def test_spool_files_hold_only_redacted_text(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    down = f"postgresql+psycopg://nobody:pw@127.0.0.1:{free_port()}/none"
    settings = make_settings(down, sdk_max_retries=0, sdk_retry_backoff_s=0.01)
    client = ObservabilityClient(settings=settings)
    try:
        client.record_message("c-1", "user", PII, bot="lead_bot", author="Jo jo@example.com")
        assert wait_for(lambda: client.stats()["spilled"] > 0, 10.0), client.stats()
    finally:
        client.close(timeout=0.5)
    files = sorted(Path(settings.spool_dir).glob("*.json"))
    assert files
    content = "".join(f.read_text() for f in files)
    assert "[email redacted]" in content and "jo@example.com" not in content and "7946 0958" not in content


# ---- 4. CSV downloads -------------------------------------------------------------------------

HOSTILE_CELLS = ("=HYPERLINK(\"http://127.0.0.1:9/x\",\"open\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
                 "\t=1+1", "\r=1+1")  # fmt: skip


def test_csv_downloads_escape_formula_leading_cells(
    sqlite_store: Store, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    import csv
    import io

    from observability.ui import frames
    from observability.ui.common import FORMULA_START, csv_bytes

    client = ObservabilityClient(settings=make_settings(sqlite_url))
    try:
        for name in HOSTILE_CELLS:
            client.record_llm_call("claude-sonnet-4-5", "anthropic", 10, 5, 100.0, bot=name, agent=name)
        assert client.flush(10.0), client.stats()
    finally:
        client.close()
    table = frames.llm_breakdown(sqlite_store, "24h", by=("bot", "agent"))
    table["delta"] = -1.5  # a negative amount is a number, not a formula
    assert sorted(table["bot"]) == sorted(HOSTILE_CELLS)  # the page shows the names as they are
    parsed = list(csv.DictReader(io.StringIO(csv_bytes(table).decode(), newline="")))
    assert sorted(r["bot"] for r in parsed) == sorted("'" + n for n in HOSTILE_CELLS)
    for r in parsed:
        assert r["agent"] == r["bot"] and r["delta"] == "-1.5"
        assert not any(v.startswith(FORMULA_START) for k, v in r.items() if k != "delta")


# ---- 5. private files -------------------------------------------------------------------------


def test_store_spool_lock_and_token_files_are_private(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    import os
    import stat

    from observability.worker.ingest_token import ensure_ingest_token
    from observability.worker.leader import LeaderLock

    old_umask = os.umask(0o022)  # the usual umask: without care files would be 0644 and directories 0755
    local = tmp_path / "data" / "local"  # neither directory exists yet
    db = local / "obs.db"
    down = f"postgresql+psycopg://nobody:pw@127.0.0.1:{free_port()}/none"
    store = Store.from_url(f"sqlite:///{db}")
    try:
        store.migrate()
        settings = make_settings(
            f"sqlite:///{db}", spool_dir=local / "spool", otlp_ingest_token_file=local / "t.token"
        )
        lock = LeaderLock(store, settings)
        assert lock.try_acquire()
        lock.release()
        ensure_ingest_token(settings)
        spilling = ObservabilityClient(settings=settings.replace(database_url=down, sdk_max_retries=0))
        try:
            spilling.record_message("c-1", "user", "hello", bot="lead_bot")
            assert wait_for(lambda: spilling.stats()["spilled"] > 0, 10.0), spilling.stats()
        finally:
            spilling.close(timeout=0.5)
    finally:
        store.dispose()
        os.umask(old_umask)
    files = [p for p in local.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"obs.db", "obs.db.leader.lock", "t.token"} <= names and any(n.endswith(".json") for n in names), (
        names
    )
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (tmp_path / "data", local, local / "spool"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


# SQLite's unix locks: a reader holds a read lock on the 510 bytes after PENDING_BYTE (0x40000000) + 2
SQLITE_SHARED_FIRST, SQLITE_SHARED_SIZE = 0x40000002, 510
PROBE_SHARED_LOCK = f"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, {SQLITE_SHARED_SIZE}, {SQLITE_SHARED_FIRST})
    print("free")
except OSError:
    print("held")
"""


def test_opening_a_second_store_on_the_file_keeps_the_first_ones_sqlite_locks(tmp_path: Path) -> None:
    """SQLite's locks are POSIX locks, which a process loses on a file when it closes any descriptor
    of it. The console opens three stores on the embedded file; each opened and closed the file to
    check its mode, dropping the locks of the connections already open, so the worker checkpointed
    and reset the WAL under them and the store was corrupted ("database disk image is malformed")."""
    import os
    import stat
    import subprocess
    import sys

    db = tmp_path / "obs.db"
    first = Store.from_url(f"sqlite:///{db}")
    first.migrate()

    def lock() -> str:
        return subprocess.run([sys.executable, "-c", PROBE_SHARED_LOCK, str(db)], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()  # fmt: skip

    try:
        with first.connect() as conn:  # an open connection, as the console's pool keeps
            conn.execute(sa.text("SELECT count(*) FROM sqlite_master")).all()
            assert lock() == "held"  # what another process (the worker) sees
            second = Store.from_url(f"sqlite:///{db}")
            try:
                assert lock() == "held", "opening a second Store dropped the first one's SQLite locks"
                with second.connect() as other:
                    assert other.execute(sa.text("PRAGMA quick_check")).scalar() == "ok"
            finally:
                second.dispose()
    finally:
        first.dispose()
    os.chmod(db, 0o644)  # an older version's store: narrowed by path, without opening it
    Store.from_url(f"sqlite:///{db}").dispose()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# ---- 7. permissions ---------------------------------------------------------------------------


def test_only_the_holder_or_an_admin_can_reset_a_taken_over_conversation(store: Store) -> None:
    import time
    import uuid

    from observability import auth, control
    from observability import events as ev
    from observability.store.ingest import write_batch

    s = Settings().replace(auth_mode="password", redis_url=None)
    for name, role in (("olga", auth.OPERATOR), ("otto", auth.OPERATOR), ("root", auth.ADMIN)):
        auth.create_user(store, name, role, "a-long-password")
    for cid in ("c1", "c2"):
        write_batch(store, [ev.message(uuid.uuid4().hex, time.time() - 60, conversation_id=cid, role="user",
                                       text="hello", bot="buyer", account_id="a-1")], s)  # fmt: skip
        control.take_control(store, cid, "olga", "review", settings=s)

    def audit_rows() -> int:
        with store.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(schema.interventions)).scalar()

    before = audit_rows()
    with pytest.raises(control.ControlConflict, match="held by olga; only they or an admin"):
        control.reset_conversation(store, "c1", "otto", "mine now", settings=s)
    held = control.intervention_status(store, "c1")
    assert (held.state, held.operator) == ("human", "olga") and audit_rows() == before
    # the holder and an admin may
    assert control.reset_conversation(store, "c1", "olga", "done", settings=s).outcome == "reset_from_human"
    assert control.reset_conversation(store, "c2", "root", "stuck", settings=s).outcome == "reset_from_human"
    assert (
        control.intervention_status(store, "c1").state
        == control.intervention_status(store, "c2").state
        == "ai"
    )
    # a conversation nobody holds (stopped) any operator may still reset
    control.stop_conversation(store, "c1", "olga", "abuse", settings=s)
    assert (
        control.reset_conversation(store, "c1", "otto", "false alarm", settings=s).outcome
        == "reset_from_stopped"
    )


@SQLITE_ONLY
def test_silences_are_capped_at_the_configured_length(alerting: Harness) -> None:
    from observability.alerting import RuleValidationError

    op = alerting.users["operator"]
    with pytest.raises(RuleValidationError, match=r"at most 7 days \(ALERT_SILENCE_MAX_S\)") as caught:
        alerting.svc.add_silence(op, reason="forever", rule_name="low_cache_hit_rate",
                                 ends_at=datetime(9999, 1, 1), now=alerting.now(0))  # fmt: skip
    assert set(caught.value.errors) == {"ends_at"}
    with pytest.raises(RuleValidationError, match="at most 7 days"):
        alerting.svc.add_silence(op, reason="long", rule_name="low_cache_hit_rate", duration_s=8 * 86400,
                                 now=alerting.now(0))  # fmt: skip
    with pytest.raises(RuleValidationError, match="at most 7 days"):
        alerting.svc.add_silence(op, reason="inf", rule_name="low_cache_hit_rate", duration_s=float("inf"),
                                 now=alerting.now(0))  # fmt: skip
    with alerting.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.silences)).scalar() == 0
    alerting.svc.add_silence(op, reason="a week", rule_name="low_cache_hit_rate", duration_s=7 * 86400,
                             now=alerting.now(0))  # fmt: skip
    shorter = alerting.svc.__class__(alerting.store, alerting.svc.settings.replace(alert_silence_max_s=3600))
    with pytest.raises(RuleValidationError, match=r"at most 1 h"):
        shorter.add_silence(
            op, reason="2h", rule_name="low_cache_hit_rate", duration_s=7200, now=alerting.now(0)
        )


def test_the_sdk_refuses_operator_messages(sqlite_store: Store, make_settings: Callable[..., Settings],
                                           sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    client = ObservabilityClient(settings=make_settings(sqlite_url))
    try:
        client.record_message("c-1", "operator", "Hi, this is Olga from support: pay here", bot="lead_bot")
        client.record_message("c-1", "assistant", "the OpenAI name for a bot's turn", bot="lead_bot")
        client.record_message("c-1", "user", "hello", bot="lead_bot")
        assert client.flush(10.0), client.stats()
        assert client.stats()["rejected"] == 2
    finally:
        client.close()
    assert "operator replies are sent through the console's control service" in caplog.text
    # a wrong role is told the roles a bot may use: not 'operator', which is always refused
    [wrong] = [r.getMessage() for r in caplog.records if "'assistant'" in r.getMessage()]
    assert "role must be 'user' or 'bot'" in wrong and "operator" not in wrong
    with sqlite_store.connect() as conn:
        roles = [r.role for r in conn.execute(sa.select(schema.messages.c.role))]
    assert roles == ["user"]


# ---- 3. data is text, never markup ------------------------------------------------------------

# each carries a marker word: wherever a page shows the marker, it must show the whole name as text
HOSTILE = {"bold1": "<b>bold1</b>", "tick2": "tick2`", "link3": "[link3](http://127.0.0.1:9/evil)",
           "img4": "![img4](http://127.0.0.1:9/i.png)"}  # fmt: skip
WIDGET_KINDS = ("toggle", "checkbox", "button", "expander", "selectbox", "multiselect", "text_input",
                "text_area", "radio", "tabs")  # fmt: skip
PAGE_FILES = [
    "Home.py",
    *sorted(f"pages/{p.name}" for p in (Path(__file__).parent.parent / "pages").glob("*.py")),
]
# pages whose tabs are lazy (only the open one is drawn) and whose other tabs show stored names
LAZY_TABS = {"pages/alerts.py": (None, "History", "Rules", "Silences", "Channels")}


def _markdown_problems(source: str) -> list[str]:
    """What a markdown source would render as markup: links (except the console's own relative links
    to its pages, `./page?...`, and to a heading of the page itself, `#anchor`, which pages make on
    purpose) or images (to anywhere), raw HTML, or a
    marker shown without its whole name (a backtick that broke out of a code span)."""
    from markdown_it import MarkdownIt

    problems, shown = [], []
    for block in MarkdownIt("commonmark").parse(source):
        for tok in [block, *(block.children or [])]:
            own_link = tok.type == "link_open" and str(tok.attrs.get("href", "")).startswith(("./", "#"))
            if (tok.type in ("link_open", "image") and not own_link) or tok.type.startswith("html"):
                problems.append(f"{tok.type} in {source!r}")
            if tok.type in ("text", "code_inline"):
                shown.append(tok.content)
    text = "".join(shown)
    for marker, name in HOSTILE.items():
        if marker in text and name not in text:
            problems.append(f"{name!r} shown broken in {source!r}")
    return problems


def _figure_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _figure_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _figure_strings(v)


@contextmanager
def _pages_reading(monkeypatch: pytest.MonkeyPatch, url: str) -> Iterator[None]:
    """Pages run under AppTest read the store at `url` (no sign-in), with settings and the console's
    caches fresh on entry and dropped on exit, so no other test sees this store."""
    from observability.settings import reset_settings_cache
    from observability.ui import common

    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    try:
        yield
    finally:
        reset_settings_cache()
        common.clear_caches()


def test_hostile_names_render_as_text_on_every_page(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from observability.alerting.model import RuleValidationError
    from observability.alerting.service import AlertingService
    from observability.analytics.conversation_scoring import score_pending
    from observability.timeutil import utcnow

    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    store = Store.from_url(url)
    store.migrate()
    client = ObservabilityClient(settings=make_settings(url))
    try:
        client.set_account("acc-1", name=HOSTILE["link3"], vip=True)
        for i, name in enumerate(HOSTILE.values()):
            conv = f"conv-{i}"
            for _ in range(3):
                client.record_llm_call("claude-sonnet-4-5", "anthropic", 100, 20, 900.0, bot=name, agent=name,
                                       decision_type=name, conversation_id=conv, success=False, error_type=name)  # fmt: skip
                client.track_operation(name, name, 5000.0, success=False, error_type=name)
                client.record_bot_interaction(name, 300.0, success=False, error_type=name)
            client.record_handoff(name, HOSTILE["img4"], success=False, reason=name)
            client.record_message(conv, "user", f"hi {name}", bot=name, account_id="acc-1", author=name)
            client.record_message(conv, "bot", f"answer {name}", bot=name, account_id="acc-1")
            client.record_metric(name, 1.0, conversation_id=conv, metadata={"k": name})
            client.log_activity(name, name, severity="high", description=name, conversation_id=conv)
        assert client.flush(10.0), client.stats()
    finally:
        client.close()
    now = utcnow()
    score_pending(store, now)
    with store.begin() as conn:
        conn.execute(sa.insert(schema.alerts).values(
            rule_name="high_error_rate", dedup_key="h|x", labels={"bot": HOSTILE["tick2"]}, state="firing",
            severity="critical", value=0.2, threshold=0.05, message=f"errors of {HOSTILE['link3']}",
            fired_at=now, created_at=now))  # fmt: skip
    with _pages_reading(monkeypatch, url):
        alerting = AlertingService(store)
        rule = {"metric": "error_rate", "comparison": "gt", "threshold": 0.5, "severity": "warning",
                "channels": ["slack"], "description": HOSTILE["link3"]}  # fmt: skip
        for name in HOSTILE.values():  # the service refuses markup in a rule name outright ...
            with pytest.raises(RuleValidationError):
                alerting.add_rule({**rule, "name": name}, "admin")
        alerting.add_rule({**rule, "name": "plain_rule"}, "admin")
        with store.begin() as conn:  # ... but a row written before that check, or by hand, is still shown
            conn.execute(sa.update(schema.alert_rules).where(schema.alert_rules.c.name == "plain_rule")
                         .values(name=HOSTILE["link3"]))  # fmt: skip
        store.dispose()
        for page, tab in [(p, t) for p in PAGE_FILES for t in LAZY_TABS.get(p, (None,))]:
            at = AppTest.from_file(str(Path(__file__).parent.parent / page), default_timeout=60)
            if tab is not None:  # a lazy tab is drawn only when open: each one is looked at
                at.query_params["tab"] = tab
            at.run()
            assert not at.exception, f"{page} {tab}: {at.exception}"
            if page == "pages/emergency.py":  # a typed id the store does not know: the refusal echoes it
                at.text_input(key="em_cid").set_value(HOSTILE["link3"])
                at.text_input(key="em_reason").set_value("abusive")
                next(b for b in at.button if b.label == "Stop conversation").click().run()
                assert any("link3" in e.value for e in at.error), [e.value for e in at.error]
            elements = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success,
                        *at.title, *at.subheader, *at.header]  # fmt: skip
            problems = [p for e in elements for p in _markdown_problems(str(e.value))]
            problems += [f"metric label {m.label!r}" for m in at.metric for p in _markdown_problems(m.label)]
            labels = [
                w.label for kind in WIDGET_KINDS for w in getattr(at, kind) if getattr(w, "label", None)
            ]
            if page == "pages/alerts.py" and tab == "Rules":
                assert any(HOSTILE["link3"] in t.label.replace("\\", "") for t in at.toggle), labels
            problems += [f"widget label: {p}" for label in labels for p in _markdown_problems(label)]
            for chart in at.get("plotly_chart"):
                for s in _figure_strings(json.loads(chart.proto.spec)):
                    if "<b>" in s or "<a " in s or "<img" in s:
                        problems.append(f"plotly text {s!r}")
            assert problems == [], f"{page} {tab}: {problems[:5]}"


def test_a_control_outcome_echoing_a_hostile_conversation_id_shows_it_as_text(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome of a stop names the conversation; an id a bot chose must not turn into a link."""
    from streamlit.testing.v1 import AppTest

    url = f"sqlite:///{tmp_path / 'control.db'}"
    Store.from_url(url).migrate()
    cid = HOSTILE["link3"]
    client = ObservabilityClient(settings=make_settings(url))
    client.record_message(cid, "user", "hello", bot="lead_bot")
    assert client.flush(10.0), client.stats()
    client.close()
    with _pages_reading(monkeypatch, url):
        at = AppTest.from_file(
            str(Path(__file__).parent.parent / "pages/conversations.py"), default_timeout=60
        )
        at.query_params["conversation"] = cid
        at.run()
        assert not at.exception, at.exception
        at.text_input(key="cv_em_reason").input("bot loops")
        at.button(key="cv_stop").click()
        at.run()
        assert not at.exception, at.exception
        outcomes = [str(e.value) for e in [*at.success, *at.error, *at.toast]]
        assert any("stopped" in o.lower() and "link3" in o for o in outcomes), outcomes
        problems = [p for o in outcomes for p in _markdown_problems(o)]
        assert problems == [], problems


def test_the_conversations_table_writes_quality_as_the_catalog_does(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from observability.analytics.conversation_scoring import score_pending
    from observability.timeutil import utcnow
    from observability.ui import fmt

    url = f"sqlite:///{tmp_path / 'quality.db'}"
    store = Store.from_url(url)
    store.migrate()
    client = ObservabilityClient(settings=make_settings(url))
    client.record_message("conv-q", "user", "my order never came, this is useless", bot="lead_bot")
    client.record_message("conv-q", "bot", "Sorry to hear that, let me check the order.", bot="lead_bot")
    assert client.flush(10.0), client.stats()
    client.close()
    score_pending(store, utcnow())
    store.dispose()
    with _pages_reading(monkeypatch, url):
        at = AppTest.from_file(
            str(Path(__file__).parent.parent / "pages/conversations.py"), default_timeout=60
        )
        at.run()
        assert not at.exception, at.exception
        table = at.dataframe[0]
        config = json.loads(table.proto.columns)["quality"]
        ratio = conversations_quality(url, "conv-q")
        assert ratio is not None
        shown = float(table.value["quality"].iloc[0])
        assert config["label"] == fmt.label("quality_score")
        printf = config["type_config"]["format"]
        assert printf % shown == fmt.text("quality_score", ratio)  # e.g. 32.8%, one decimal


def conversations_quality(url: str, cid: str) -> float | None:
    store = Store.from_url(url)
    try:
        with store.connect() as conn:
            t = schema.conversations
            return conn.execute(sa.select(t.c.quality_score).where(t.c.id == cid)).scalar()
    finally:
        store.dispose()


def test_an_overlong_shared_link_gets_a_friendly_message_not_a_traceback(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    url = f"sqlite:///{tmp_path / 'link.db'}"
    Store.from_url(url).migrate()
    client = ObservabilityClient(settings=make_settings(url))
    client.record_message("conv-1", "user", "hello", bot="lead_bot")
    assert client.flush(10.0)
    client.close()
    with _pages_reading(monkeypatch, url):
        for value in ("x" * 200, "conv-1\n[Session expired: sign in](http://127.0.0.1:9/x)"):
            at = AppTest.from_file(
                str(Path(__file__).parent.parent / "pages/conversations.py"), default_timeout=60
            )
            at.query_params["conversation"] = value
            at.run()
            assert not at.exception, at.exception
            warnings = [w.value for w in at.warning]
            assert any("`conversation` value was ignored" in w for w in warnings), warnings
            shown = "\n".join(
                str(e.value) for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.error)
            )
            assert "Traceback" not in shown and "Session expired" not in shown and "x" * 101 not in shown


def test_the_error_boundary_logs_the_traceback_under_an_id_and_shows_only_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        from observability.ui import common as ui

        def broken() -> None:
            raise RuntimeError("chart query failed on /srv/app/internal.py")

        ui.run_guarded(broken)

    caplog.set_level(logging.ERROR, logger="observability.ui.common")
    at = AppTest.from_function(page, default_timeout=30)
    at.run()
    assert not at.exception
    [shown] = [e.value for e in at.error]
    assert "internal.py" not in shown and "RuntimeError" not in shown and "Traceback" not in shown
    error_id = shown.split("error id ")[1].split(")")[0]
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info and "internal.py" in str(
        record.exc_info[1]
    )  # the log keeps what is needed to fix it
