"""`python -m observability.users`: add, set-role, reset-password, disable, enable, unlock, list."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
from support import subprocess_env

from observability import auth
from observability.auth import cli as users
from observability.settings import Settings
from observability.store import Store

PASSWORD = "cli-S3cret-password"


def _run(store: Store, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = users.run(list(argv), store=store, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_round_trip_in_a_real_process(sqlite_url: str) -> None:
    env = subprocess_env(DATABASE_URL=sqlite_url)

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "observability.users", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = cli("add", "olga", "--role", "operator", "--password", PASSWORD)
    assert added.returncode == 0, added.stderr
    assert "added olga (operator)" in added.stdout
    listed = cli("list")
    assert listed.returncode == 0 and "olga" in listed.stdout and "operator" in listed.stdout
    assert PASSWORD not in listed.stdout + listed.stderr and "$argon2" not in listed.stdout
    refused = cli("add", "olga", "--role", "admin", "--password", PASSWORD)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    store = Store.from_url(sqlite_url)
    try:
        assert auth.authenticate(store, "olga", PASSWORD).role == auth.OPERATOR
    finally:
        store.dispose()


def test_add_prompts_for_the_password_when_none_is_given(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr(users.getpass, "getpass", lambda prompt="": next(answers))
    code, out, _ = _run(sqlite_store, "add", "ann", "--role", "analyst")
    assert code == 0 and "added ann (analyst)" in out and PASSWORD not in out
    assert auth.authenticate(sqlite_store, "ann", PASSWORD).role == auth.ANALYST


def test_mismatched_prompted_passwords_change_nothing(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PASSWORD, "something-else"])
    monkeypatch.setattr(users.getpass, "getpass", lambda prompt="": next(answers))
    code, _, err = _run(sqlite_store, "add", "ann", "--role", "analyst")
    assert code == 1 and "do not match" in err
    assert auth.list_users(sqlite_store) == []


def test_set_role_reset_password_disable_enable_unlock(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    assert _run(sqlite_store, "add", "ann", "--role", "analyst", "--password", PASSWORD)[0] == 0
    code, out, _ = _run(sqlite_store, "set-role", "ann", "manager")
    assert code == 0 and "ann is now manager" in out
    assert _run(sqlite_store, "set-role", "ann", "--role", "operator")[0] == 0
    assert auth.get_user(sqlite_store, "ann").role == auth.OPERATOR

    code, out, _ = _run(sqlite_store, "reset-password", "ann", "--random")
    assert code == 0
    generated = out.split("password (shown once): ")[1].strip()
    assert auth.authenticate(sqlite_store, "ann", generated).name == "ann"

    assert _run(sqlite_store, "disable", "ann")[0] == 0
    code, out, _ = _run(sqlite_store, "list")
    assert "disabled" in out
    with pytest.raises(auth.AuthError, match="wrong user name or password"):  # no hint it was right
        auth.authenticate(sqlite_store, "ann", generated)
    assert _run(sqlite_store, "enable", "ann")[0] == 0

    for _ in range(5):
        with pytest.raises(auth.AuthError):
            auth.authenticate(sqlite_store, "ann", "wrong-password")
    assert "locked until" in _run(sqlite_store, "list")[1]
    assert _run(sqlite_store, "unlock", "ann")[0] == 0
    assert auth.authenticate(sqlite_store, "ann", generated).name == "ann"


def test_cli_refusals_are_clear(sqlite_store: Store) -> None:
    auth.create_user(sqlite_store, "root", auth.ADMIN, PASSWORD)
    code, _, err = _run(sqlite_store, "disable", "root")
    assert code == 1 and "last active admin" in err
    code, _, err = _run(sqlite_store, "set-role", "nobody", "admin")
    assert code == 1 and "no user named" in err
    code, _, err = _run(sqlite_store, "reset-password", "nobody", "--password", PASSWORD)
    assert code == 1 and "no user named" in err
    code, _, err = _run(sqlite_store, "add", "ann", "--role", "analyst", "--password", "short")
    assert code == 1 and "at least 8" in err
    assert _run(sqlite_store, "set-role", "root")[0] == 2
    with pytest.raises(SystemExit):
        _run(sqlite_store, "add", "ann", "--role", "wizard", "--password", PASSWORD)


def test_list_never_shows_hashes(sqlite_store: Store) -> None:
    code, out, _ = _run(sqlite_store, "list")
    assert code == 0 and "no users yet" in out
    auth.create_user(sqlite_store, "ann", auth.ANALYST, PASSWORD)
    code, out, _ = _run(sqlite_store, "list")
    assert "ann" in out and "$argon2" not in out and PASSWORD not in out


def test_cli_logs_no_password(sqlite_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _run(sqlite_store, "add", "ann", "--role", "analyst", "--password", PASSWORD)
    _run(sqlite_store, "reset-password", "ann", "--password", "an0ther-S3cret-pw")
    _run(sqlite_store, "add", "bob", "--role", "analyst", "--password", "tiny")
    assert caplog.records
    assert (
        PASSWORD not in caplog.text and "an0ther-S3cret-pw" not in caplog.text and "tiny" not in caplog.text
    )


def test_channel_status_never_shows_a_secret() -> None:
    secrets = {
        "ALERT_EMAIL_SMTP_HOST": "smtp.example.com",
        "ALERT_EMAIL_SMTP_USER": "mailer",
        "ALERT_EMAIL_SMTP_PASSWORD": "smtp-S3cret",
        "ALERT_EMAIL_FROM": "ops@example.com",
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
        "ALERT_WEBHOOK_URL": "https://user:hookpass@hooks.example.net:8443/path?token=abc123secret",
        "ALERT_WEBHOOK_SECRET": "signing-S3cret",
        "ALERT_WEBHOOK_PAGERDUTY_API_KEY": "pd-routing-S3cret",
        "ALERT_WEBHOOK_OPSGENIE_API_KEY": "og-S3cret-key",
        "ANTHROPIC_API_KEY": "sk-ant-api03-S3cret",
        "REDIS_URL": "redis://:redis-S3cret@cache.internal:6380/0",
        "DATABASE_URL": "postgresql+psycopg://app:db-S3cret@db.internal:5432/obs",
        "OTLP_INGEST_TOKEN": "otlp-S3cret",
    }
    rows = users.channel_status(Settings.from_env(secrets))
    text = repr(rows) + repr(users.security_settings(Settings.from_env(secrets)))
    for name, value in secrets.items():
        if "SECRET" in value.upper() or "S3cret" in value or "pass" in value:
            for part in ("S3cret", "SECRET", "hookpass", "abc123secret", "T000"):
                assert part not in text, (name, part)
    by = {r["channel"]: r for r in rows}
    assert by["Slack"]["status"] == "configured" and by["Slack"]["host"] == "hooks.slack.com"
    assert by["Webhook"]["host"] == "hooks.example.net:8443"
    assert by["Redis"]["host"] == "cache.internal:6380"
    assert by["Store"]["host"] == "db.internal:5432"
    assert by["Email (SMTP)"]["status"] == "configured"
    empty = {r["channel"]: r for r in users.channel_status(Settings())}
    assert empty["Slack"]["status"] == "not configured" and empty["Redis"]["status"] == "not configured"


def test_first_start_creates_admin_and_prints_the_password_once(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from observability.demo import bootstrap

    caplog.set_level(logging.DEBUG)
    step = next(s for s in bootstrap.STEPS if s.name == "admin_user")
    lines: list[str] = []
    ctx = bootstrap.BootstrapContext(sqlite_store, Settings(), echo=lines.append)
    outcome = bootstrap.run(ctx, [step])
    assert outcome["admin_user"] == "created user admin (password printed above)"
    password = lines[1].strip()
    assert auth.authenticate(sqlite_store, "admin", password).role == auth.ADMIN
    assert password not in caplog.text  # printed on the console, never logged
    lines.clear()
    assert bootstrap.run(ctx, [step])["admin_user"] == "users exist already; nothing to do"
    assert not any(password in line for line in lines)
