"""LLMObservabilityService: cost by model, bot, agent, conversation and day; latency reports; SLA,
error rate and alert strings; the dashboard with cache savings; series; budget forecast."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from observability.analytics.llm_observability import LLMObservabilityService
from observability.settings import get_settings
from observability.store import Store, pricing, rollups, schema
from observability.store.ingest import write_batch
from observability.store.sqlhelpers import as_datetime
from observability.timeutil import to_epoch

NOW = datetime(2026, 3, 10, 12, 34, 56)


def call(ts: datetime, *, model: str = "claude-sonnet-4-5", provider: str = "anthropic", bot: str | None = "lead_bot",
         agent: str | None = "qualifier", inp: int = 1000, out: int = 100, read: int = 0, write: int = 0,
         ms: float = 500.0, hit: bool = False, cost: float | None = None, conv: str | None = "c1", ok: bool = True,
         err: str | None = None) -> list:  # fmt: skip
    return ["llm", uuid.uuid4().hex, to_epoch(ts), bot, agent, "qualify", model, provider, inp, out, read, write,
            float(ms), hit, cost, conv, ok, err]  # fmt: skip


@pytest.fixture
def priced(store: Store):
    """Calls with caller-supplied costs spread over three days (easy sums by hand)."""
    events = [
        call(NOW - timedelta(minutes=10), model="claude-sonnet-4-5", bot="lead_bot", agent="qualifier", cost=1.0, conv="c1"),
        call(NOW - timedelta(minutes=20), model="claude-sonnet-4-5", bot="buyer_bot", agent="matcher", cost=2.0, conv="c2"),
        call(NOW - timedelta(hours=5), model="claude-haiku-4-5", bot="buyer_bot", agent="matcher", cost=0.25, conv="c2"),
        call(NOW - timedelta(days=1, hours=1), model="claude-haiku-4-5", bot=None, agent=None, cost=0.5, conv=None),
        call(NOW - timedelta(days=2, hours=13), model="claude-opus-4-6", bot="seller_bot", agent="writer", cost=4.0,
             conv="c3"),
    ]  # fmt: skip
    write_batch(store, events)
    rollups.run(store)
    return store


def test_cost_by_model_bot_agent_and_provider_by_hand(priced: Store) -> None:
    svc = LLMObservabilityService(priced)
    assert svc.cost_by_model(now=NOW) == pytest.approx({"claude-opus-4-6": 4.0, "claude-sonnet-4-5": 3.0,
                                                        "claude-haiku-4-5": 0.75})  # fmt: skip
    assert list(svc.cost_by_model(now=NOW)) == ["claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5"]
    assert svc.cost_by_model(86_400, now=NOW) == pytest.approx(
        {"claude-sonnet-4-5": 3.0, "claude-haiku-4-5": 0.25}
    )
    assert svc.cost_by_bot(now=NOW) == pytest.approx({"seller_bot": 4.0, "buyer_bot": 2.25, "lead_bot": 1.0,
                                                      None: 0.5})  # fmt: skip
    assert svc.cost_by_agent(now=NOW) == pytest.approx(
        {"writer": 4.0, "matcher": 2.25, "qualifier": 1.0, None: 0.5}
    )
    assert svc.cost_by_provider(now=NOW) == pytest.approx({"anthropic": 7.75})
    rows = svc.cost_breakdown(("bot", "model"), 86_400, now=NOW)
    assert [(r["bot"], r["model"], r["requests"]) for r in rows] == [
        ("buyer_bot", "claude-sonnet-4-5", 1),
        ("lead_bot", "claude-sonnet-4-5", 1),
        ("buyer_bot", "claude-haiku-4-5", 1),
    ]
    assert sum(r["share_of_cost"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["cost_per_request"] == pytest.approx(2.0) and rows[0]["input_tokens"] == 1000
    with pytest.raises(ValueError):
        svc.cost_breakdown("conversation_id", now=NOW)


def test_cost_by_conversation_and_day(priced: Store) -> None:
    svc = LLMObservabilityService(priced)
    assert svc.cost_by_conversation(now=NOW) == pytest.approx({"c2": 2.25, "c1": 1.0})
    assert list(svc.cost_by_conversation(7 * 86_400, now=NOW)) == ["c3", "c2", "c1"]
    assert svc.cost_by_conversation(7 * 86_400, limit=1, now=NOW) == pytest.approx({"c3": 4.0})
    days = svc.cost_by_day(4, now=NOW)
    # 2 days 13 hours before 12:34 on the 10th is 23:34 on the 7th
    assert days == pytest.approx({date(2026, 3, 7): 4.0, date(2026, 3, 8): 0.0, date(2026, 3, 9): 0.5,
                                  date(2026, 3, 10): 3.25})  # fmt: skip
    with pytest.raises(ValueError):
        svc.cost_by_day(0, now=NOW)


def test_costs_are_exact_before_rollups_catch_up(store: Store) -> None:
    write_batch(store, [call(NOW - timedelta(days=1, minutes=m), cost=0.5) for m in range(6)])
    svc = LLMObservabilityService(store)  # no rollups.run: every minute is dirty and read raw
    assert svc.cost_by_model(now=NOW) == pytest.approx({"claude-sonnet-4-5": 3.0})
    rollups.run(store)
    assert svc.cost_by_model(now=NOW) == pytest.approx({"claude-sonnet-4-5": 3.0})


def test_latency_report_exact_under_a_day_and_within_one_percent_above(store: Store) -> None:
    rng = np.random.default_rng(9)
    n = 2500
    offsets = rng.uniform(0, 3 * 86_400, n)
    offsets[:400] = rng.uniform(0, 3600, 400)
    models = rng.choice(["claude-sonnet-4-5", "claude-haiku-4-5"], n)
    ms = rng.lognormal(7, 0.6, n)
    write_batch(store, [call(NOW - timedelta(seconds=float(offsets[i])), model=str(models[i]), ms=float(ms[i]))
                        for i in range(n)])  # fmt: skip
    rollups.run(store)
    svc = LLMObservabilityService(store)
    for window in (3600, 6 * 3600, 86_400, 2 * 86_400):
        for model in (None, "claude-haiku-4-5"):
            sel = offsets <= window
            if model:
                sel &= models == model
            rep = svc.latency_report(model, window, now=NOW)
            assert rep.count == int(sel.sum()) and rep.model == model
            assert rep.mean == pytest.approx(ms[sel].mean(), rel=1e-9)
            assert (rep.min, rep.max) == (pytest.approx(ms[sel].min()), pytest.approx(ms[sel].max()))
            expected = np.percentile(ms[sel], [50, 95, 99])
            if window < 86_400:
                assert [rep.p50, rep.p95, rep.p99] == pytest.approx(expected, rel=1e-9)
                assert not rep.approximate and rep.source == "raw"
            else:
                assert [rep.p50, rep.p95, rep.p99] == pytest.approx(expected, rel=0.01)
                assert rep.approximate and rep.source == "rollup"
    by_model = svc.latency_by_model(3600, now=NOW)
    assert set(by_model) == {"claude-sonnet-4-5", "claude-haiku-4-5"}
    alone = svc.latency_report("claude-haiku-4-5", 3600, now=NOW)
    assert by_model["claude-haiku-4-5"].as_dict() == pytest.approx(alone.as_dict())
    empty = svc.latency_report("no-such-model", 3600, now=NOW)
    assert empty.count == 0 and empty.p95 == 0.0


def test_sla_error_rate_and_alert_strings(store: Store) -> None:
    events = [call(NOW - timedelta(minutes=30 + i), ms=1000.0) for i in range(17)]
    events += [call(NOW - timedelta(minutes=50 + i), ms=9000.0) for i in range(3)]
    events += [call(NOW - timedelta(seconds=30 + i), ok=i >= 3, err="rate_limit") for i in range(10)]
    write_batch(store, events)
    svc = LLMObservabilityService(store)
    assert svc.error_rate(now=NOW) == pytest.approx(0.3)  # 3 of the 10 calls in the last 5 minutes
    assert svc.error_rate(3600, now=NOW) == pytest.approx(3 / 30)
    assert svc.error_rate(now=NOW - timedelta(hours=3)) == 0.0
    p95 = float(np.percentile([1000.0] * 17 + [9000.0] * 3 + [500.0] * 10, 95))
    assert svc.latency_report(now=NOW).p95 == pytest.approx(p95)
    assert svc.sla_compliance(2000.0, now=NOW) is (p95 <= 2000.0)
    assert svc.sla_compliance(p95 + 1, now=NOW) is True
    assert svc.sla_compliance(now=NOW - timedelta(days=1)) is True  # no calls
    alerts = svc.alert_check(0.1, 1000.0, now=NOW)
    assert alerts[0] == "High LLM error rate: 30.0% of 10 calls failed in the last 5 min (threshold 10.0%)"
    assert alerts[1].startswith(f"High LLM latency: P95 {p95:,.0f} ms over the last 1 h exceeds 1,000 ms")
    assert alerts[2].startswith("High latency for claude-sonnet-4-5")
    assert svc.alert_check(0.5, 10_000.0, now=NOW) == []


def test_dashboard_totals_tokens_and_money_saved_by_caching(store: Store) -> None:
    events = [
        call(NOW - timedelta(minutes=1), inp=10_000, out=500, read=6_000, write=1_000),  # priced at ingest
        call(NOW - timedelta(minutes=2), inp=2_000, out=300, read=500, hit=True),  # response cache hit
        call(NOW - timedelta(minutes=3), inp=1_000, out=100, ok=False, err="timeout"),
        call(NOW - timedelta(minutes=4), model="mystery", provider="acme", inp=100, out=10),
    ]
    write_batch(store, events)
    full_hit = pricing.cost_of("anthropic", "claude-sonnet-4-5", 2_000, 300, 500, 0).usd
    third = pricing.cost_of("anthropic", "claude-sonnet-4-5", 1_000, 100).usd
    dash = LLMObservabilityService(store).dashboard(3600, now=NOW)
    assert dash.total_requests == 4
    assert dash.total_cost_usd == pytest.approx(0.02205 + third)
    assert dash.avg_cost_per_request == pytest.approx((0.02205 + third) / 4)
    assert dash.cost_saved_usd == pytest.approx(0.0162 + full_hit)
    assert dash.cache_hit_rate == pytest.approx(0.25) and dash.error_rate == pytest.approx(0.25)
    assert dash.requests_per_minute == pytest.approx(4 / 60)
    assert (dash.input_tokens, dash.output_tokens, dash.cache_read_tokens, dash.cache_write_tokens) == (
        13_100, 910, 6_500, 1_000)  # fmt: skip
    assert dash.total_tokens == 14_010
    assert dash.prompt_cache_read_ratio == pytest.approx(6_500 / 13_100)
    assert dash.unknown_model_calls == 1
    assert dash.latency.count == 4 and dash.source == "raw"
    assert dash.as_dict()["latency"]["count"] == 4
    day = LLMObservabilityService(store).dashboard(now=NOW)  # 24 hours: rollup sums, still exact
    assert day.total_cost_usd == pytest.approx(dash.total_cost_usd) and day.source == "rollup"
    assert day.requests_per_minute == pytest.approx(4 / 1440)


def test_series_and_top_conversations(store: Store) -> None:
    rng = np.random.default_rng(1)
    n = 400
    offsets = rng.uniform(0, 5 * 3600, n)
    inp = rng.integers(100, 5000, n)
    read = (inp * rng.uniform(0, 0.8, n)).astype(int)
    hits = rng.random(n) < 0.3
    models = rng.choice(["claude-sonnet-4-5", "claude-haiku-4-5"], n)
    convs = rng.choice([f"c{i}" for i in range(8)], n)
    events = [call(NOW - timedelta(seconds=float(offsets[i])), model=str(models[i]), inp=int(inp[i]), out=50,
                   read=int(read[i]), hit=bool(hits[i]), conv=str(convs[i])) for i in range(n)]  # fmt: skip
    write_batch(store, events)
    rollups.run(store)
    svc = LLMObservabilityService(store)
    rows = svc.token_usage_series(5 * 3600, "hour", now=NOW)
    assert sum(r["input_tokens"] for r in rows) == int(inp.sum())
    assert sum(r["cache_read_tokens"] for r in rows) == int(read.sum())
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        assert sum(r["requests"] for r in rows if r["model"] == model) == int((models == model).sum())
    by_bot = svc.token_usage_series(5 * 3600, "minute", by="bot", now=NOW)
    assert {r["bot"] for r in by_bot} == {"lead_bot"} and sum(r["output_tokens"] for r in by_bot) == 50 * n
    cache = svc.cache_hit_rate_series(5 * 3600, "hour", now=NOW)
    assert sum(r["cache_hits"] for r in cache) == int(hits.sum())
    for r in cache:
        assert r["cache_hit_rate"] == pytest.approx(r["cache_hits"] / r["requests"])
    top = svc.top_conversations(86_400, limit=3, now=NOW)
    totals = {c: int(inp[convs == c].sum()) + 50 * int((convs == c).sum()) for c in set(convs)}
    assert [t["conversation_id"] for t in top] == sorted(totals, key=lambda c: -totals[c])[:3]
    assert top[0]["total_tokens"] == max(totals.values())
    daily = svc.llm_timeseries(2 * 86_400, "day", group_by=("model",), percentiles=True, now=NOW)
    assert sum(r["requests"] for r in daily) == n and all(r["p95"] for r in daily)
    assert svc.cost_per_request(now=NOW) == pytest.approx(sum(r["cost_usd"] for r in rows) / n)


def test_spend_forecast_and_budget(store: Store) -> None:
    now = datetime(2026, 4, 11, 0, 0, 0)  # 10 days into a 30-day month
    events = [call(datetime(2026, 4, 1) + timedelta(days=d, hours=6), cost=10.0) for d in range(10)]
    events.append(call(datetime(2026, 3, 31, 23, 0), cost=99.0))  # last month
    write_batch(store, events)
    rollups.run(store)
    svc = LLMObservabilityService(store)
    f = svc.spend_forecast(200.0, now=now)
    assert f["month"] == "2026-04" and f["days_in_month"] == 30 and f["days_elapsed"] == pytest.approx(10.0)
    assert f["spend_mtd_usd"] == pytest.approx(100.0) and f["requests_mtd"] == 10
    assert f["daily_run_rate_usd"] == pytest.approx(10.0)  # the last 7 days: 70 / 7
    assert f["forecast_month_end_usd"] == pytest.approx(300.0)
    assert f["forecast_over_budget"] is True and f["budget_used_pct"] == pytest.approx(50.0)
    assert f["forecast_pct_of_budget"] == pytest.approx(150.0)
    assert svc.spend_forecast(now=now)["budget_usd"] == 500.0  # MONTHLY_BUDGET_USD default
    with store.begin() as conn:
        conn.execute(schema.control_state.insert().values(key="monthly_budget", value={"usd": 320.0},
                                                          updated_at=now))  # fmt: skip
    assert svc.monthly_budget() == 320.0
    assert svc.spend_forecast(now=now)["forecast_over_budget"] is False
    early = svc.spend_forecast(1000.0, now=datetime(2026, 4, 2, 12, 0))
    assert early["daily_run_rate_usd"] == pytest.approx(20.0 / 1.5)  # month younger than a week
    # the store held calls before the quiet first hours of the month: they count as quiet time
    assert early["run_rate_since"] == datetime(2026, 4, 1)


@pytest.mark.parametrize("rolled_up", [True, False])
def test_a_young_store_forecasts_from_its_own_first_call(store: Store, rolled_up: bool) -> None:
    """A store that began 16 hours ago, 2.7 days into the month, spends $24 a day: the forecast
    runs on $24 a day, not on the $16 spent divided by the 2.7 days since the 1st (a third of it)."""
    now = datetime(2026, 12, 3, 16, 40)
    first = now - timedelta(hours=16)
    write_batch(store, [call(first + timedelta(minutes=10 * i), cost=1.0 / 6) for i in range(96)])
    if rolled_up:
        rollups.run(store)
    f = LLMObservabilityService(store).spend_forecast(5000.0, now=now)
    assert f["run_rate_since"] == first
    assert f["run_rate_days"] == pytest.approx(16 / 24)
    assert f["daily_run_rate_usd"] == pytest.approx(16.0 / (16 / 24))
    assert f["forecast_month_end_usd"] == pytest.approx(16.0 + 24.0 * (31 - f["days_elapsed"]))


def test_totals_daily_spend_and_the_bot_filters(priced: Store) -> None:
    svc = LLMObservabilityService(priced)
    week = svc.totals(7 * 86_400, now=NOW)
    assert week["requests"] == 5 and week["cost_usd"] == pytest.approx(7.75)
    assert week["cost_usd"] == pytest.approx(svc.dashboard(7 * 86_400, now=NOW).total_cost_usd)
    assert svc.totals(86_400, bot=["buyer_bot", "lead_bot"], now=NOW)["cost_usd"] == pytest.approx(3.25)
    assert svc.totals(86_400, bot="lead_bot", now=NOW)["requests"] == 1
    rows = svc.daily_spend(4, by="model", now=NOW)
    assert [(r["day"], r["model"], r["cost_usd"]) for r in rows] == [
        (datetime(2026, 3, 7), "claude-opus-4-6", pytest.approx(4.0)),
        (datetime(2026, 3, 9), "claude-haiku-4-5", pytest.approx(0.5)),
        (datetime(2026, 3, 10), "claude-haiku-4-5", pytest.approx(0.25)),
        (datetime(2026, 3, 10), "claude-sonnet-4-5", pytest.approx(3.0)),
    ]
    assert svc.cost_by_day(4, bot=["buyer_bot"], now=NOW)[date(2026, 3, 10)] == pytest.approx(2.25)
    assert [
        r["conversation_id"] for r in svc.top_conversations(86_400, by="cost", bot=["lead_bot"], now=NOW)
    ] == ["c1"]
    with_pct = svc.cost_breakdown("bot", 6 * 3600, bot=["buyer_bot"], percentiles=True, now=NOW)
    assert [r["bot"] for r in with_pct] == ["buyer_bot"] and with_pct[0]["p50"] == pytest.approx(500.0)
    assert with_pct[0]["approximate"] is False  # exact under 24 hours
    assert svc.cost_breakdown("bot", 86_400, percentiles=True, now=NOW)[0]["approximate"] is True
    assert svc.spend_today_usd(now=NOW) == pytest.approx(3.25)
    with pytest.raises(ValueError):
        svc.daily_spend(3, by="conversation_id", now=NOW)


def test_only_managers_and_admins_set_the_budget(store: Store) -> None:
    from observability import auth

    auth.create_user(store, "mia", auth.MANAGER, "manager-pass-1")
    auth.create_user(store, "ann", auth.ANALYST, "analyst-pass-1")
    svc = LLMObservabilityService(store)
    with pytest.raises(auth.PermissionDenied):
        svc.set_monthly_budget("ann", 10.0, now=NOW)
    with pytest.raises(ValueError):
        svc.set_monthly_budget("mia", -1.0, now=NOW)
    with pytest.raises(ValueError, match=r"at most \$1,000,000,000 a month"):
        svc.set_monthly_budget("mia", 999_999_999_999.0, now=NOW)  # extra zeros: refused, nothing saved
    assert svc.monthly_budget() == pytest.approx(float(get_settings().monthly_budget_usd))
    assert svc.set_monthly_budget("mia", 1234.5, now=NOW) == 1234.5
    assert svc.monthly_budget() == 1234.5 and svc.spend_forecast(now=NOW)["budget_usd"] == 1234.5
    with store.connect() as conn:
        titles = [r.title for r in conn.execute(schema.activity_events.select())]
    assert "Monthly budget set to $1,234.50" in titles  # the change is in the activity feed


def test_top_conversations_rollup_path_equals_raw_path(store: Store) -> None:
    """Windows of a day and longer read `rollup_conversation_hour` for full hours and raw calls for
    the edges and for hours with minutes not rolled up yet; the result equals grouping raw calls."""
    from observability.analytics.llm_observability import _top_conversations_stmt
    from observability.timeutil import window_bounds

    rng = np.random.default_rng(7)
    n = 600

    def batch(count: int, span_s: float) -> list[list]:
        offsets = rng.uniform(0, span_s, count)
        bots = rng.choice(["lead_bot", "buyer_bot", "none"], count)
        convs = rng.choice([f"c{i}" for i in range(12)] + ["none"], count)
        return [call(NOW - timedelta(seconds=float(offsets[i])), bot=None if bots[i] == "none" else str(bots[i]),
                     inp=int(rng.integers(10, 3000)), out=int(rng.integers(1, 400)), read=int(rng.integers(0, 50)),
                     write=int(rng.integers(0, 20)), cost=float(rng.integers(1, 2000)) / 1000,
                     conv=None if convs[i] == "none" else str(convs[i]), ok=bool(rng.random() > 0.2))
                for i in range(count)]  # fmt: skip

    write_batch(store, batch(n, 3 * 86_400))
    rollups.run(store)
    rollups.run(store)  # idempotent: nothing dirty, nothing changes
    t = schema.rollup_conversation_hour
    with store.connect() as conn:
        rolled = conn.execute(sa.select(sa.func.sum(t.c.calls))).scalar()
        with_conv = conn.execute(
            sa.select(sa.func.count()).where(schema.llm_calls.c.conversation_id.is_not(None))
        ).scalar()
    assert rolled == with_conv > 0
    svc = LLMObservabilityService(store)

    def raw(window: float | None, by: str, bot: object, limit: int | None) -> list[tuple]:
        start, end = window_bounds(window, NOW)
        bots = None if not bot else [bot] if isinstance(bot, str) else list(bot)
        with store.connect() as conn:
            return conn.execute(_top_conversations_stmt(((start, end),), (), by, bots, limit)).all()

    def check() -> None:
        for window in (86_400, 2 * 86_400 + 1234.5, None):
            for by in ("tokens", "cost"):
                for bot in (None, "lead_bot", ["buyer_bot", "lead_bot"]):
                    for limit in (None, 5):
                        got = svc.top_conversations(window, limit=limit, by=by, bot=bot, now=NOW)
                        want = raw(window, by, bot, limit)
                        assert [r["conversation_id"] for r in got] == [w[0] for w in want]
                        for r, w in zip(got, want, strict=True):
                            assert (r["requests"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                                    r["cache_write_tokens"], r["total_tokens"], r["bot"], r["errors"]) == (
                                int(w[1]), *(int(x) for x in w[2:7]), w[11], int(w[12]))  # fmt: skip
                            assert (r["cost_usd"], r["cost_saved_usd"]) == pytest.approx((w[7], w[8]))
                            assert (r["first_ts"], r["last_ts"]) == (as_datetime(w[9]), as_datetime(w[10]))
        costs = svc.cost_by_conversation(now=NOW, limit=None)
        want_costs = {w[0]: w[7] for w in raw(86_400, "cost", None, None)}
        assert list(costs) == list(want_costs) and costs == pytest.approx(want_costs)

    check()
    # calls arriving after the rollup step (their minutes are dirty) are still counted exactly
    write_batch(store, batch(80, 86_400))
    check()
    rollups.run(store)
    check()


@pytest.mark.parametrize("window", [3600, 7 * 86_400])  # raw rows only / full hours from the rollup
def test_calls_without_a_price_follow_the_bot_filter(store: Store, window: int) -> None:
    """Cost tracking's unpriced calls follow its Bots filter like the figures beside them (a
    buyer_bot call showed under a lead_bot filter); a call that reported no usage has no cost a
    caller gave (blank, not $0)."""
    t = NOW - timedelta(minutes=30)
    write_batch(store, [
        call(t, model="mystery-model", provider="acme", bot="buyer_bot", cost=0.4),
        call(t, model="mystery-model", provider="acme", bot=None),
        call(t, model="gpt-4o-mini", provider="openai", bot="buyer_bot", inp=0, out=0),  # no usage reported
    ])  # fmt: skip
    rollups.run(store)
    svc = LLMObservabilityService(store)

    def calls(bot: object = None) -> dict[str, int]:
        return {r["model"]: r["calls"] for r in svc.unknown_model_calls(window, bot=bot, now=NOW)}

    assert calls() == {"mystery-model": 2, "gpt-4o-mini": 1}
    assert calls("lead_bot") == {} and calls(["buyer_bot"]) == {"mystery-model": 1, "gpt-4o-mini": 1}
    assert calls([None]) == {"mystery-model": 1}  # calls recorded without a bot
    rows = {r["model"]: r for r in svc.unknown_model_calls(window, now=NOW)}
    assert rows["gpt-4o-mini"]["caller_cost_usd"] is None and rows["mystery-model"]["caller_cost_usd"] == 0.4
