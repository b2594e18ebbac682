"""The demo simulator: a realistic mix in a backfill, incidents that breach SLAs, determinism,
the phrase bank, live mode through the SDK (gate respected, SIGTERM honoured)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from support import ROOT, subprocess_env, wait_for

from observability import events as ev
from observability.demo import simulate
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.timeutil import to_epoch, utcnow

END = to_epoch(datetime(2025, 6, 2, 15, 30))  # a fixed end: the same rows on every run
HOURS = 5
SEED = 11
# the SLA table of source doc 000: (bot, operation) -> p95 target in ms
SLA_P95 = {
    ("lead_bot", "full_qualification"): 2000, ("lead_bot", "process"): 1500, ("lead_bot", "handoff"): 500,
    ("buyer_bot", "full_qualification"): 2500, ("buyer_bot", "process"): 1800, ("buyer_bot", "handoff"): 500,
    ("seller_bot", "full_qualification"): 2500, ("seller_bot", "process"): 1800, ("seller_bot", "handoff"): 500,
    ("handoff", "execute"): 500,
}  # fmt: skip
# resolution patterns of source doc 000 (and the obvious short forms)
RESOLVED = re.compile(
    r"thank you|thanks|goodbye|\bbye\b|appreciate|helpful|perfect|scheduled|great help|that's all", re.I
)


def rows(store: Store, sql: str, **params: object) -> list[tuple]:
    with store.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def scalar(store: Store, sql: str, **params: object) -> object:
    return rows(store, sql, **params)[0][0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, simulate.BackfillResult]]:
    """Three hours of demo history in a fresh SQLite store (shared by the read-only tests)."""
    path = tmp_path_factory.mktemp("demo") / "store.db"
    store = Store.from_url(f"sqlite:///{path}")
    store.migrate()
    settings = Settings().replace(database_url=store.url)
    result = simulate.backfill(store, HOURS, seed=SEED, end=END, settings=settings)
    yield store, result
    store.dispose()


def test_backfill_writes_every_kind_without_rejects(demo: tuple) -> None:
    store, result = demo
    assert result.rejected == 0
    for kind in ev.FIELDS:
        assert result.counts[kind] > 0, kind
    assert result.events > 40_000  # ~5 events/s on average, fewer at night
    assert scalar(store, "SELECT count(*) FROM rollup_llm_minute") > 0
    assert scalar(store, "SELECT count(*) FROM rollup_ops_minute") > 0
    assert scalar(store, "SELECT count(*) FROM rollup_dirty") == 0
    first, last = rows(store, "SELECT min(ts), max(ts) FROM llm_calls")[0]
    span_h = (to_epoch(_dt(last)) - to_epoch(_dt(first))) / 3600
    assert HOURS - 0.1 < span_h <= HOURS and to_epoch(_dt(last)) < END


def _dt(value: object) -> datetime:  # SQLite returns text for raw SQL
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def test_llm_calls_look_real(demo: tuple) -> None:
    store, _ = demo
    models = dict(rows(store, "SELECT model, provider FROM llm_calls GROUP BY model, provider"))
    assert len(models) >= 4
    assert models["gemini-2.5-flash"] == "google"
    assert {"claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5"} <= set(models)
    assert {p for m, p in models.items() if m.startswith("claude")} == {"anthropic"}
    assert {b for (b,) in rows(store, "SELECT DISTINCT bot FROM llm_calls")} == set(simulate.BOTS)
    agents = {a for (a,) in rows(store, "SELECT DISTINCT agent FROM llm_calls")}
    assert {"qualifier", "property_matcher", "pricing_analyst", "scheduler", "summarizer"} <= agents
    assert len({d for (d,) in rows(store, "SELECT DISTINCT decision_type FROM llm_calls")}) >= 8
    n, hits, reads, writes, bad_cache, unknown = rows(store, """
        SELECT count(*), sum(cache_hit), sum(cache_read_tokens > 0), sum(cache_write_tokens > 0),
               sum(cache_read_tokens + cache_write_tokens > input_tokens), sum(NOT price_known)
        FROM llm_calls""")[0]  # fmt: skip
    assert 0.03 < hits / n < 0.3  # response-cache hits
    assert reads / n > 0.3 and writes > 0 and bad_cache == 0 and unknown == 0
    errors = dict(rows(store, "SELECT error_type, count(*) FROM llm_calls WHERE NOT success GROUP BY 1"))
    assert errors.get("rate_limit", 0) > 0 and len(errors) >= 3
    assert scalar(store, "SELECT sum(cost_usd) FROM llm_calls WHERE success AND NOT cache_hit") > 0
    assert scalar(store, "SELECT max(cost_usd) FROM llm_calls WHERE NOT success OR cache_hit") == 0
    # latency: log-normal per model, Opus slower than Haiku
    lat = {m: [r[0] for r in rows(store, "SELECT latency_ms FROM llm_calls WHERE model = :m AND success "
                                         "AND NOT cache_hit", m=m)] for m in models}  # fmt: skip
    assert np.median(lat["claude-opus-4-6"]) > 2 * np.median(lat["claude-haiku-4-5"])
    in_tokens = [r[0] for r in rows(store, "SELECT input_tokens FROM llm_calls")]
    assert 500 < np.median(in_tokens) < 20_000


def test_operations_interactions_and_handoffs(demo: tuple) -> None:
    store, result = demo
    ops = {(b, o) for b, o in rows(store, "SELECT DISTINCT bot, operation FROM bot_operations")}
    assert ops == set(SLA_P95)
    assert scalar(store, "SELECT count(*) FROM bot_operations WHERE NOT success") > 0
    hit_rate = scalar(store, "SELECT avg(cache_hit) FROM bot_interactions")
    assert 0.6 < hit_rate < 0.85  # the low_cache_hit_rate rule wants >= 50 %
    assert {b for (b,) in rows(store, "SELECT DISTINCT bot FROM bot_interactions")} == set(simulate.BOTS)
    blocked = rows(store, "SELECT source, target, success, reason FROM handoffs WHERE blocked")
    assert blocked and all("circular" in reason for _, _, _, reason in blocked)
    pairs = {(s, t) for s, t in rows(store, "SELECT source, target FROM handoffs WHERE NOT blocked")}
    assert {("lead_bot", "buyer_bot"), ("lead_bot", "seller_bot")} <= pairs
    assert scalar(store, "SELECT count(*) FROM handoffs WHERE NOT success AND NOT blocked") > 0
    # outside handoff storms handoffs mostly work (the handoff_failure rule wants >= 95%)
    storms = [i for i in result.incidents if i.kind == "handoff_storm"]
    calm = [ok for ts, ok in rows(store, "SELECT ts, success FROM handoffs")
            if not any(i.start <= to_epoch(_dt(ts)) < i.end + 120 for i in storms)]  # fmt: skip
    assert np.mean(calm) > 0.95


def test_accounts_conversations_and_messages(demo: tuple) -> None:
    store, _ = demo
    n, vips = rows(store, "SELECT count(*), sum(vip) FROM accounts")[0]
    assert n == simulate.ACCOUNTS and 0.1 <= vips / n <= 0.2
    assert scalar(store, "SELECT count(*) FROM messages WHERE role = 'operator'") == 0
    assert scalar(store, "SELECT count(*) FROM messages WHERE account_id IS NULL") == 0
    assert scalar(store, "SELECT count(DISTINCT text) FROM messages") > 1000  # a varied phrase bank
    assert scalar(store, """SELECT count(*) FROM conversations c JOIN accounts a ON a.id = c.account_id
                            WHERE a.vip""") > 0  # fmt: skip
    convs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for conv, role, text in rows(store, "SELECT conversation_id, role, text FROM messages ORDER BY ts"):
        convs[conv].append((role, text))
    assert len(convs) > 300
    resolved = [c for c, msgs in convs.items() if any(RESOLVED.search(t) for _, t in msgs[-3:])]
    assert 0.15 < len(resolved) / len(convs) < 0.6  # resolved ones end with thanks/goodbye/scheduled
    assert all(msgs[0][0] == "user" for msgs in convs.values())
    roles = Counter(role for msgs in convs.values() for role, _ in msgs)
    assert roles["bot"] > 0.8 * roles["user"]
    texts = " ".join(t for msgs in convs.values() for _, t in msgs).lower()
    for word in ("mortgage", "viewing", "valuation", "listing", "schools", "price", "frustrat", "love"):
        assert word in texts, word
    assert "[email redacted]" in texts  # PII in customer messages is redacted at ingest


def test_ai_confidence_and_safety_score_per_bot_reply(demo: tuple) -> None:
    store, _ = demo
    replies = scalar(store, "SELECT count(*) FROM messages WHERE role = 'bot'")
    for name in ("ai_confidence", "safety_score"):
        n, lo, hi, mean, orphans = rows(store, """
            SELECT count(*), min(value), max(value), avg(value),
                   sum(conversation_id IS NULL OR account_id IS NULL)
            FROM system_metrics WHERE metric_name = :name""", name=name)[0]  # fmt: skip
        assert n == replies and orphans == 0 and 0 <= lo and hi <= 1, name
    assert (
        0.78
        < scalar(store, "SELECT avg(value) FROM system_metrics WHERE metric_name = 'ai_confidence'")
        < 0.92
    )
    assert 0.9 < scalar(store, "SELECT avg(value) FROM system_metrics WHERE metric_name = 'safety_score'") < 1


def test_activity_events_are_varied(demo: tuple) -> None:
    store, _ = demo
    types = {t for (t,) in rows(store, "SELECT DISTINCT event_type FROM activity_events")}
    assert {"vip_conversation", "handoff_blocked", "low_confidence", "latency_degraded", "error_spike",
            "recovered"} <= types  # fmt: skip
    severities = {s for (s,) in rows(store, "SELECT DISTINCT severity FROM activity_events")}
    assert severities == {"low", "medium", "high", "critical"}
    assert len({c for (c,) in rows(store, "SELECT DISTINCT category FROM activity_events")}) >= 5


def _windows(store: Store, sql: str, seconds: int) -> dict[tuple, list]:
    """Values of `sql` (ts, *key, value) grouped by (window, *key)."""
    out: dict[tuple, list] = defaultdict(list)
    for ts, *key, value in rows(store, sql):
        out[(int(to_epoch(_dt(ts)) // seconds), *key)].append(value)
    return out


def test_incidents_breach_slas_and_error_rates_but_calm_periods_do_not(demo: tuple) -> None:
    store, result = demo
    assert {"slow", "error_burst", "rate_limit"} <= {i.kind for i in result.incidents}
    slow = next(i for i in reversed(result.incidents) if i.kind == "slow")
    assert slow.start < END < slow.end  # the last hour shows a breach, still under way at the end

    durations = _windows(store, "SELECT ts, bot, operation, duration_ms FROM bot_operations", 900)
    p95 = {k: np.percentile(v, 95) for k, v in durations.items() if len(v) >= 30}
    breaches = {k for k, v in p95.items() if v > SLA_P95[k[1:]]}
    assert any(k[1] == slow.bot for k in breaches), "the slow period breaches no SLA"
    assert len(breaches) < 0.2 * len(p95), "SLA breached most of the time"
    # breaches happen during incidents (slow periods, timeouts of error bursts), not by chance
    assert all(any(i.start - 900 <= k[0] * 900 <= i.end for i in result.incidents) for k in breaches)

    failed = {
        k: 1 - np.mean(v) for k, v in _windows(store, "SELECT ts, success FROM bot_interactions", 300).items()
    }
    assert max(failed.values()) > 0.05  # the high_error_rate rule (> 5 %) fires
    assert np.median(list(failed.values())) < 0.02  # a typical window is calm
    errors = _windows(store, "SELECT ts, coalesce(error_type, '') FROM llm_calls", 300)
    assert (
        max(np.mean([e == "rate_limit" for e in v]) for v in errors.values()) > 0.1
    )  # rate_limit_breach fires


def test_backfill_is_deterministic_with_a_seed(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> dict[str, list]:
        store = Store.from_url(f"sqlite:///{tmp_path / name}")
        store.migrate()
        simulate.backfill(store, 0.5, seed=seed, end=END, settings=Settings().replace(database_url=store.url))
        out = {t.name: rows(store, f"SELECT * FROM {t.name} ORDER BY 1, 2") for t in schema.RAW_EVENT_TABLES}
        out["accounts"] = rows(store, "SELECT id, name, vip FROM accounts ORDER BY id")
        store.dispose()
        return out

    a, b, c = run("a.db", 5), run("b.db", 5), run("c.db", 6)
    assert a == b
    assert a["llm_calls"] and a["messages"] != c["messages"]


def test_phrase_bank_only_closings_say_goodbye() -> None:
    data = json.loads(simulate.PHRASES_FILE.read_text())
    slots = set(data["slots"])

    def strings(node: object, path: str = "") -> Iterator[tuple[str, str]]:
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            for k, v in node.items():
                if not k.startswith("_"):
                    yield from strings(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from strings(v, f"{path}/{i}")

    for path, text in strings(data):
        if not path.startswith("/accounts"):
            assert set(re.findall(r"\{(\w+)\}", text)) <= slots, (path, text)
        if "/resolved_" not in path and not path.startswith("/slots") and not path.startswith("/accounts"):
            assert not RESOLVED.search(text), (path, text)
    for topic in ("buying", "selling", "pricing", "mortgage", "viewings", "neighbourhoods"):
        assert len(data["topics"][topic]) >= 6
    closing = [t for p, t in strings(data) if "/resolved_" in p]
    assert closing and all(RESOLVED.search(t) for t in closing)


class GatedClient(ObservabilityClient):
    """A real client whose gate is closed for some conversations (as if a human held them)."""

    def ai_may_respond(self, conversation_id: str) -> bool:
        return int(conversation_id[-1], 16) % 2 == 1


class SteppingClock:
    """A clock that moves half a second each time it is read: the live loop then streams the same
    stretch of simulated time however slow the machine is, and never waits for real."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_live_mode_records_through_the_sdk_and_respects_the_gate(sqlite_store: Store, make_settings) -> None:  # noqa: ANN001
    client = GatedClient(settings=make_settings(sqlite_store.url))
    stats = simulate.run_live(client, seed=3, rate=150, duration_s=4.0, clock=SteppingClock(time.time()))
    assert client.flush(10)
    client.close()
    assert stats.replies > 0 and stats.skipped_replies > 0
    closed = "substr(conversation_id, -1) IN ('0','2','4','6','8','a','c','e')"
    by_role = dict(rows(sqlite_store, f"SELECT role, count(*) FROM messages WHERE {closed} GROUP BY role"))
    assert by_role.get("user", 0) > 0 and "bot" not in by_role
    assert scalar(sqlite_store, f"SELECT count(*) FROM llm_calls WHERE {closed}") == 0
    assert scalar(sqlite_store, f"SELECT count(*) FROM system_metrics WHERE {closed}") == 0
    assert scalar(sqlite_store, "SELECT count(*) FROM messages WHERE role = 'bot'") > 0
    assert scalar(sqlite_store, "SELECT count(*) FROM accounts") == simulate.ACCOUNTS


def test_live_send_stores_what_a_backfill_stores(tmp_path: Path, make_settings) -> None:  # noqa: ANN001
    """Every kind of wire event recorded through the SDK gives the same row as written directly."""
    sim = simulate.Simulator(21, anchor=END)
    events = sim.account_events(END) + [e for t in range(40) for a in sim.conversation(END + t)
                                        for e in a.events]  # fmt: skip
    assert {e[0] for e in events} == set(ev.FIELDS)
    direct, via_sdk = (Store.from_url(f"sqlite:///{tmp_path / n}") for n in ("direct.db", "sdk.db"))
    for s in (direct, via_sdk):
        s.migrate()
    write_batch(direct, events, Settings().replace(database_url=direct.url))
    client = ObservabilityClient(settings=make_settings(via_sdk.url))
    for e in events:
        simulate.send(client, e)
    assert client.flush(10)
    client.close()
    assert client.stats()["rejected"] == 0
    for table in schema.RAW_EVENT_TABLES:
        cols = [c.name for c in table.columns if c.name not in ("id", "trace_id", "ts")]
        sql = f"SELECT {', '.join(cols)} FROM {table.name}"
        assert sorted(map(repr, rows(direct, sql))) == sorted(map(repr, rows(via_sdk, sql))), table.name
    direct.dispose()
    via_sdk.dispose()


def test_live_subprocess_streams_honours_system_stop_and_sigterm(sqlite_url: str, tmp_path: Path) -> None:
    env = subprocess_env(DATABASE_URL=sqlite_url, SPOOL_DIR=str(tmp_path / "spool"), REDIS_URL="")
    proc = subprocess.Popen(
        [sys.executable, "-m", "observability.simulate", "--rate", "40", "--seed", "3"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    store = Store.from_url(sqlite_url)

    def count(sql: str, **params: object) -> int:
        try:
            return scalar(store, sql, **params)
        except sa.exc.OperationalError:  # schema not there yet
            return 0

    try:
        wait_for(lambda: count("SELECT count(*) FROM llm_calls") or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        # an operator stops every conversation: the bots go quiet, customers keep writing
        with store.begin() as conn:
            conn.execute(sa.insert(schema.control_state).values(
                key="system_stop", value={"stopped": True, "reason": "test"}, updated_by="test",
                updated_at=utcnow()))  # fmt: skip
        stopped_at = to_epoch(utcnow())
        after = stopped_at + 2.0  # the gate caches its answer for at most CONTROL_CACHE_S
        user_after = "SELECT count(*) FROM messages WHERE role = 'user' AND ts > :t"
        wait_for(lambda: count(user_after, t=_naive(after)) >= 5, timeout=30, message="customers went quiet")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped:" in out
    by_role = dict(
        rows(store, "SELECT role, count(*) FROM messages WHERE ts > :t GROUP BY role", t=_naive(after))
    )
    assert by_role.get("user", 0) > 0 and "bot" not in by_role, by_role
    assert scalar(store, "SELECT count(*) FROM llm_calls WHERE ts > :t", t=_naive(after)) == 0
    skipped = int(re.search(r"([\d,]+) skipped", out).group(1).replace(",", ""))
    assert skipped > 0
    store.dispose()


def _naive(epoch: float) -> str:
    from observability.timeutil import from_epoch

    return from_epoch(epoch).isoformat(sep=" ")
