"""The promise of the take-over: a console action closes the gate in every bot process within a
second, with Redis and without, and the operator's words and hand-back instructions reach the bot.

Two real processes: a bot subprocess running the SDK (it reports every `ai_may_respond` reading
and every operator message its callback receives, with wall-clock times) and
the console side (the control service functions, called in this test process).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import subprocess_env

from observability import auth, control, keys
from observability import events as ev
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch

GATE_DEADLINE_S = 1.0

BOT_SCRIPT = r"""
import json, sys, threading, time
from observability.sdk import ObservabilityClient

conversation_id = sys.argv[1]
client = ObservabilityClient()
lock = threading.Lock()

def emit(**fields):
    fields["t"] = time.time()
    with lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

client.on_operator_message(lambda m: emit(kind="operator_message", text=m["text"], author=m["author"],
                                          conversation_id=m["conversation_id"]))
last = None
while True:  # every reading is reported, so the test can see the bot alive while a gate stays shut
    allowed = client.ai_may_respond(conversation_id)
    changed = allowed != last
    emit(kind="gate", open=allowed,
         instructions=client.handoff_instructions(conversation_id) if allowed and changed else None)
    last = allowed
    time.sleep(0.01)
"""


class Bot:
    """A bot subprocess and the lines it reports."""

    def __init__(self, tmp_path: Path, env: dict[str, str], conversation_id: str) -> None:
        script = tmp_path / "bot.py"
        script.write_text(BOT_SCRIPT)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), conversation_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:
                pass

    def wait(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None and self.lines.empty():
                raise AssertionError(
                    f"bot did not report in {timeout}s (exit code {self.proc.poll()}); "
                    f"stderr: {''.join(self.stderr)[-2000:]}"
                )
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if predicate(line):
                return line

    def gate(self, is_open: bool, timeout: float = 10.0) -> dict:
        """The first gate reading that says `is_open` (the moment the gate changed)."""
        return self.wait(lambda m: m["kind"] == "gate" and m["open"] is is_open, timeout)

    def stays_closed(self, for_s: float, min_readings: int = 20) -> None:
        """Fail unless the bot, alive and answering, reads the gate closed every time for `for_s`
        seconds from now (at least `min_readings` readings); a dead bot fails in `wait`."""
        since = time.time()
        readings = 0
        while readings < min_readings or time.time() - since < for_s:
            line = self.wait(lambda m: m["kind"] == "gate" and m["t"] >= since)
            assert line["open"] is False, f"the gate reopened {line['t'] - since:.2f}s after the check began"
            readings += 1

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(
    params=[("sqlite", False), ("postgres", False), ("sqlite", True), ("postgres", True)],
    ids=["sqlite", "postgres", "sqlite+redis", "postgres+redis"],
)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, make_settings: Callable[..., Settings], redis_prefix: str
) -> Iterator[tuple]:
    kind, with_redis = request.param
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url")
    redis_url = request.getfixturevalue("redis_url") if with_redis else None
    settings = make_settings(url, redis_url, auth_mode="password")
    store = Store.from_url(url)
    store.migrate()
    auth.create_user(store, "olga", auth.OPERATOR, "operator-password")
    auth.create_user(store, "root", auth.ADMIN, "admin-password")
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    hello = ev.message(
        uuid.uuid4().hex,
        time.time(),
        conversation_id=cid,
        role="user",
        text="Hello, I want to sell my flat",
        bot="seller",
        account_id=None,
    )
    write_batch(
        store,
        [hello],
        settings,
    )
    redis = None
    if with_redis:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(redis_url)
    env = subprocess_env(DATABASE_URL=url, REDIS_PREFIX=redis_prefix, SPOOL_DIR=str(tmp_path / "bot-spool"))
    env.pop("REDIS_URL", None)
    env.pop("CONTROL_CACHE_S", None)
    if with_redis:
        env["REDIS_URL"] = redis_url
    bot = Bot(tmp_path, env, cid)
    yield store, settings, redis, cid, bot
    bot.stop()
    if redis is not None:
        redis.close()
    store.dispose()


def _timed(action: Callable[[], object]) -> float:
    """Run a console action; return the wall-clock time it started."""
    started = time.time()
    action()
    return started


def _within_deadline(line: dict, started: float) -> bool:
    took = line["t"] - started
    print(f"gate {'opened' if line['open'] else 'closed'} after {took * 1000:.0f} ms")
    return took < GATE_DEADLINE_S


def test_take_over_closes_every_gate_within_a_second(setup: tuple) -> None:
    store, settings, redis, cid, bot = setup
    kw = {"settings": settings, "redis": redis}
    bot.gate(True, timeout=30)  # the bot is up and the AI may respond

    started = _timed(lambda: control.take_control(store, cid, "olga", "customer upset", "high", **kw))
    assert _within_deadline(bot.gate(False), started)

    control.send_operator_message(store, cid, "olga", "Hi, I'm Olga. Mail me at olga@example.com", **kw)
    got = bot.wait(lambda m: m["kind"] == "operator_message")
    assert got["conversation_id"] == cid and got["author"] == "olga"
    assert got["text"] == "Hi, I'm Olga. Mail me at [email redacted]"

    started = _timed(
        lambda: control.release_control(
            store, cid, "olga", "calmed down", "Continue with an empathetic tone", **kw
        )
    )
    reopened = bot.gate(True)
    assert _within_deadline(reopened, started)
    assert reopened["instructions"] == "Continue with an empathetic tone"


def test_emergency_stops_close_every_gate_within_a_second(setup: tuple) -> None:
    store, settings, redis, cid, bot = setup
    kw = {"settings": settings, "redis": redis}
    bot.gate(True, timeout=30)

    started = _timed(lambda: control.stop_conversation(store, cid, "olga", "abusive content", **kw))
    assert _within_deadline(bot.gate(False), started)
    started = _timed(lambda: control.reset_conversation(store, cid, "olga", "checked", **kw))
    assert _within_deadline(bot.gate(True), started)

    started = _timed(lambda: control.system_wide_stop(store, "root", "incident", control.STOP_PHRASE, **kw))
    assert _within_deadline(bot.gate(False), started)
    started = _timed(lambda: control.system_resume(store, "root", "over", control.RESUME_PHRASE, **kw))
    assert _within_deadline(bot.gate(True), started)


@pytest.mark.parametrize(
    "setup", [("sqlite", True), ("postgres", True)], ids=["sqlite+redis", "postgres+redis"], indirect=True
)
def test_a_redis_restart_does_not_reopen_a_gate(setup: tuple) -> None:
    store, settings, redis, cid, bot = setup
    assert redis is not None
    bot.gate(True, timeout=30)
    control.take_control(store, cid, "olga", "review", settings=settings, redis=redis)
    bot.gate(False)
    # Redis loses everything (a restart without persistence): the bot must fall back to the store
    redis.delete(*redis.scan_iter(keys.slotted(settings.redis_prefix, keys.CONTROL, "*")))
    redis.publish(keys.control_channel(settings.redis_prefix), json.dumps({"restart": True}))
    bot.stays_closed(for_s=1.5)
    # the worker's step re-mirrors the store; the gate stays closed and Redis is trusted again
    control.sync_gates(store, redis, settings.redis_prefix)
    assert redis.hget(keys.control_conversations(settings.redis_prefix), cid) == b"human"
    bot.stays_closed(for_s=1.0)
