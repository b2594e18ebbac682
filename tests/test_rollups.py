"""Rollups tell the same story as the raw rows.

Per-minute and per-hour rollups hold exactly the counts and sums of the raw rows they cover, and
their latency sketches give percentiles within 1% of `numpy.percentile` over the raw values, on
both stores. A late event re-dirties its minute and is included at the next run; a replayed batch
changes nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from observability import events as ev
from observability.analytics.accounts import account_llm_usage
from observability.analytics.llm_observability import LLMObservabilityService
from observability.store import Store, rollups, schema
from observability.store.ingest import write_batch
from observability.store.sketch import merge_all
from observability.timeutil import floor_day, floor_hour, floor_minute, to_epoch

START = datetime(2026, 1, 5, 10, 30)  # naive UTC
SPAN_S = 150 * 60  # two and a half hours: three hours and two rollup chunks are touched
MODELS = [
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-flash", "google"),
]
BOTS = ["lead", "buyer", None]
OPS = ["qualify", "search", "reply"]
QS = [50, 90, 95, 99]


def make_events(rng: np.random.Generator, n: int) -> list[list]:
    offsets = rng.uniform(0, SPAN_S, n)
    lat = rng.lognormal(mean=5.5, sigma=1.0, size=n)
    out = []
    for i in range(n):
        ts = to_epoch(START) + float(offsets[i])
        model, provider = MODELS[i % 3]
        bot = BOTS[(i // 3) % 3]
        it = int(rng.integers(50, 5000))
        cr = int(rng.integers(0, it)) if i % 4 == 0 else 0
        out.append(["llm", uuid.uuid4().hex, ts, bot, "agent-a" if i % 2 else None, None, model, provider,
                    it, int(rng.integers(10, 800)), cr, 0, float(lat[i]), i % 9 == 0, None, None,
                    i % 13 != 0, None if i % 13 else "APIError"])  # fmt: skip
        out.append(["op", uuid.uuid4().hex, ts, bot or "seller", OPS[i % 3], float(lat[i]) / 3, i % 11 != 0,
                    i % 5 == 0, None])  # fmt: skip
    return out


def ingest(store: Store, events: list[list]) -> None:
    for i in range(0, len(events), 2000):
        result = write_batch(store, events[i : i + 2000])
        assert result.rejected == 0


def raw_llm(store: Store) -> list:
    t = schema.llm_calls
    with store.connect() as conn:
        return conn.execute(
            sa.select(
                t.c.ts,
                t.c.model,
                t.c.provider,
                t.c.bot,
                t.c.agent,
                t.c.success,
                t.c.cache_hit,
                t.c.latency_ms,
                t.c.input_tokens,
                t.c.output_tokens,
                t.c.cache_read_tokens,
                t.c.cache_write_tokens,
                t.c.cost_usd,
                t.c.cost_saved_usd,
            )  # fmt: skip
        ).all()


def expected_llm(raw: list, bucket_of) -> dict:  # noqa: ANN001
    acc: dict[tuple, dict] = {}
    for r in raw:
        key = (bucket_of(r.ts), r.model, r.provider, r.bot or "", r.agent or "")
        a = acc.setdefault(key, defaultdict(float, lat=[]))
        a["count"] += 1
        a["errors"] += not r.success
        a["cache_hits"] += r.cache_hit
        a["sum_ms"] += r.latency_ms
        a["lat"].append(r.latency_ms)
        for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
                  "cost_saved_usd"):  # fmt: skip
            a[c] += getattr(r, c)
        a["cost_sq_usd"] += r.cost_usd * r.cost_usd
    return acc


def rollup_rows(store: Store, table: sa.Table) -> dict[tuple, dict]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(table)).all()
    keys = [c.name for c in table.primary_key.columns]
    return {tuple(r._mapping[k] for k in keys): dict(r._mapping) for r in rows}


def assert_llm_rollups_match(store: Store, table: sa.Table, bucket_of) -> None:  # noqa: ANN001
    want = expected_llm(raw_llm(store), bucket_of)
    got = rollup_rows(store, table)
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g["count"], g["errors"], g["cache_hits"]) == (w["count"], w["errors"], w["cache_hits"]), key
        for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            assert g[c] == w[c], (key, c)
        for c in ("sum_ms", "cost_usd", "cost_saved_usd", "cost_sq_usd"):
            assert g[c] == pytest.approx(w[c], rel=1e-9, abs=1e-12), (key, c)
        assert g["min_ms"] == min(w["lat"]) and g["max_ms"] == max(w["lat"])
        assert sum(int(v) for v in g["sketch"].values()) == w["count"]


@pytest.fixture
def loaded(store: Store) -> tuple[Store, list[list]]:
    events = make_events(np.random.default_rng(7), 6000)
    ingest(store, events)
    assert rollups.run(store) > 0
    return store, events


def test_minute_and_hour_rollups_equal_the_raw_counts_and_sums(loaded: tuple[Store, list[list]]) -> None:
    store, events = loaded
    assert_llm_rollups_match(store, schema.rollup_llm_minute, floor_minute)
    assert_llm_rollups_match(store, schema.rollup_llm_hour, floor_hour)
    assert_llm_rollups_match(store, schema.rollup_llm_day, floor_day)
    # operations: counts, errors, cache hits, sums per (bucket, bot, operation)
    ops = [e for e in events if e[0] == "op"]
    for table, bucket_of in ((schema.rollup_ops_minute, floor_minute), (schema.rollup_ops_hour, floor_hour),
                             (schema.rollup_ops_day, floor_day)):  # fmt: skip
        want: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0.0])
        for e in ops:
            w = want[(bucket_of(datetime(1970, 1, 1) + timedelta(seconds=e[2])), e[3], e[4])]
            w[0] += 1
            w[1] += not e[6]
            w[2] += e[7]
            w[3] += e[5]
        got = rollup_rows(store, table)
        assert set(got) == set(want)
        for key, (n, errors, hits, total) in want.items():
            g = got[key]
            assert (g["count"], g["errors"], g["cache_hits"]) == (n, errors, hits), key
            assert g["sum_ms"] == pytest.approx(total, rel=1e-9)
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.rollup_dirty)).scalar() == 0


def test_sketch_percentiles_are_within_one_percent_of_numpy(loaded: tuple[Store, list[list]]) -> None:
    store, events = loaded
    lat = np.array([e[12] for e in events if e[0] == "llm"])
    ops_by_key: dict[tuple, list[float]] = defaultdict(list)
    for e in events:
        if e[0] == "op":
            ops_by_key[(e[3], e[4])].append(e[5])
    for table in (schema.rollup_llm_minute, schema.rollup_llm_hour, schema.rollup_llm_day):
        with store.connect() as conn:
            sketch = merge_all(conn.execute(sa.select(table.c.sketch)).scalars())
        for q, got in zip(QS, sketch.quantiles([q / 100 for q in QS]), strict=True):
            want = float(np.percentile(lat, q))
            assert abs(got - want) <= 0.01 * want, (table.name, q, got, want)
    t = schema.rollup_ops_hour
    for (bot, op), values in ops_by_key.items():
        with store.connect() as conn:
            sketch = merge_all(
                conn.execute(sa.select(t.c.sketch).where(t.c.bot == bot, t.c.operation == op)).scalars()
            )
        for q, got in zip(QS, sketch.quantiles([q / 100 for q in QS]), strict=True):
            want = float(np.percentile(values, q))
            assert abs(got - want) <= 0.01 * want, (bot, op, q, got, want)


def test_a_late_event_redirties_its_minute_and_a_replayed_batch_changes_nothing(
    loaded: tuple[Store, list[list]],
) -> None:
    store, events = loaded
    minute = START + timedelta(minutes=7)
    key = (minute, "claude-sonnet-4-5", "anthropic", "lead", "")
    hour_key = (floor_hour(minute), *key[1:])
    before = rollup_rows(store, schema.rollup_llm_minute).get(key, {"count": 0, "sum_ms": 0.0})
    hour_before = rollup_rows(store, schema.rollup_llm_hour)[hour_key]
    day_before = rollup_rows(store, schema.rollup_llm_day)[(floor_day(minute), *key[1:])]

    late = ["llm", "late-one", to_epoch(minute) + 30.25, "lead", None, None, "claude-sonnet-4-5", "anthropic",
            100, 10, 0, 0, 12345.0, False, None, None, False, "Late"]  # fmt: skip
    ingest(store, [late])
    assert rollups.run(store) == 1, "only the late event's minute is recomputed"
    after = rollup_rows(store, schema.rollup_llm_minute)[key]
    assert after["count"] == before["count"] + 1
    assert after["sum_ms"] == pytest.approx(before["sum_ms"] + 12345.0)
    assert after["max_ms"] == 12345.0
    hour_after = rollup_rows(store, schema.rollup_llm_hour)[hour_key]
    assert hour_after["count"] == hour_before["count"] + 1
    assert hour_after["errors"] == hour_before["errors"] + 1
    day_key = (floor_day(minute), *key[1:])
    assert rollup_rows(store, schema.rollup_llm_day)[day_key]["count"] == day_before["count"] + 1

    snapshot = [rollup_rows(store, t) for t in ROLLUP_TABLES]
    ingest(store, events[:3000] + [late])  # delivered again: stored once, rolled up once
    rollups.run(store)
    for table, before_rows in zip(ROLLUP_TABLES, snapshot, strict=True):
        assert_same_rollups(rollup_rows(store, table), before_rows)
    assert_llm_rollups_match(store, schema.rollup_llm_minute, floor_minute)


ROLLUP_TABLES = (
    schema.rollup_llm_minute,
    schema.rollup_llm_hour,
    schema.rollup_llm_day,
    schema.rollup_ops_minute,
    schema.rollup_ops_hour,
    schema.rollup_ops_day,
)


def assert_same_rollups(got: dict, want: dict) -> None:
    """Equal, floats to the last few bits (a database may add them up in another order)."""
    assert set(got) == set(want)
    for key, w in want.items():
        for col, value in w.items():
            if isinstance(value, float):
                assert got[key][col] == pytest.approx(value, rel=1e-12, abs=1e-15), (key, col)
            else:
                assert got[key][col] == value, (key, col)


# ---- per account and unpriced calls --------------------------------------------------------------

ACCOUNTS = ["acct-a", "acct-b"]


def account_events(rng: np.random.Generator, n: int) -> list[list]:
    """Messages that give four conversations their accounts, one conversation without an account,
    and LLM calls over two days in them (a few with a model the price table does not know)."""
    base = to_epoch(START)
    out = [ev.message(f"m{i}", base - 60, conversation_id=f"c{i}", role="user", text="hi", bot="lead",
                      account_id=ACCOUNTS[i % 2] if i < 4 else None) for i in range(5)]  # fmt: skip
    offsets = rng.uniform(0, 2 * 86_400, n)
    lat = rng.lognormal(mean=6.0, sigma=0.8, size=n)
    for i in range(n):
        model, provider = ("mystery-model", "nowhere") if i % 17 == 0 else MODELS[i % 2]
        out.append(ev.llm_call(
            uuid.uuid4().hex, base + float(offsets[i]), bot="lead", agent=None, decision_type=None, model=model,
            provider=provider, input_tokens=int(rng.integers(50, 5000)), output_tokens=int(rng.integers(10, 800)),
            cache_read_tokens=0, cache_write_tokens=0, latency_ms=float(lat[i]), cache_hit=False, cost_usd=None,
            conversation_id=f"c{i % 6}" if i % 6 < 5 else None, success=i % 13 != 0, error_type=None,
        ))  # fmt: skip
    return out


def test_an_accounts_usage_from_the_rollup_equals_its_calls(store: Store) -> None:
    """Calls, errors, tokens and spend exact, percentiles within 1%, whichever way the window is read;
    calls without a conversation or whose conversation has no account count for no account."""
    ingest(store, account_events(np.random.default_rng(11), 3000))
    assert rollups.run(store) > 0
    llm, conv = schema.llm_calls, schema.conversations
    now = START + timedelta(days=2, hours=1, minutes=7, seconds=30)  # partial hours and minutes at both edges
    for account in ACCOUNTS:
        for window, start in (("24h", now - timedelta(hours=24)), ("7d", now - timedelta(days=7)),
                              ("6h", now - timedelta(hours=6))):  # fmt: skip
            with store.connect() as c:
                rows = c.execute(
                    sa.select(llm.c.latency_ms, llm.c.success, llm.c.cost_usd, llm.c.input_tokens)
                    .select_from(llm.join(conv, conv.c.id == llm.c.conversation_id))
                    .where(conv.c.account_id == account, llm.c.ts >= start, llm.c.ts < now)
                ).all()  # fmt: skip
            got = account_llm_usage(store, account, window, now=now)
            assert got.calls == len(rows) > 0
            assert got.errors == sum(not r.success for r in rows)
            assert got.input_tokens == sum(r.input_tokens for r in rows)
            assert got.cost_usd == pytest.approx(sum(r.cost_usd for r in rows), rel=1e-9)
            assert got.source == ("raw" if window == "6h" else "rollup")
            want = float(np.percentile([r.latency_ms for r in rows], 95))
            tolerance = 1e-9 if window == "6h" else 0.01
            assert got.p95_latency_ms == pytest.approx(want, rel=tolerance), (account, window)
    with store.connect() as c:
        total = c.execute(sa.select(sa.func.sum(schema.rollup_account_hour.c.calls))).scalar()
        assert c.execute(sa.select(sa.func.sum(schema.rollup_account_day.c.calls))).scalar() == total
        linked = c.execute(
            sa.select(sa.func.count()).select_from(llm.join(conv, conv.c.id == llm.c.conversation_id))
            .where(conv.c.account_id.is_not(None))
        ).scalar()  # fmt: skip
    assert total == linked


def test_unknown_model_calls_read_from_the_rollup_equal_the_raw_calls(store: Store) -> None:
    ingest(store, account_events(np.random.default_rng(12), 2000))
    now = START + timedelta(days=2, hours=1, minutes=7, seconds=30)
    service = LLMObservabilityService(store)
    before_rollup = service.unknown_model_calls(7 * 86_400, now=now)  # every minute dirty: read raw
    assert rollups.run(store) > 0
    with store.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(schema.rollup_unpriced_hour)).scalar() > 0
    after = service.unknown_model_calls(7 * 86_400, now=now)
    assert after == before_rollup
    assert [(r["model"], r["calls"]) for r in after] == [("mystery-model", 118)]
    day = service.unknown_model_calls(86_400, now=now)
    t = schema.llm_calls
    with store.connect() as c:
        n = c.execute(
            sa.select(sa.func.count()).where(t.c.price_known == sa.false(), t.c.ts >= now - timedelta(days=1),
                                             t.c.ts < now)
        ).scalar()  # fmt: skip
    assert day[0]["calls"] == n
