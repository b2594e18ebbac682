# ruff: noqa: E402  (tests/ goes on sys.path before the imports)
"""Every console page, run server-side with Streamlit's AppTest on an empty store and on demo data.

The promises: a page never raises (an empty store shows a helpful empty state), its headline
numbers are the analytics services' numbers, filters live in the URL, the role decides what
navigation shows, sign-in locks out after five failures, and the manager-only budget setter and
per-user mark-as-read are checked in the service functions themselves.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser.demo_data import load_demo
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest, app_test
from support.markdown import shown

from observability import auth
from observability.analytics import activity, conversations, monitoring
from observability.analytics.bot_metrics import BotMetricsCollector
from observability.analytics.conversation_scoring import score_pending
from observability.analytics.llm_observability import LLMObservabilityService
from observability.analytics.performance import PerformanceTracker
from observability.settings import reset_settings_cache
from observability.store import Store, schema
from observability.timeutil import utcnow, window_seconds
from observability.ui import common, frames, nav

PAGES = {
    "overview": "Home.py",
    "bot_health": "pages/bot_health.py",
    "token_analytics": "pages/token_analytics.py",
    "cost_tracking": "pages/cost_tracking.py",
    "ai_performance": "pages/ai_performance.py",
    "live_monitoring": "pages/live_monitoring.py",
    "activity_feed": "pages/activity_feed.py",
    "conversation_quality": "pages/conversation_quality.py",
}


# ---- fixtures -----------------------------------------------------------------------------------


def _use_store(mp: pytest.MonkeyPatch, url: str, auth_mode: str = "none") -> None:
    mp.setenv("DATABASE_URL", url)
    mp.setenv("AUTH_MODE", auth_mode)
    reset_settings_cache()
    common.clear_caches()


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite store with 12 hours of demo traffic ending now, rolled up and scored, plus one
    firing alert."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'store.db'}"
    store = Store.from_url(url)
    store.migrate()
    now = utcnow()
    load_demo(store, hours=12, now=now)
    score_pending(store, now)
    with store.begin() as conn:
        conn.execute(
            sa.insert(schema.alerts).values(
                rule_name="high_error_rate",
                dedup_key="high_error_rate|test",
                labels={},
                state="firing",
                severity="critical",
                value=0.2,
                threshold=0.05,
                message="test",
                fired_at=now,
                created_at=now,
            )  # fmt: skip
        )
    store.dispose()
    yield url
    reset_settings_cache()


@pytest.fixture
def demo(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    _use_store(monkeypatch, demo_url)
    store = Store.from_url(demo_url)
    yield store
    store.dispose()
    reset_settings_cache()


@pytest.fixture
def demo_copy(demo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A private copy of the demo store, for a test that changes it (the module's store stays as
    loaded for the tests that share it)."""
    path = tmp_path / "demo_copy.db"
    shutil.copyfile(demo_url.removeprefix("sqlite:///"), path)
    url = f"sqlite:///{path}"
    _use_store(monkeypatch, url)
    store = Store.from_url(url)
    yield store
    store.dispose()
    reset_settings_cache()


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = Store.from_url(url)
    store.migrate()
    _use_store(monkeypatch, url)
    yield store
    store.dispose()
    reset_settings_cache()


def run_page(name: str, query: dict | None = None, session: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGES[name]), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in (session or {}).items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, f"{name}: {at.exception}"
    return at


def metric(at: AppTest, label: str, nth: int = 0) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) > nth, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[nth]


def one_of(value: str, *expected: str) -> None:
    """A page computed at time t shows what the service computed just before or just after t."""
    assert value in expected, f"{value!r} not in {expected}"


def texts(at: AppTest) -> str:
    """What the page's text elements show (markdown escapes of data, as in `buyer\\_bot`, undone)."""
    parts = [e.value for e in (*at.info, *at.error, *at.warning, *at.success, *at.caption, *at.markdown)]
    return re.sub(r"\\([\\`*_{}\[\]<>()#+\-.!|~$])", r"\1", "\n".join(str(p) for p in parts))


# ---- every page on an empty store ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_on_an_empty_store_shows_an_empty_state_not_an_error(empty: Store, name: str) -> None:
    at = run_page(name)
    assert "Authentication is off (AUTH_MODE=none)" in texts(at)
    if name not in ("live_monitoring", "activity_feed"):
        assert at.info, f"{name} shows no empty state"


# ---- headline numbers equal the services' numbers ---------------------------------------------------


def test_overview_shows_the_services_live_kpis(demo: Store) -> None:
    svc = LLMObservabilityService(demo)

    def expected() -> dict[str, str]:
        d5 = svc.dashboard(300)
        p95 = svc.latency_report(None, 3600).p95
        return {
            "LLM requests / min (5 min)": f"{d5.requests_per_minute:,.1f}",
            "LLM error rate (5 min)": f"{d5.error_rate:.1%}",
            "LLM P95 latency (1h)": f"{p95:,.0f} ms",
            "Spend today, all providers": f"${svc.spend_forecast()['spend_today_usd']:,.2f}",
            "Active conversations": f"{monitoring.active_conversation_count(demo):,}",
        }

    before = expected()
    at = run_page("overview")
    after = expected()
    for label in before:
        one_of(metric(at, label), before[label], after[label])
    assert metric(at, "Open alerts") == "1"


def test_bot_health_matches_the_performance_tracker(demo: Store) -> None:
    tracker = PerformanceTracker(demo)
    before = tracker.get_all_bot_stats("1h")
    at = run_page("bot_health")
    after = tracker.get_all_bot_stats("1h")
    one_of(metric(at, "Operations"), *{f"{sum(s['count'] for s in x.values()):,}" for x in (before, after)})
    sla = tracker.check_sla_compliance("1h")
    measured = [r for r in sla if r["count"]]
    assert metric(at, "SLA compliance") == f"{sum(r['compliant'] for r in measured)}/{len(measured)}"
    assert "buyer_bot" in texts(at)  # the demo's slow bot is named in the headline


def test_bot_health_reads_its_time_range_from_the_url(demo: Store) -> None:
    at = run_page("bot_health", query={"range": "24h"})
    assert "Window: last 24h" in texts(at)
    tracker = PerformanceTracker(demo)
    total = sum(s["count"] for s in tracker.get_all_bot_stats("24h").values())
    one_of(
        metric(at, "Operations"),
        f"{total:,}",
        f"{sum(s['count'] for s in tracker.get_all_bot_stats('24h').values()):,}",
    )


@pytest.mark.parametrize("linked", ["handoff step", "handoff"])
def test_bot_health_filters_to_the_handoff_step_from_a_link(demo: Store, linked: str) -> None:
    """An alert on the handoff step links here (`?bot=handoff+step`; older links said
    `?bot=handoff`): the filter shows the step selected and the page shows its SLA rows and
    operations only, where the filter dropped the value and showed every bot."""
    tracker = PerformanceTracker(demo)

    def step_operations() -> str:
        return f"{tracker.get_all_bot_stats('24h', bots=['handoff'])['handoff']['count']:,}"

    before = step_operations()
    at = run_page("bot_health", query={"bot": linked, "range": "24h"})
    one_of(metric(at, "Operations"), before, step_operations())
    assert at.multiselect(key="bot").value == ["handoff step"]
    [table] = [d.value for d in at.dataframe if "operation" in d.value.columns]
    assert set(table["bot"]) == {"handoff step"}, set(table["bot"])
    at = run_page("bot_health", query={"bot": linked, "range": "24h", "tab": "Handoffs"})
    [matrix] = [d.value for d in at.dataframe if "target" in d.value.columns]
    assert len(matrix) == len(BotMetricsCollector(demo).handoff_matrix(1440)), "every handoff passes the step"


def test_token_analytics_matches_the_llm_service(demo: Store) -> None:
    svc = LLMObservabilityService(demo)
    d = svc.dashboard(86_400)
    at = run_page("token_analytics", query={"range": "24h"})
    assert metric(at, "LLM requests") == f"{d.total_requests:,}"
    assert metric(at, "Input tokens") == f"{d.input_tokens:,}"
    assert metric(at, "Output tokens") == f"{d.output_tokens:,}"
    assert metric(at, "LLM response-cache hit rate") == f"{d.cache_hit_rate:.1%}"


def test_token_charts_name_the_token_kinds_in_words(demo: Store) -> None:
    """The legends read "cache_read_tokens", the store's column names."""
    at = run_page("token_analytics", query={"range": "24h", "tab": "By model and bot"})
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    kinds = {t["name"] for f in figs for t in f["data"]}
    assert kinds == {"input", "output", "cache read", "cache write"}, kinds


def test_the_vip_view_words_a_conversations_state_as_conversations_does(demo: Store) -> None:
    """It showed "ai" where Conversations shows "AI"."""
    at = run_page("activity_feed", query={"tab": "VIP view"})
    [vip] = [
        d.value for d in at.dataframe if "state" in d.value.columns and "account_name" in d.value.columns
    ]
    assert len(vip) and set(vip["state"]) <= {"AI", "human", "stopped"}, set(vip["state"])


def test_token_analytics_bot_filter_from_the_url_narrows_the_figures(demo: Store) -> None:
    at = run_page("token_analytics", query={"range": "24h", "bot": ["lead_bot"]})
    rows = LLMObservabilityService(demo).cost_breakdown("bot", 86_400)
    lead = next(r for r in rows if r["bot"] == "lead_bot")
    assert metric(at, "LLM requests") == f"{lead['requests']:,}"


def test_cost_tracking_matches_the_services_and_lists_anomalies_and_unpriced_models(demo: Store) -> None:
    svc = LLMObservabilityService(demo)
    fc = svc.spend_forecast()
    week = svc.dashboard(7 * 86_400)
    at = run_page("cost_tracking")
    after = svc.spend_forecast()
    assert metric(at, "Spend month to date, all providers") == f"${fc['spend_mtd_usd']:,.2f}"
    # the forecast moves with the clock (days left in the month): the page's lies between the two
    lo, hi = sorted((fc["forecast_month_end_usd"], after["forecast_month_end_usd"]))
    shown = float(metric(at, "Forecast to month end").lstrip("$").replace(",", ""))
    assert lo - 0.005 <= shown <= hi + 0.005
    assert metric(at, "Monthly budget") == f"${fc['budget_usd']:,.2f}"
    # the forecast says what its run rate is the mean of (the demo store is a day old, not a week)
    [hours] = re.findall(r"the mean daily spend over the ([\d.,]+) hours since", texts(at))
    assert (
        fc["run_rate_days"] < 2
        and fc["run_rate_days"] * 24 - 0.05 <= float(hours) <= after["run_rate_days"] * 24 + 0.05
    )
    assert metric(at, "Spend (7d)") == f"${week.total_cost_usd:,.2f}"
    unknown = sum(r["calls"] for r in svc.unknown_model_calls(7 * 86_400))
    assert unknown > 0
    assert metric(at, "Unpriced calls") == f"{unknown:,}"
    # the demo's expensive hour is flagged, with links to its calls
    assert "anomalous call" in texts(run_page("cost_tracking", query={"tab": "Anomalies"}))


def test_cost_tracking_counts_calls_that_reported_no_usage_and_says_how_to_get_it(demo_copy: Store) -> None:
    """A successful call with no tokens (an OpenAI stream without include_usage) is no free call:
    it is counted with the unpriced calls and the page says what to pass."""
    from observability import events as ev
    from observability.store.ingest import write_batch
    from observability.timeutil import to_epoch

    svc = LLMObservabilityService(demo_copy)
    before = sum(r["calls"] for r in svc.unknown_model_calls(86_400))
    now = to_epoch(utcnow())
    batch = [ev.llm_call(f"nousage-{i}", now - 60 * i, bot="lead_bot", agent=None, decision_type=None,
                         model="gpt-4o-mini", provider="openai", input_tokens=0, output_tokens=0, cache_read_tokens=0,
                         cache_write_tokens=0, latency_ms=300.0, cache_hit=False, cost_usd=None,
                         conversation_id=None, success=True, error_type=None) for i in range(3)]  # fmt: skip
    assert write_batch(demo_copy, batch).rejected == 0
    listed = {(r["model"], r["provider"]): r for r in svc.unknown_model_calls(86_400)}
    assert listed[("gpt-4o-mini", "openai")]["usage_missing_calls"] == 3
    common.clear_caches()
    at = run_page("cost_tracking", query={"range": "24h", "tab": "By model and bot"})
    assert metric(at, "Unpriced calls") == f"{before + 3:,}"
    assert "3 calls reported no token usage" in texts(at) and '"include_usage": True' in texts(at)


def test_an_anomaly_link_opens_the_calls_behind_it(demo: Store) -> None:
    report = frames.cost_report(demo, "7d")
    trace = report["anomalies"]["trace_id"].iloc[0]
    at = run_page("cost_tracking", query={"calls": trace})
    assert "The call behind the anomaly" in [s.value for s in at.subheader]
    calls = at.dataframe[0].value
    assert list(calls["trace_id"]) == [trace]


def test_only_managers_and_admins_set_the_budget_and_the_page_shows_it(demo_copy: Store) -> None:
    demo = demo_copy
    auth.create_user(demo, "mia", auth.MANAGER, "manager-pass-1")
    auth.create_user(demo, "ann", auth.ANALYST, "analyst-pass-1")
    svc = LLMObservabilityService(demo)
    old = svc.monthly_budget()
    with pytest.raises(auth.PermissionDenied):
        svc.set_monthly_budget("ann", 1.0)
    svc.set_monthly_budget("mia", 1234.0)
    assert svc.monthly_budget() == 1234.0
    # the change is in the activity feed, once, saying who changed what
    [row] = frames.activity_page(demo, "mia", event_type="budget_changed")[0].itertuples()
    assert (row.title, row.description) == (
        "Monthly budget set to $1,234.00",
        f"mia changed it from ${old:,.2f}",
    )
    common.clear_caches()
    at = run_page("cost_tracking")
    assert metric(at, "Monthly budget") == "$1,234.00"


def test_budget_form_says_what_happened_keeps_a_refused_value_and_warns_far_from_the_spend(
    demo_copy: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = demo_copy
    monkeypatch.setenv("AUTH_MODE", "password")
    reset_settings_cache()
    if auth.get_user(demo, "boss2") is None:
        auth.create_user(demo, "boss2", auth.MANAGER, "manager-pass-3")
    svc = LLMObservabilityService(demo)
    before = svc.monthly_budget()
    at = run_page("cost_tracking", session={"user": auth.User("boss2", auth.MANAGER)})
    field = next(n for n in at.number_input if n.label == "Monthly budget (USD)")
    field.set_value(0.0)
    next(b for b in at.button if b.label == "Save budget").click()
    at.run()
    assert svc.monthly_budget() == before  # refused: nothing changed
    assert any("Not saved" in e.value and "positive" in e.value for e in at.error)
    assert (
        next(n for n in at.number_input if n.label == "Monthly budget (USD)").value == 0.0
    )  # typed value kept
    forecast = svc.spend_forecast()["forecast_month_end_usd"]
    far = round(max(forecast, 1.0) * 100, 2)
    next(n for n in at.number_input if n.label == "Monthly budget (USD)").set_value(far)
    next(b for b in at.button if b.label == "Save budget").click()
    at.run()
    assert svc.monthly_budget() == far
    assert any(f"Saved: the monthly budget is now ${far:,.2f}" in s.value for s in at.success)
    assert any("times that" in w.value for w in at.warning)


def test_budget_form_saves_through_the_service(demo_copy: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_copy
    monkeypatch.setenv("AUTH_MODE", "password")
    reset_settings_cache()
    if auth.get_user(demo, "boss") is None:
        auth.create_user(demo, "boss", auth.MANAGER, "manager-pass-2")
    at = run_page("cost_tracking", session={"user": auth.User("boss", auth.MANAGER)})
    budget = next(n for n in at.number_input if n.label == "Monthly budget (USD)")
    budget.set_value(777.0)
    next(b for b in at.button if b.label == "Save budget").click()
    at.run()
    assert not at.exception
    assert LLMObservabilityService(demo).monthly_budget() == 777.0
    if auth.get_user(demo, "viewer") is None:
        auth.create_user(demo, "viewer", auth.ANALYST, "analyst-pass-2")
    at = run_page("cost_tracking", session={"user": auth.User("viewer", auth.ANALYST)})
    assert not [n for n in at.number_input if n.label == "Monthly budget (USD)"]
    assert metric(at, "Monthly budget") == "$777.00"


def test_ai_performance_widgets_match_the_bot_metrics_collector(demo: Store) -> None:
    collector = BotMetricsCollector(demo)
    before = {
        b: collector.get_bot_summary(b, 60)["total_interactions"]
        for b in ("lead_bot", "buyer_bot", "seller_bot")
    }
    at = run_page("ai_performance")
    after = {
        b: collector.get_bot_summary(b, 60)["total_interactions"]
        for b in ("lead_bot", "buyer_bot", "seller_bot")
    }
    shown = [m.value for m in at.metric if m.label == "Bot responses"]
    assert shown in ([f"{before[b]:,}" for b in before], [f"{after[b]:,}" for b in after])
    assert metric(at, "Handoffs") == f"{collector.handoff_summary(60)['total_handoffs']:,}"
    [slowest] = [m for m in at.metric if m.label == "Slowest bot P95"]
    assert "all its tracked operations over the last 1h" in slowest.proto.help  # not its response time


def test_live_monitoring_tiles_and_drill_down_match_the_monitoring_functions(demo: Store) -> None:
    live = monitoring.live_metrics(demo)
    at = run_page("live_monitoring", query={"metric": "ai_confidence", "timeframe": "6h"})
    assert metric(at, "Messages today") == f"{live['messages_processed']:,.0f}"
    assert metric(at, "Claude spend today") == f"${live['claude_cost_today']:,.2f}"
    assert metric(at, "Conversations today") == f"{live['conversations_total_today']:,}"
    assert metric(at, "Open alerts") == "1"
    d = monitoring.drill_down(demo, "ai_confidence", "6h")
    assert metric(at, "P95, last 6h") == f"{d.percentile_data['p95']:.2f}"
    assert metric(at, "P50, last 6h") == f"{d.percentile_data['p50']:.2f}"
    assert len(at.get("plotly_chart")) == 1


def test_drill_down_over_a_timeframe_longer_than_the_store_says_so(demo: Store) -> None:
    """The demo store holds hours, not 30 days: the 30-day chart spans the 30 days (one point of
    data sits at its day instead of an axis stretched over a millisecond) and the caption says
    since when the figures are."""
    at = run_page("live_monitoring", query={"metric": "ai_confidence", "timeframe": "30d"})
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    lo, hi = (pd.Timestamp(x) for x in fig["layout"]["xaxis"]["range"])
    assert hi - lo >= pd.Timedelta(days=30)
    assert any("Data since" in c.value and "not the whole 30d" in c.value for c in at.caption)
    at = run_page("live_monitoring", query={"metric": "ai_confidence", "timeframe": "1h"})
    assert not any("Data since" in c.value for c in at.caption)
    # a count: the days before the store's first message are missing, not zero (nor quiet time in
    # the trend); from then on a quiet interval is a zero
    d = monitoring.drill_down(demo, "messages", "30d")
    values = d.historical_data["value"]
    first = values.first_valid_index()
    assert first is not None and first > 0 and values[:first].isna().all() and values[first:].notna().all()
    at = run_page("live_monitoring", query={"metric": "messages", "timeframe": "30d"})
    assert any("Data since" in c.value for c in at.caption)


def test_drill_down_has_history_percentiles_thresholds_and_trend(demo: Store) -> None:
    for metric_name in monitoring.METRICS:
        for tf in monitoring.TIMEFRAMES:
            d = monitoring.drill_down(demo, metric_name, tf)
            out = d.as_dict()
            assert set(out) == {"metric_name", "current_value", "historical_data", "percentile_data", "thresholds",
                                "trend_analysis"}  # fmt: skip
            assert set(out["trend_analysis"]) == {"direction", "percentage_change", "is_concerning"}
    d = monitoring.drill_down(demo, "response_time", "1h")
    assert d.thresholds == {"warning": 2000.0, "critical": 5000.0}
    assert d.percentile_data["p95"] == pytest.approx(
        LLMObservabilityService(demo).latency_report(None, 3600).p95, rel=1e-3
    )


def test_trend_and_thresholds_flag_what_is_concerning() -> None:
    assert monitoring.trend_analysis([1, 1, 2, 2], "up") == {"direction": "up", "percentage_change": 100.0,
                                                             "is_concerning": True}  # fmt: skip
    assert monitoring.trend_analysis([0.9, 0.9, 0.7, 0.7], "down")["is_concerning"] is True
    assert monitoring.trend_analysis([0.9, 0.9, 0.9, 0.9], "down")["direction"] == "stable"
    # a rise from nothing (a 30-day chart over a store holding a day) has no percentage and alone
    # is not concerning: the page must not call "concerning" what its status calls "ok"
    assert monitoring.trend_analysis([0, 0, 0, 3], "up") == {"direction": "up", "percentage_change": None,
                                                             "is_concerning": False}  # fmt: skip
    assert monitoring.trend_analysis([0, 0, 0, 3], "up", "warning")["is_concerning"] is True
    assert monitoring.trend_analysis([0, 0, 0, 0], "up")["percentage_change"] == 0.0
    assert monitoring.threshold_status(0.5, {"warning": 0.6, "critical": 0.4}, "down") == "warning"
    assert monitoring.threshold_status(90, {"warning": 70, "critical": 85}, "up") == "critical"
    assert monitoring.threshold_status(10, {"warning": 70, "critical": 85}, "up") == "ok"


def test_activity_feed_filters_pages_and_marks_read_per_user(demo_copy: Store) -> None:
    demo = demo_copy
    total = frames.activity_page(demo, "local")[1]
    high = frames.activity_page(demo, "local", severities=("high", "critical"))[1]
    at = run_page("activity_feed")
    assert metric(at, "Matching events") == f"{total:,}"
    assert (
        metric(at, f"Unread in range for {common.LOCAL_USER.name}")
        == f"{activity.unread_count(demo, 'local'):,}"
    )
    at = run_page("activity_feed", query={"severity": ["high", "critical"]})
    assert metric(at, "Matching events") == f"{high:,}"
    # mark the first page read from the page: only this user's unread count drops
    before_other = activity.unread_count(demo, "someone-else")
    before = activity.unread_count(demo, "local")
    at = run_page("activity_feed")
    next(b for b in at.button if b.label == "Mark page as read").click()
    at.run()
    assert not at.exception
    assert activity.unread_count(demo, "local") == before - min(50, before)
    assert activity.unread_count(demo, "someone-else") == before_other
    # the VIP view puts VIP accounts first
    rows, _ = frames.activity_page(demo, "local", vip_first=True, page_size=200)
    vip_flags = rows["vip"].tolist()
    assert vip_flags == sorted(vip_flags, reverse=True)


def test_activity_feed_new_filters_start_at_their_first_page(demo_copy: Store) -> None:
    """A shared link keeps its page; a filter changed on that page (here the range, which still has
    three pages and more) shows the newest matching events, not page 3 of them, and the URL loses
    its page number."""
    total = frames.activity_page(demo_copy, "local", page_size=25)[1]
    assert total > 50, "the demo store has fewer than three pages of events"
    at = run_page("activity_feed", query={"per_page": "25", "page": "3"})
    assert at.number_input(key="page_pick").value == 3
    assert at.query_params["page"] == "3"
    at.segmented_control(key="range").set_value("30d").run()  # more events: still three pages and more
    assert not at.exception
    assert at.number_input(key="page_pick").value == 1
    assert "page" not in at.query_params
    at.number_input(key="page_pick").set_value(2).run()  # paging within the filters still pages
    assert at.number_input(key="page_pick").value == 2
    assert at.query_params["page"] == "2"


def test_mark_read_is_permission_checked_in_the_service(demo: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "password")
    reset_settings_cache()
    with pytest.raises(auth.PermissionDenied):
        activity.mark_read(demo, "nobody-known", ["x"])


def test_conversation_quality_matches_the_scores(demo: Store) -> None:
    summary = frames.quality_summary(demo, "24h")
    at = run_page("conversation_quality")
    assert metric(at, "Conversations, last 24h") == f"{int(summary['conversations'].sum()):,}"
    assert metric(at, "Scored, last 24h") == f"{int(summary['scored'].sum()):,}"


# ---- chart pages: only the open tab's charts run ---------------------------------------------------

# page -> {tab: the charts that tab draws}; the first tab is open when the URL names none. Above the
# tabs: the headline figures and ABOVE_TABS's charts, on every load.
TAB_CHARTS = {
    "overview": {"Requests": {"ov_requests"}, "Latency by bot": {"ov_latency"}, "Spend by model": {"ov_spend_models"}},
    "token_analytics": {"Over time": {"ta_series"}, "By model and bot": {"ta_by_model", "ta_by_bot"},
                        "Cache": {"ta_cache", "ta_cache_by"}, "Top conversations": {"ta_top"}},
    "cost_tracking": {"Month and budget": {"ct_month"}, "By model and bot": {"ct_model", "ct_bot", "ct_cpr"},
                      "Per day": {"ct_daily"}, "Agents": {"ct_agent", "ct_eff"},
                      "Anomalies": {"ct_anomaly_chart", "ct_anomaly_calls"}, "Top conversations": set()},
    "bot_health": {"Against SLA targets": {"bh_sla"}, "Over time": {"bh_latency_ts", "bh_throughput_ts"},
                   "By bot": {"bh_rates", "bh_pct"}, "Handoffs": {"bh_handoffs"}},
    "ai_performance": {"Operations by bot": {"ap_bot_pct", "ap_bot_rates"},
                       "LLM latency by model": {"ap_model_pct", "ap_requests"},
                       "Interactions": {"ap_inter_ts", "ap_inter_ms"}},
    "conversation_quality": {"Conversations": set(), "Sentiment and engagement": {"cq_scatter", "cq_hist"},
                             "One conversation": {"cq_traj"}, "Handoffs": {"cq_handoffs", "cq_handoff_counts"}},
}  # fmt: skip
ABOVE_TABS = {"conversation_quality": {"cq_by_bot"}}


def chart_keys(at: AppTest) -> set[str]:
    """The keys of the plotly charts the run drew (an element id ends with its key)."""
    return {c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")}


@pytest.mark.parametrize("name", list(TAB_CHARTS))
def test_a_chart_page_draws_only_its_open_tabs_charts_and_a_link_opens_any_tab(
    demo: Store, name: str
) -> None:
    tabs = TAB_CHARTS[name]
    above = ABOVE_TABS.get(name, set())
    at = run_page(name)
    assert [t.label for t in at.tabs] == list(tabs)
    first = next(iter(tabs))
    assert chart_keys(at) == above | tabs[first], (
        "a plain link opens the first tab, and draws only its charts"
    )
    assert "tab" not in at.query_params
    for tab, keys in tabs.items():
        at = run_page(name, query={"tab": tab})  # a shared link to that tab
        assert chart_keys(at) == above | keys, f"{name}, tab {tab}"
        assert at.query_params.get("tab", first) == tab  # the URL keeps saying which tab is open


def test_switching_tabs_draws_the_new_tabs_charts_instead(demo: Store) -> None:
    """(The URL follows the click in the browser: tests/test_browser.py.)"""
    at = run_page("token_analytics")
    at.session_state["tab"] = "Cache"  # what a click on the tab sets, before the rerun it causes
    at.run()
    assert not at.exception
    assert chart_keys(at) == {"ta_cache", "ta_cache_by"}


def test_a_link_to_a_tab_a_page_does_not_have_opens_its_first_tab_and_leaves_the_url(demo: Store) -> None:
    at = run_page("bot_health", query={"tab": "VIP view"})  # Activity feed's tab, carried along
    assert chart_keys(at) == {"bh_sla"}
    assert "tab" not in at.query_params


# ---- navigation, sign-in, roles -------------------------------------------------------------------


def test_navigation_shows_each_role_only_its_pages() -> None:
    names = {r: {p.url_path for p in nav.pages_for_role(r)} for r in auth.ROLES}
    assert "emergency" not in names["analyst"] and "admin" not in names["analyst"]
    assert "emergency" in names["operator"] and "admin" not in names["operator"]
    assert "admin" in names["admin"]
    assert {"bot_health", "token_analytics", "cost_tracking", "live_monitoring"} <= names["analyst"]
    assert nav.pages_for_role(None) == []


def test_home_asks_for_sign_in_and_locks_out_after_five_failures(
    empty: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_MODE", "password")
    reset_settings_cache()
    auth.create_user(empty, "olga", auth.OPERATOR, "operator-pass-1")
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric  # nothing is shown before signing in
    # password managers fill the form (not "new-password", which makes them offer a new one)
    assert at.text_input(key="login_name").proto.autocomplete == "username"
    assert at.text_input(key="login_password").proto.autocomplete == "current-password"
    at.text_input(key="login_name").set_value("olga")
    at.text_input(key="login_password").set_value("wrong")
    at.button[0].click().run()
    assert "Sign-in failed" in texts(at)
    at.text_input(key="login_password").set_value("operator-pass-1")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["user"] == auth.User("olga", auth.OPERATOR)
    assert metric(at, "Open alerts") == "0"
    assert "Authentication is off" not in texts(at)
    # five failures pause the name: then even the right password gets the same answer as a wrong one
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=60).run()
    for _ in range(5):
        at.text_input(key="login_name").set_value("olga")
        at.text_input(key="login_password").set_value("nope-nope")
        at.button[0].click().run()
    wrong = [shown(e.value) for e in at.error]
    at.text_input(key="login_password").set_value("operator-pass-1")
    at.button[0].click().run()
    assert [shown(e.value) for e in at.error] == wrong == [f"Sign-in failed: {auth.SIGN_IN_REFUSED}."]
    assert "user" not in at.session_state


def test_a_page_refuses_a_role_without_the_permission(empty: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "password")
    reset_settings_cache()
    at = AppTest.from_file(str(ROOT / PAGES["bot_health"]), default_timeout=60).run()
    assert "Please sign in first." in texts(at)
    assert not at.metric
    auth.create_user(empty, "ann", auth.ANALYST, "analyst-pass-1")
    ann = {"user": auth.User("ann", auth.ANALYST)}
    for page, action in (("pages/emergency.py", "conversations.stop"), ("pages/admin.py", "users.manage")):
        at = AppTest.from_file(str(ROOT / page), default_timeout=60)
        at.session_state["user"] = ann["user"]
        at.run()
        assert not at.exception
        assert [e.value for e in at.error] == [
            f"You don't have permission to open this page: your role (analyst) may not `{action}`. "
            "An admin can change your role."
        ], page
        assert not at.button and not at.text_input and not at.metric, f"{page} shows controls to an analyst"
    # the same analyst opens a page the role may see
    at = run_page("bot_health", session=ann)
    assert not at.error
    assert "No bot operations in the last 1h." in texts(at)


def test_a_disabled_account_is_signed_out_on_its_next_page_run(
    empty: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_MODE", "password")
    reset_settings_cache()
    auth.create_user(empty, "dan", auth.OPERATOR, "operator-pass-9")
    with empty.begin() as conn:
        conn.execute(sa.update(schema.users).where(schema.users.c.name == "dan").values(disabled=True))
    at = run_page("bot_health", session={"user": auth.User("dan", auth.OPERATOR)})
    assert "Please sign in first." in texts(at)


def test_every_table_can_be_downloaded(demo: Store) -> None:
    for name, tabs in TAB_CHARTS.items():
        for tab in tabs:  # each tab's tables, as its tab shows them
            at = run_page(name, query={"tab": tab})
            tables = len(at.dataframe)
            downloads = len(at.get("download_button"))
            assert downloads >= tables, f"{name}, {tab}: {tables} tables, {downloads} downloads"
            # a missing value is an empty cell: Streamlit writes the word "None" unless told otherwise
            assert all(d.proto.placeholder == "" and d.proto.HasField("placeholder") for d in at.dataframe), (
                name,
                tab,
            )


def test_every_service_reads_a_window_name_a_timedelta_and_its_number_alike(demo: Store) -> None:
    now = utcnow()
    assert window_seconds("7d") == window_seconds(timedelta(days=7)) == 7 * 86_400
    llm = LLMObservabilityService(demo)
    assert (
        llm.totals("24h", now=now) == llm.totals(timedelta(hours=24), now=now) == llm.totals(86_400, now=now)
    )
    tracker = PerformanceTracker(demo)
    hour = [tracker.get_all_bot_stats(w, now=now) for w in ("1h", timedelta(hours=1), 3600)]
    assert {b: s["count"] for b, s in hour[0].items()} == {b: s["count"] for b, s in hour[1].items()}
    assert {b: s["p95"] for b, s in hour[0].items()} == {b: s["p95"] for b, s in hour[2].items()}
    collector = BotMetricsCollector(demo)
    by_minutes = collector.get_system_summary(60, now=now)
    assert by_minutes == collector.get_system_summary("1h", now=now)
    assert by_minutes["window_minutes"] == 60
    with pytest.raises(ValueError, match="window"):
        llm.totals("soon", now=now)


def test_every_page_runs_on_postgresql_with_the_services_numbers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.from_url(pg_url)
    store.migrate()
    now = utcnow()
    load_demo(store, hours=6, now=now, rate_per_min=3)
    score_pending(store, now)
    _use_store(monkeypatch, pg_url)
    try:
        for name in PAGES:
            run_page(name)
        d = LLMObservabilityService(store).dashboard(86_400)
        at = run_page("token_analytics", query={"range": "24h"})
        assert metric(at, "LLM requests") == f"{d.total_requests:,}"
        assert metric(at, "Input tokens") == f"{d.input_tokens:,}"
    finally:
        store.dispose()
        reset_settings_cache()


def test_pages_say_states_and_badges_in_words_not_emoji() -> None:
    """Debian's Chromium, with no emoji font, draws an emoji as an empty box ("▯ stopped"), so a
    state or badge the operator relies on is a word; only the translations of old links' emoji
    filter values (OLD_*) may hold them."""
    emoji = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf\u2b50]")
    sources = [
        ROOT / "Home.py",
        *sorted((ROOT / "pages").glob("*.py")),
        *sorted((ROOT / "observability/ui").glob("*.py")),
    ]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if emoji.search(line.replace("✓", "")) and not line.lstrip().startswith(("OLD_", "#"))
    ]
    assert not found, found


def test_every_live_part_of_a_page_checks_the_session_on_its_own_runs() -> None:
    """A fragment's timed rerun skips the page's `require`: every live part goes through `ui.live`,
    which checks the session again (the browser test shows a tab left open after sign-out)."""
    sources = [ROOT / "Home.py", *sorted((ROOT / "pages").glob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "st.fragment(" in line and "run_every" in line
    ]
    assert not found, found
    assert sum(path.read_text().count("@ui.live(") for path in sources) > 20


# ---- downloads hold what the tables show; labels say what they measure ------------------------------


class RecordingStorage(MemoryMediaFileStorage):
    """Streamlit's in-memory media storage, keeping what each download button offers (AppTest
    drops its storage after a run) so a test reads the CSV a user would get."""

    files: dict[str, bytes] = {}

    def load_and_get_id(
        self, path_or_data: str | bytes, mimetype: str, kind: Any, filename: str | None = None
    ) -> str:
        file_id = super().load_and_get_id(path_or_data, mimetype, kind, filename)
        data = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        RecordingStorage.files[file_id] = data
        return file_id


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    RecordingStorage.files = {}
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", RecordingStorage)
    return RecordingStorage.files


def csv_of(at: AppTest, key: str) -> pd.DataFrame:
    """The CSV the download button `key` gives, as a frame of strings."""
    [button] = [b for b in at.get("download_button") if b.proto.id.endswith(key)]
    data = RecordingStorage.files[Path(button.proto.url).stem]
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def plotted(values: list | dict) -> list:
    """A trace's values as Plotly's JSON holds them (a list, or base64 with a dtype)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def chart(at: AppTest, key: str) -> dict:
    [spec] = [c.proto.spec for c in at.get("plotly_chart") if c.proto.id.endswith(key)]
    return json.loads(spec)


LINK = re.compile(r"^\./[a-z_]+\?")


def test_a_csv_holds_the_ids_its_table_links_to(demo: Store, downloads: dict[str, bytes]) -> None:
    """Top conversations showed conversation ids (links to the conversation) while their CSV held
    `./conversations?conversation=conv-…`: a CSV holds the ids, as every other column, and no CSV
    of any tab holds a console link."""
    for name, query, key in (("cost_tracking", {"tab": "Top conversations", "range": "24h"}, "ct_top"),
                             ("token_analytics", {"tab": "Top conversations", "range": "1h"}, "ta_top_table"),
                             ("token_analytics", {"tab": "Top conversations", "range": "7d"}, "ta_top_table")):  # fmt: skip
        at = run_page(name, query)
        [table] = [d.value for d in at.dataframe if "conversation_id" in d.value]
        shown = [re.search(r"conversation=([^&]+)", link).group(1) for link in table["conversation_id"]]
        assert shown, f"{name}: no conversation in the demo's top conversations"
        got = csv_of(at, f"{key}_csv")
        assert got["conversation_id"].tolist() == shown, name
        assert got["total_tokens"].tolist() == [str(v) for v in table["total_tokens"]]
    at = run_page("cost_tracking", {"tab": "Anomalies"})
    [table] = [d.value for d in at.dataframe if "z_score" in d.value]
    got = csv_of(at, "ct_anomalies_csv")
    report = frames.cost_report(demo, "7d")
    assert set(got["trace_id"]) <= set(report["anomalies"]["trace_id"]) and len(got) == len(table)
    for name in PAGES:  # every tab of every page
        for tab in [t.label for t in run_page(name).tabs] or [None]:
            at = run_page(name, {"tab": tab} if tab else None)
            for button in at.get("download_button"):
                cells = csv_of(at, button.proto.id.rsplit("-", 1)[-1]).stack()
                assert not cells.str.match(LINK).any(), f"{name}, {tab}: {button.proto.id} holds links"
    # and a page that forgets: ui.table refuses a link column without the frame of ids to download
    with pytest.raises(ValueError, match="download="):
        common.table(
            pd.DataFrame({"c": ["./x?y=1"]}),
            "x.csv",
            "k",
            column_config={"c": st.column_config.LinkColumn("C")},
        )


def add_conversations(store: Store, bot: str, n: int, *, scored: bool = True, resolved: bool = False,
                      minutes_ago: float = 30.0) -> None:  # fmt: skip
    """`n` conversations of `bot` active `minutes_ago`, scored (quality spread over 0-1) or not."""
    now = utcnow()
    rows = [{"id": f"{bot}-{i}", "bot": bot, "started_at": now - timedelta(minutes=minutes_ago + 5),
             "last_activity_at": now - timedelta(minutes=minutes_ago), "message_count": 4,
             **({"sentiment": 0.1, "sentiment_trend": "stable", "topic_drift": 0.2, "engagement": 0.5,
                 "resolved": resolved, "quality_score": (i % 10) / 10 + 0.05, "scored_at": now} if scored else {})}
            for i in range(n)]  # fmt: skip
    with store.begin() as conn:
        conn.execute(sa.insert(schema.conversations), rows)
    common.clear_caches()


def test_conversation_quality_says_which_conversations_each_view_covers(
    demo_copy: Store, downloads: dict[str, bytes]
) -> None:
    """The tiles count every conversation of the window; the table, its CSV, the scatter and the
    picker hold the 200 most recently active and say so; the quality histogram counts all of them
    (in SQL)."""
    add_conversations(demo_copy, "bulk_bot", 230, minutes_ago=300)  # older than the demo's last hours
    summary = frames.quality_summary(demo_copy, "24h")
    total, scored = int(summary["conversations"].sum()), int(summary["scored"].sum())
    assert total > frames.SCORE_ROWS
    said = f"the {frames.SCORE_ROWS} most recently active of {total:,} conversations in the last 24h"
    at = run_page("conversation_quality")
    assert metric(at, "Conversations, last 24h") == f"{total:,}"
    assert any(said in c.value for c in at.caption), [c.value for c in at.caption]
    assert len(csv_of(at, "cq_table_csv")) == len(at.dataframe[0].value) == frames.SCORE_ROWS
    at = run_page("conversation_quality", {"tab": "Sentiment and engagement"})
    assert any(said in c.value for c in at.caption)
    hist = chart(at, "cq_hist")
    assert sum(sum(plotted(t["y"])) for t in hist["data"]) == scored  # every scored one, not 200
    assert any(f"All {scored:,} scored conversations" in c.value for c in at.caption)
    at = run_page("conversation_quality", {"tab": "One conversation"})
    assert any(said in c.value for c in at.caption)
    assert len(at.selectbox(key="conversation").options) == frames.SCORE_ROWS


def test_histogram_counts_every_scored_conversation_in_its_bin_on_postgresql(pg_store: Store) -> None:
    add_conversations(pg_store, "pg_bot", 30)
    add_conversations(pg_store, "pg_unscored", 2, scored=False)
    rows = conversations.quality_histogram(pg_store, "24h")
    # quality (i % 10) / 10 + 0.05: three of each of 0.05, 0.15, …, 0.95, in bins 1, 3, …, 19
    assert rows == [{"bot": "pg_bot", "bin": b, "conversations": 3} for b in range(1, 20, 2)]


def test_a_zero_resolution_rate_is_a_labelled_bar_and_only_bots_without_data_are_named(
    demo_copy: Store,
) -> None:
    """lead_bot's 5 scored conversations, all unresolved, had no visible bar (0 %) under a title
    saying "no bar: none of its conversations has that measure yet"."""
    add_conversations(demo_copy, "zero_bot", 5, resolved=False)
    add_conversations(demo_copy, "fresh_bot", 2, scored=False)
    at = run_page("conversation_quality")
    fig = chart(at, "cq_by_bot")
    [rate] = [t for t in fig["data"] if t["name"] == "Resolution rate"]
    at_zero = rate["x"].index("zero_bot")
    assert plotted(rate["y"])[at_zero] == 0.0 and rate["text"][at_zero] == "0.0%"
    assert all(len(t["text"]) == len(t["x"]) for t in fig["data"])  # every bar says its value
    assert "no bar" not in fig["layout"]["title"]["text"].lower()
    [note] = [c for c in texts(at).splitlines() if c.startswith("No bar")]
    assert (
        "fresh_bot (no conversation scored yet)" in note and "zero_bot" not in note and "lead_bot" not in note
    )


def test_the_two_handoff_p95s_say_what_each_measures(demo: Store) -> None:
    """AI performance's Handoff P95 (the whole handoff bots record) and Bot health's "handoff step ·
    execute" P95 (the handoff service's own operation) differ: each says what it is."""
    at = run_page("ai_performance", {"range": "24h"})
    [tile] = [m for m in at.metric if m.label.startswith("Handoff P95")]
    p95 = BotMetricsCollector(demo).handoff_summary(1440)["p95_duration_ms"]
    assert tile.label == "Handoff P95, whole handoff" and tile.value == f"{p95:,.0f} ms"
    assert "record_handoff" in tile.proto.help and "handoff step · execute" in tile.proto.help
    at = run_page("bot_health", {"range": "24h"})
    [table] = [d for d in at.dataframe if "alert_p95_ratio" in d.value]
    bot_help = json.loads(table.proto.columns)["bot"]["help"]
    assert "execute" in bot_help and "Handoff P95, whole handoff" in bot_help


def test_a_page_opened_from_another_reads_its_shared_filters_from_its_own_url() -> None:
    """An alert's link to `conversation_quality?tab=Handoffs` opened the tab the Alerts page had
    open: on a page change every shared key's kept value is dropped, so each widget reads its URL."""

    def opened_from_alerts() -> None:
        import streamlit as st

        from observability.ui import common

        st.session_state.setdefault(common.OPEN_PAGE_KEY, "alerts")
        for key, value in (
            ("tab", "History"),
            ("range", "7d"),
            ("h_sev", ["critical"]),
        ):  # as Alerts left them
            common.in_url(key)
            st.session_state.setdefault(key, value)
        st.session_state.setdefault("note", "kept")  # not bound to the URL: left alone
        common.filters_from_the_url("conversation_quality")
        kept = {k: st.session_state.get(k) for k in ("tab", "range", "h_sev", "note")}
        st.write(f"{kept}")

    at = AppTest.from_function(opened_from_alerts)
    at.query_params["tab"] = "Handoffs"
    at.run()
    assert not at.exception, at.exception
    assert at.markdown[0].value == "{'tab': None, 'range': None, 'h_sev': None, 'note': 'kept'}"


def test_pages_bind_widgets_to_the_url_only_through_in_url() -> None:
    """A widget bound with `bind="query-params"` directly is not recorded by `ui.in_url`, so its value
    would outlive a page switch and filter the page's next visit from a link that does not name it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = [
        *root.joinpath("pages").glob("*.py"),
        root / "Home.py",
        *root.joinpath("observability").rglob("*.py"),
    ]
    direct = [str(p.relative_to(root)) for p in sources if re.search(r"[(,]\s*bind\s*=", p.read_text())]
    assert direct == []
    assert any("ui.in_url(" in p.read_text() for p in root.joinpath("pages").glob("*.py"))
