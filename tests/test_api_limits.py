"""Per-user rate limits of the API: 429 with Retry-After past the limit, stricter for emergency resets,
never for a STOP; counters in Redis when configured (shared by every console process), in process
otherwise. The app is the real one, called in process through Starlette's test client.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient
from support.net import free_port

from observability import auth, keys
from observability import events as ev
from observability.api import create_app
from observability.auth import api_tokens
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch

PW = "limits-password-1"


def _setup(store: Store, settings) -> tuple[TestClient, dict[str, str]]:  # noqa: ANN001
    auth.create_user(store, "olga", auth.OPERATOR, PW)
    auth.create_user(store, "oleg", auth.OPERATOR, PW)
    tokens = {
        u: api_tokens.create_token(store, None, u, "limits", settings=settings).token
        for u in ("olga", "oleg")
    }
    write_batch(store, [ev.message(f"m{i}", 1_700_000_000 + i, conversation_id=f"c{i}", role="user", text="hi",
                                   bot="buyer", account_id=None) for i in range(20)], settings)  # fmt: skip
    return TestClient(create_app(settings, store)), tokens


def _clear_of_minute_edge(margin_s: float = 15.0) -> None:
    """The counters use fixed one-minute windows: start a counting sequence well inside one window, so
    that a window ending mid-test cannot reset the count the assertions rely on."""
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.05)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("with_redis", [False, True], ids=["in-process", "redis"])
def test_requests_past_the_limit_get_429_with_retry_after_per_user_and_stops_never(
    store: Store,
    make_settings: Callable[..., Settings],
    request: pytest.FixtureRequest,
    with_redis: bool,
) -> None:
    redis_url = request.getfixturevalue("redis_url") if with_redis else None
    settings = make_settings(str(store.engine.url.render_as_string(hide_password=False)), redis_url,
                             auth_mode="password", session_secret="limits-" + "k" * 30,
                             api_rate_limit_per_min=5, api_emergency_rate_limit_per_min=2)  # fmt: skip
    client, tokens = _setup(store, settings)
    olga, oleg = _h(tokens["olga"]), _h(tokens["oleg"])
    _clear_of_minute_edge()
    codes = [client.get("/monitoring/metrics", headers=olga).status_code for _ in range(5)]
    assert codes == [200] * 5
    refused = client.get("/monitoring/metrics", headers=olga)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "at most 5 requests per minute" in refused.json()["detail"]
    assert client.get("/monitoring/metrics", headers=oleg).status_code == 200  # per user
    # a STOP is never refused, even past the limit
    for i in range(8):
        r = client.post(f"/emergency/stop/c{i}", json={"reason": "stop now"}, headers=olga)
        assert r.status_code == 200, r.text
    # resets are emergency actions: at most 2 per minute, on top of the general limit (oleg has 4 left)
    resets = [client.post(f"/emergency/reset/c{i}", json={"reason": "again"}, headers=oleg).status_code
              for i in range(3)]  # fmt: skip
    assert resets == [200, 200, 429]
    if with_redis:
        r = redis.Redis.from_url(redis_url)
        found = [k.decode() for k in r.scan_iter(f"{settings.redis_prefix}api:rate:*")]
        assert any(k.startswith(keys.api_rate(settings.redis_prefix, "olga", "api", 0).rsplit(":", 1)[0])
                   for k in found)  # fmt: skip


def test_counters_in_redis_are_shared_by_two_console_processes(
    sqlite_url: str,
    sqlite_store: Store,
    make_settings: Callable[..., Settings],
    redis_url: str,
) -> None:
    settings = make_settings(sqlite_url, redis_url, auth_mode="password", session_secret="shared-" + "k" * 30,
                             api_rate_limit_per_min=4)  # fmt: skip
    first, tokens = _setup(sqlite_store, settings)
    second = TestClient(create_app(settings, sqlite_store))  # another app: its own limiter, the same Redis
    h = _h(tokens["olga"])
    _clear_of_minute_edge()
    assert [c.get("/auth/whoami", headers=h).status_code for c in (first, second, first, second)] == [200] * 4
    assert second.get("/auth/whoami", headers=h).status_code == 429
    assert first.get("/auth/whoami", headers=h).status_code == 429


def test_while_redis_is_down_requests_are_counted_in_process_and_logged_once(
    sqlite_url: str,
    sqlite_store: Store,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = make_settings(sqlite_url, down, auth_mode="password", session_secret="down-" + "k" * 30,
                             api_rate_limit_per_min=3, redis_connect_timeout_s=0.5)  # fmt: skip
    client, tokens = _setup(sqlite_store, settings)
    h = _h(tokens["olga"])
    _clear_of_minute_edge()
    with caplog.at_level("WARNING", logger="observability.api.ratelimit"):
        codes = [client.get("/auth/whoami", headers=h).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # nobody is locked out, and the limit still holds
    lines = [r for r in caplog.records if "rate limit counters in process" in r.getMessage()]
    assert len(lines) == 1
