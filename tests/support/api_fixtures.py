"""The console served for real (`uvicorn app:app` on a free 127.0.0.1 port) with users of every role,
their API tokens, conversations and a firing alert: what the API tests (`tests/test_api*.py`) and
the schemathesis run share. One server per test session; it is stopped at the end.

Redis (TEST_REDIS_URL) is used when configured, with a key prefix of its own, so the WebSocket
hub gets control changes by pub/sub; without it the hub polls the store.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from observability import auth
from observability import events as ev
from observability.alerting import AlertingService
from observability.auth import api_tokens
from observability.settings import Settings, test_environment
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import utcnow
from support.net import free_port
from support.process import ROOT, subprocess_env
from support.waiting import wait_for

SECRET = "api-tests-secret-" + "x" * 24
PASSWORD = "api-tests-password-1"
ROLE_USERS = {"analyst": "ana", "operator": "opal", "manager": "max", "admin": "ada"}
SECOND_ADMIN = "adele"  # the WebSocket tests' admin: her system-wide actions do not count against ada's limit
CONVERSATIONS = 52


@dataclass
class ServedApi:
    base: str  # http://127.0.0.1:PORT/api/v1
    ws_base: str  # ws://127.0.0.1:PORT/api/v1
    store: Store
    settings: Settings  # the server's settings (for calling services from the test)
    tokens: dict[str, str]  # role -> token of that role's user
    bad_tokens: dict[str, str]  # why -> a token the server must refuse with 401
    conversations: list[str]
    alert_ids: list[int]
    redis_url: str | None
    extra: dict = field(default_factory=dict)

    def headers(self, role: str | None = None, token: str | None = None) -> dict[str, str]:
        t = token or (self.tokens[role] if role else None)
        return {"Authorization": f"Bearer {t}"} if t else {}


def _redis_url() -> str | None:
    url = test_environment()["redis_url"]
    if not url:
        return None
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        return None
    return url


def seed(store: Store, settings: Settings) -> tuple[dict[str, str], dict[str, str], list[str], list[int]]:
    """Users of every role with tokens, tokens that must be refused, conversations, one firing alert."""
    for role, name in ROLE_USERS.items():
        auth.create_user(store, name, role, PASSWORD)
    auth.create_user(store, "gone", auth.OPERATOR, PASSWORD)
    auth.create_user(store, SECOND_ADMIN, auth.ADMIN, PASSWORD)
    tokens = {role: api_tokens.create_token(store, None, name, f"{role} tests", settings=settings).token
              for role, name in ROLE_USERS.items()}  # fmt: skip
    expired = api_tokens.create_token(store, None, "ada", "expired", days=1, now=utcnow() - timedelta(days=2),
                                      settings=settings).token  # fmt: skip
    revoked = api_tokens.create_token(store, None, "ada", "revoked", settings=settings)
    token_id = next(t["id"] for t in api_tokens.list_tokens(store, "ada") if t["name"] == "revoked")
    api_tokens.revoke_token(store, None, token_id, settings=settings)
    disabled = api_tokens.create_token(store, None, "gone", "of a disabled user", settings=settings).token
    auth.update_user(store, "gone", disabled=True, by="tests")
    foreign = api_tokens.create_token(
        store, None, "ada", "foreign", settings=settings.replace(session_secret="other-" + SECRET)
    ).token
    tokens["admin2"] = api_tokens.create_token(store, None, SECOND_ADMIN, "ws tests", settings=settings).token
    tokens["admin_as_analyst"] = api_tokens.create_token(
        store, None, "ada", "narrow", scope="analyst", settings=settings
    ).token
    tokens["admin_as_operator"] = api_tokens.create_token(
        store, None, "ada", "as an operator", scope="operator", settings=settings
    ).token
    bad = {"garbage": "not-a-jwt", "expired": expired, "revoked": revoked.token, "disabled user": disabled,
           "signed elsewhere": foreign}  # fmt: skip
    now = time.time() - 120
    cids = [f"conv-{i:03d}" for i in range(CONVERSATIONS)]
    batch = []
    for i, cid in enumerate(cids):
        for j, (role, text) in enumerate(
            (("user", "my order has not arrived"), ("bot", "Let me check that."))
        ):
            batch.append(ev.message(uuid.uuid4().hex, now + i * 0.01 + j * 0.001, conversation_id=cid, role=role,
                                    text=text, bot="buyer", account_id=f"account-{i % 3}"))  # fmt: skip
    write_batch(store, batch, settings)
    svc = AlertingService(store, settings.replace(alert_default_for_s=0.0, alert_min_samples=0))
    fired = svc.check_and_send_alerts({"error_rate": 0.5, "system_load": 99.0, "ai_confidence": 0.1})
    return tokens, bad, cids, [a["id"] for a in fired]


def start_console(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """`uvicorn app:app` (the console's real ASGI app: Streamlit, sign-in routes and /api/v1)."""
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=subprocess_env(**env), stdout=log.open("wb"), stderr=subprocess.STDOUT
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the console exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=120, interval=0.3, message="the console did not serve /api/v1/openapi.json")
    except BaseException:
        proc.kill()
        raise
    return proc


@pytest.fixture(scope="session")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    tmp = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{tmp / 'store.db'}"
    redis_url = _redis_url()
    prefix = f"obstest:api:{uuid.uuid4().hex[:8]}:"
    env = {"DATABASE_URL": url, "SESSION_SECRET": SECRET, "AUTH_MODE": "password", "REDIS_URL": redis_url or "",
           "REDIS_PREFIX": prefix, "SPOOL_DIR": str(tmp / "spool"), "WEBSOCKET_POLL_INTERVAL_S": "0.2",
           "WEBSOCKET_PING_INTERVAL": "0.5", "WEBSOCKET_TIMEOUT": "30", "METRICS_INTERVAL": "1"}  # fmt: skip
    settings = Settings.from_env({**env, "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024"})
    store = Store.from_url(url)
    store.migrate()
    tokens, bad, cids, alerts = seed(store, settings)
    port = free_port()
    proc = start_console(env, port, tmp / "console.log")
    try:
        yield ServedApi(f"http://127.0.0.1:{port}/api/v1", f"ws://127.0.0.1:{port}/api/v1", store, settings,
                        tokens, bad, cids, alerts, redis_url, {"log": tmp / "console.log"})  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        store.dispose()
        if redis_url:
            import redis

            r = redis.Redis.from_url(redis_url)
            found = list(r.scan_iter(f"{prefix}*", count=1000))
            if found:
                r.delete(*found)
