# ruff: noqa: E402  (tests/ goes on sys.path before the imports)
"""Figures that appear in two places agree (issue 11): on one demo store, a figure shown by two
pages, by a page and an alert rule input, or by a page and `/metrics` is the same number, computed
through the public services and read back from the pages under AppTest and from the /metrics
text; and a green "within target" headline never stands above a table with a breach.

The demo store gets one deliberate SLA breach in the alert window: lead_bot's `process`
operation, 30 operations at 4,000 ms in the last two minutes (target P95 1,500 ms).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser.demo_data import load_demo
from streamlit.testing.v1 import AppTest

from observability import events
from observability.alerting import inputs
from observability.alerting import rules as alert_rules
from observability.analytics import catalog, monitoring, sla, threshold_figures
from observability.analytics.agent_costs import DecisionCost, DecisionCostTracker
from observability.analytics.bot_metrics import BotMetricsCollector
from observability.analytics.llm_observability import LLMObservabilityService
from observability.settings import get_settings, reset_settings_cache
from observability.store import Store, ingest, rollups, schema
from observability.timeutil import to_epoch, utcnow, window_seconds
from observability.ui import common, frames
from observability.worker.metrics import StoreCollector


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('agree') / 'store.db'}"
    store = Store.from_url(url)
    store.migrate()
    now = utcnow()
    load_demo(store, hours=2, now=now)
    slow = [["op", uuid.uuid4().hex, to_epoch(now - timedelta(seconds=120 - 3 * i)), "lead_bot", "process",
             4000.0, True, False, None] for i in range(30)]  # fmt: skip
    assert ingest.write_batch(store, slow).rejected == 0
    rollups.run(store)
    store.dispose()
    return url


@pytest.fixture
def demo(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("DATABASE_URL", demo_url)
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    store = Store.from_url(demo_url)
    yield store
    store.dispose()
    reset_settings_cache()


def run(path: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def every_tab(path: str, query: dict | None = None) -> Iterator[AppTest]:
    """The page run once per tab of its lazy tabs (only the open tab's content runs), the first
    tab as a plain link opens it; a page without tabs once."""
    first = run(path, query)
    yield first
    for label in [t.label for t in first.tabs][1:]:
        yield run(path, {**(query or {}), "tab": label})


def table(at: AppTest, column: str):  # noqa: ANN201 - a pandas frame
    """The page's one table with `column` (AppTest elements carry no key)."""
    [df] = [d.value for d in at.dataframe if column in d.value.columns]
    return df


def metric(at: AppTest, label: str) -> str:
    [value] = [m.value for m in at.metric if m.label == label]
    return value


def recorded_metrics_now(store: Store, family: str) -> float | None:
    """The value the shipped threshold rule on `family` sees now, through the worker's own inputs."""
    settings = get_settings()
    [rule] = [r for r in alert_rules.default_rules(settings) if r.family == family]
    [sample] = inputs.recorded_metrics(store, settings, utcnow(), [rule])
    return sample.value


def test_the_catalog_names_each_figure_once_with_a_unit_and_a_window() -> None:
    labels = [m.label for m in catalog.CATALOG.values()]
    assert len(labels) == len(set(labels)), "two figures share a label"
    assert all(m.unit in catalog.UNITS and m.formula and m.window for m in catalog.CATALOG.values())
    caches = {catalog.get(n).label for n in ("operation_cache_hit_rate", "response_cache_hit_rate",
                                              "llm_cache_hit_rate", "prompt_cache_token_share")}  # fmt: skip
    assert len(caches) == 4


@pytest.mark.parametrize("window", ["1h", "24h"])
def test_bot_health_headline_never_contradicts_its_table(demo: Store, window: str) -> None:
    at = run("pages/bot_health.py", {"range": window})
    rows = table(at, "alert_p95_ratio")
    breaching = rows[rows["status"] == sla.BREACH]
    greens = [s.value for s in at.success if "within" in s.value]
    if breaching.empty:
        assert greens and not at.error
    else:
        assert not greens, f"green headline above {len(breaching)} breaching rows"
        shown = "\n".join(e.value for e in at.error)
        for r in breaching.itertuples(index=False):
            assert f"**{common.md_escape(sla.pair_label(r.bot, r.operation))}**" in shown
    measured = rows[rows["status"] != sla.NO_DATA]
    assert metric(at, "SLA compliance") == f"{(measured['status'] == sla.WITHIN).sum()}/{len(measured)}"
    assert f"Window: last {window}" in "\n".join(c.value for c in at.caption)


def test_the_sla_breach_of_the_alert_window_is_the_same_on_both_pages_the_alert_input_and_metrics(
    demo: Store,
) -> None:
    settings = get_settings()
    window = sla.alert_window_s()
    now = utcnow()
    ev = sla.evaluate(demo, window, now=now)
    process = next(r for r in ev.rows if (r.bot, r.operation) == ("lead_bot", "process"))
    assert "p95" in process.breaches

    # the alert input: the worst P95 / target of lead_bot is the evaluation's process row
    alert = inputs.sla_ratios(demo, settings, now)["lead_bot.sla_p95_ratio"]
    assert alert["value"] == pytest.approx(process.p95_ratio) and alert["value"] > 1

    # /metrics at the same instant
    collector_now = scrape_at(demo, now)
    assert collector_now[
        ("obs_sla_p95_ratio", (("bot", "lead_bot"), ("operation", "process")))
    ] == pytest.approx(process.p95_ratio)
    assert collector_now[("obs_sla_breach", (("bot", "lead_bot"), ("operation", "process")))] == 1.0

    # Bot health's alert column and headline, the Overview's column
    bh = run("pages/bot_health.py")
    rows = table(bh, "alert_p95_ratio").set_index(["bot", "operation"])
    assert rows.loc[("lead_bot", "process"), "alert_p95_ratio"] == pytest.approx(process.p95_ratio, rel=0.05)
    assert any(
        common.md_escape("lead_bot · process") in w.value and "sla_violation" in w.value for w in bh.warning
    )
    ov = run("Home.py")
    bots = table(ov, "slow_operations").set_index("bot")
    assert "process" in bots.loc["lead_bot", "slow_operations"].split(", ")
    breaching_now = {(r.bot, r.operation) for r in monitoring.sla_breaches_now(demo)}
    shown = {(b, op) for b, ops in bots["slow_operations"].items() for op in ops.split(", ") if op}
    assert shown == breaching_now


def scrape_at(store: Store, now) -> dict:  # noqa: ANN001
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, get_settings(), now=lambda: now))
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_handoff_rates_exclude_blocked_and_the_alert_figure_is_the_alerts(demo: Store) -> None:
    collector = BotMetricsCollector(demo)
    window = sla.alert_window_s()
    before = collector.alert_metrics(window_minutes=window / 60)
    at = run("pages/ai_performance.py")
    after = collector.alert_metrics(window_minutes=window / 60)
    label = f"Handoff failure rate, last {window // 60:g} min (handoff_failure alert)"
    shown = metric(at, label)
    assert shown in {
        f"{v['handoff.failure_rate']:.1%}" if v["handoff.count"] else "–" for v in (before, after)
    }
    hour = collector.handoff_summary(60)
    assert hour["blocked"] > 0  # the demo blocks some circular handoffs
    assert metric(at, "Handoff success rate") == f"{hour['success_rate']:.1%}"
    assert hour["success_rate"] == pytest.approx(hour["successful_handoffs"] / hour["attempted_handoffs"])
    assert metric(at, "Blocked handoff rate") == f"{hour['blocked_rate']:.1%}"


def test_overview_spend_today_equals_the_metric_catalog_formatting_of_the_service(demo: Store) -> None:
    at = run("Home.py")
    k = monitoring.overview_kpis(demo)
    assert metric(at, catalog.get("spend_today_usd").label) == f"${k.spend_today_usd:,.2f}"


@pytest.fixture
def ops_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store with tracked operations of bots without LLM calls: buyer_bot's `process` 25 times at
    4,000 ms (P95 target 1,800 ms) and seller_bot's 5 times (fewer than ALERT_MIN_SAMPLES), in the
    last 2 minutes; three LLM calls of lead_bot so that the Overview draws its tables."""
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    store = Store.from_url(url)
    store.migrate()
    now = utcnow()
    ops = [["op", uuid.uuid4().hex, to_epoch(now - timedelta(seconds=110 - 4 * i)), bot, "process", 4000.0,
            True, False, None] for bot, n in (("buyer_bot", 25), ("seller_bot", 5)) for i in range(n)]  # fmt: skip
    calls = [["llm", uuid.uuid4().hex, to_epoch(now - timedelta(seconds=60 + i)), "lead_bot", "qualifier", "qualify",
              "claude-sonnet-4-5", "anthropic", 500, 100, 0, 0, 900.0, False, None, f"c{i}", True, None]
             for i in range(3)]  # fmt: skip
    assert ingest.write_batch(store, ops + calls).rejected == 0
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    yield store
    store.dispose()
    reset_settings_cache()


def test_overview_column_and_bot_health_alert_note_list_the_same_breaches(ops_only: Store) -> None:
    """Overview listed only bots with LLM calls, and Bot health's note counted pairs over too few
    operations: both now read `sla.alert_breaches`."""
    assert get_settings().alert_min_samples > 5
    expected = {(r.bot, r.operation) for r in sla.alert_breaches(ops_only)}
    assert expected == {("buyer_bot", "process")}
    ov = run("Home.py")
    bots = table(ov, "slow_operations").set_index("bot")
    assert {(b, op) for b, ops in bots["slow_operations"].items() for op in ops.split(", ") if op} == expected
    bh = run("pages/bot_health.py")
    [note] = [w.value for w in bh.warning if "sla_violation" in w.value]
    assert common.md_escape("buyer_bot · process") in note and common.md_escape("seller_bot") not in note


def test_live_monitoring_response_time_now_is_what_the_alert_rule_judges_and_status_follows_it(
    demo: Store,
) -> None:
    """The tile, the drill-down's "now" and its status show the figure `high_response_time` judges
    (the mean LLM latency of the alert window): the page said "warning" on the LLM P95 while the
    rule, on another figure, never went pending."""
    # the window moves with the clock (calls leave it while a loaded machine runs the page): what
    # the rule sees is read just before and just after, and the page shows one of the two
    before = recorded_metrics_now(demo, "response_time")
    at = run("pages/live_monitoring.py", {"metric": "response_time", "timeframe": "1h"})
    after = recorded_metrics_now(demo, "response_time")
    label = catalog.get("response_time_alert_ms").label
    shown = [m.value for m in at.metric if m.label == label]
    assert len(shown) == 2 and shown[0] == shown[1]  # the tile and the drill-down's "now"
    assert shown[0] in (f"{before:,.0f} ms", f"{after:,.0f} ms")
    hour = monitoring.live_metrics(demo)["response_time_avg"]
    assert shown[0] != f"{hour:,.0f} ms", "'now' must not be the hour's mean"
    d = monitoring.drill_down(demo, "response_time", "1h")
    rule_sees = recorded_metrics_now(demo, "response_time")
    assert d.current_value == pytest.approx(rule_sees, rel=0.02)
    expected = monitoring.threshold_status(
        float(shown[0].removesuffix(" ms").replace(",", "")), d.thresholds, "up"
    )
    assert metric(at, "Status now").endswith(expected)
    assert not at.dataframe, "the drill-down's table only repeated the chart"
    [picker] = at.selectbox
    assert picker.format_func("response_time") == catalog.get("llm_mean_bucket_ms").label
    assert all(
        picker.format_func(k) == catalog.get(m.series_metric).label for k, m in monitoring.METRICS.items()
    )


def test_live_monitoring_shows_no_percentiles_of_per_minute_counts(demo: Store) -> None:
    at = run("pages/live_monitoring.py", {"metric": "conversations", "timeframe": "1h"})
    labels = {m.label for m in at.metric}
    assert not {lab for lab in labels if lab.startswith(("P50", "P95", "P99"))}
    d = monitoring.drill_down(demo, "conversations", "1h")
    assert d.percentile_data == {}
    assert metric(at, "Total, last 1h") == f"{d.extra['total']:,.0f}"
    # the total counts each conversation once, not once per minute it was active
    m = schema.messages
    with demo.connect() as conn:
        distinct = conn.execute(
            sa.select(sa.func.count(sa.distinct(m.c.conversation_id))).where(
                m.c.ts >= utcnow() - timedelta(hours=1)
            )
        ).scalar()
    assert d.extra["total"] == pytest.approx(distinct, abs=2)  # the clock moved between the two reads


def test_the_conversations_total_counts_a_conversation_active_in_many_minutes_once(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'talk.db'}")
    store.migrate()
    now = utcnow()
    start = to_epoch(now) - 1800
    ingest.write_batch(store, [events.message(uuid.uuid4().hex, start + minute * 60, conversation_id=f"c{c}", role="user",
                                       text="hello", bot="lead_bot", account_id=None)
                        for c in range(3) for minute in range(10)])  # fmt: skip
    d = monitoring.drill_down(store, "conversations", "1h", now=now)
    assert d.historical_data["value"].sum() == 30  # three conversations in each of ten minutes
    assert d.extra["total"] == 3
    store.dispose()


@pytest.mark.parametrize("name", sorted(threshold_figures.CATALOG_NAMES))
def test_live_monitoring_status_judges_what_the_threshold_rule_judges(demo: Store, name: str) -> None:
    d = monitoring.drill_down(demo, name, "1h")
    assert monitoring.METRICS[name].now_metric == threshold_figures.CATALOG_NAMES[name]
    assert catalog.get(threshold_figures.CATALOG_NAMES[name]).alert_metric == name
    assert d.current_value == pytest.approx(recorded_metrics_now(demo, name))


def test_the_three_spend_figures_say_what_they_count_and_equal_their_services(demo: Store) -> None:
    """Overview's spend today (all providers), Live monitoring's Claude spend today (Claude models only)
    and Cost tracking's month to date (all providers): one catalog entry each, labels that tell
    them apart, each equal to its service."""
    today, claude, month = (catalog.get(n) for n in ("spend_today_usd", "claude_cost_today_usd",
                                                     "spend_month_to_date_usd"))  # fmt: skip
    assert "all providers" in today.label and "all providers" in month.label and "Claude" in claude.label
    assert (
        "every provider" in today.help
        and "every provider" in month.help
        and "Claude calls only" in claude.help
    )
    assert "today" in today.label and "today" in claude.label and "month to date" in month.label
    assert "00:00 UTC today" in today.window == claude.window and "1st of the month" in month.window
    ov, lm, ct = run("Home.py"), run("pages/live_monitoring.py"), run("pages/cost_tracking.py")
    assert metric(ov, today.label) == f"${monitoring.overview_kpis(demo).spend_today_usd:,.2f}"
    assert metric(lm, claude.label) == f"${monitoring.live_metrics(demo)['claude_cost_today']:,.2f}"
    svc = LLMObservabilityService(demo)
    assert metric(ct, month.label) == f"${svc.spend_forecast()['spend_mtd_usd']:,.2f}"
    explained = "\n".join(c.value for c in ct.caption)
    assert today.label in explained and claude.label in explained


@pytest.fixture
def anomalies_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """Agent `writer`: 2,000 calls at $0.01 and 120 at $1.00 (all anomalous); agent `router`: 200
    calls at $0.001 and one at $0.05 (z far above 3, but under the $0.10 dollar threshold)."""
    url = f"sqlite:///{tmp_path / 'costs.db'}"
    store = Store.from_url(url)
    store.migrate()
    now = utcnow()
    calls = (
        [("writer", 0.01)] * 2000 + [("writer", 1.0)] * 120 + [("router", 0.001)] * 200 + [("router", 0.05)]
    )
    DecisionCostTracker(store).record_many([
        DecisionCost(agent, "answer", 100, 10, cost_usd=cost, bot="lead_bot", model="claude-sonnet-4-5",
                     provider="anthropic", timestamp=now - timedelta(seconds=1 + (i % 3000)))
        for i, (agent, cost) in enumerate(calls)
    ])  # fmt: skip
    rollups.run(store)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "none")
    reset_settings_cache()
    common.clear_caches()
    yield store
    store.dispose()
    reset_settings_cache()


def test_cost_anomalies_need_both_thresholds_and_the_listing_pages_through_all_of_them(
    anomalies_store: Store,
) -> None:
    settings = get_settings()
    assert (settings.cost_anomaly_min_usd, settings.cost_anomaly_z) == (0.10, 3.0)
    first = frames.cost_report(anomalies_store, "24h")
    assert first["anomaly_count"] == 120 and first["pages"] == 3  # the router's $0.05 spike is not one
    seen: list[str] = []
    for page in (1, 2, 3):
        rep = frames.cost_report(anomalies_store, "24h", anomaly_page=page)
        seen += list(rep["anomalies"]["trace_id"])
        assert set(rep["anomalies"]["agent"]) == {"writer"} and (rep["anomalies"]["cost_usd"] >= 0.10).all()
    assert len(seen) == len(set(seen)) == 120
    at = run("pages/cost_tracking.py", {"range": "24h", "anomaly_page": "3", "tab": "Anomalies"})
    shown = "\n".join(e.value for e in at.error)
    assert "120 anomalous call(s)" in shown and "page 3 of 3" in shown
    assert len(table(at, "z_score")) == 20
    rule = "\n".join(c.value for c in at.caption)
    assert "$0.10" in rule and "3 standard deviations" in rule
    # the markers are single calls on their own axis, at their cost (no band at y = 0)
    [chart] = [c for c in at.get("plotly_chart") if "cost of each call" in c.proto.spec]
    spec = json.loads(chart.proto.spec)
    ys = [y for t in spec["data"] if t.get("mode") == "markers" for y in plotted(t["y"])]
    assert ys and min(ys) >= 0.10


def plotted(values: list | dict) -> list[float]:
    """A trace's values as Plotly's JSON holds them (a list, or base64 with a dtype)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return [float(v) for v in values if v is not None]


def test_alerts_per_hour_bars_span_their_hour_and_the_axis_spans_the_day_when_all_fall_in_one_hour() -> None:
    from datetime import datetime

    import pandas as pd

    from observability.ui import charts

    now = datetime(2026, 12, 2, 21, 14)
    counts = pd.DataFrame({"hour": [datetime(2026, 12, 2, 20)] * 2, "severity": ["critical", "warning"],
                           "alerts": [3, 1]})  # fmt: skip
    start, end = charts.last_hours(24, now)
    assert (end - start).total_seconds() == 24 * 3600 and end == datetime(2026, 12, 2, 22)
    fig = charts.bar(counts, x="hour", y="alerts", color="severity", barmode="stack", period_s=3600,
                     x_range=(start, end))  # fmt: skip
    assert {t.width for t in fig.data} == {3_600_000.0} and {t.offset for t in fig.data} == {0}
    axis = fig.layout.xaxis
    assert axis.type == "date" and [pd.Timestamp(v) for v in axis.range] == [
        pd.Timestamp(start),
        pd.Timestamp(end),
    ]
    assert axis.dtick % 3_600_000 == 0 and "%H:%M" in axis.tickformat  # whole hours, no fractions of a second


def test_activity_feed_unread_and_chart_follow_the_range_and_severity_filter(demo: Store) -> None:
    from observability.analytics import activity

    at = run("pages/activity_feed.py", {"range": "24h", "severity": "high"})
    user = common.LOCAL_USER.name
    unread = activity.unread_count(demo, user, "24h", severities=["high"])
    assert unread < activity.unread_count(demo, user, "7d")
    assert metric(at, f"Unread in range for {user}") == f"{unread:,}"
    [chart] = [c for c in at.get("plotly_chart") if "by severity, last 24h" in c.proto.spec]
    traces = json.loads(chart.proto.spec)["data"]
    assert {t["name"] for t in traces} == {"high"}
    expected = sum(r["events"] for r in activity.severity_counts(demo, "24h", severities=["high"]))
    assert sum(sum(plotted(t["y"])) for t in traces) == expected > 0
    # a conversation id opens the conversation (the conversations page reads ?conversation=)
    event = events.activity(uuid.uuid4().hex, to_epoch(utcnow()), event_type="note", title="a note", description=None,
                            severity="low", category="test", account_id=None, conversation_id="conv-linked")  # fmt: skip
    assert ingest.write_batch(demo, [event]).rejected == 0
    common.clear_caches()
    at = run("pages/activity_feed.py", {"range": "7d"})
    rows, _ = activity.feed_page(demo, user, window="7d")
    ids = [r["conversation"] for r in rows if r["conversation"]]
    links = [v for v in at.dataframe[0].value["conversation"] if isinstance(v, str)]
    assert ids and links == [common.query_link("pages/conversations.py", conversation=c) for c in ids]


def test_handoff_is_shown_as_the_handoff_step_never_as_a_bot(demo: Store) -> None:
    assert "handoff" not in monitoring.known_bots(demo)
    at = run("pages/bot_health.py")
    [bots] = [m for m in at.multiselect if m.label.startswith("Bots")]
    # the step is offered by its name, as its SLA row and its alerts call it, never as a bot "handoff"
    assert "handoff" not in bots.options and "lead_bot" in bots.options and "handoff step" in bots.options
    rows = table(at, "alert_p95_ratio")
    assert "handoff" not in set(rows["bot"]) and "handoff step" in set(rows["bot"])
    [chart] = [c for c in at.get("plotly_chart") if "against SLA targets" in c.proto.spec]
    xs = {x for t in json.loads(chart.proto.spec)["data"] for x in t["x"]}
    assert "handoff step · execute" in xs and not any(x.startswith("handoff ·") for x in xs)


def test_quality_is_a_percentage_everywhere_through_the_catalog(demo: Store) -> None:
    from observability.analytics.conversation_scoring import score_pending
    from observability.ui import fmt

    assert fmt.text("quality_score", 0.4278) == "42.8%"
    score_pending(demo, utcnow())
    common.clear_caches()
    at = run("pages/conversation_quality.py", {"range": "24h"})
    shown = metric(at, "Mean quality")
    assert shown.endswith("%") and 0 <= float(shown.rstrip("%")) <= 100


def test_conversations_today_counts_the_conversations_of_todays_messages(tmp_path: Path) -> None:
    """A conversation begun before midnight that goes on after it is one of today's: the tile read
    "Conversations today 0" beside hundreds of today's messages when it counted only those started
    today. Active conversations (last 15 minutes) are among today's once midnight is 15 minutes past."""
    from datetime import datetime

    store = Store.from_url(f"sqlite:///{tmp_path / 'midnight.db'}")
    store.migrate()
    now = datetime(2026, 12, 2, 0, 40)
    msgs = [events.message(uuid.uuid4().hex, to_epoch(now - timedelta(minutes=m)), conversation_id=conv, role="user",
                           text="hello", bot="lead_bot", account_id=None)
            for conv, minutes in (("conv-overnight", (60, 50, 30, 5)), ("conv-yesterday", (90, 80)),
                                  ("conv-new", (20, 2))) for m in minutes]  # fmt: skip
    assert ingest.write_batch(store, msgs).rejected == 0
    live = monitoring.live_metrics(store, now=now)
    assert live["messages_processed"] == 4  # 30, 5, 20 and 2 minutes before 00:40
    assert live["conversations_total_today"] == 2  # conv-overnight and conv-new; not conv-yesterday
    assert live["conversations_active"] == 2 <= live["conversations_total_today"]
    store.dispose()


def test_the_conversation_page_counts_messages_as_the_list_does(demo: Store) -> None:
    """The one-conversation figures counted `message_count` (what the worker's scoring last saw, 0
    before it scores) while the list beside it counts the messages: a new conversation read
    "Messages 0" under a row saying 4."""
    from observability.analytics.conversation_timeline import conversation_overview
    from observability.control import history

    now = utcnow()
    msgs = [events.message(uuid.uuid4().hex, to_epoch(now - timedelta(seconds=10 - i)), conversation_id="conv-fresh",
                           role="user" if i % 2 == 0 else "bot", text=f"m{i}", bot="lead_bot", account_id=None)
            for i in range(4)]  # fmt: skip
    assert ingest.write_batch(demo, msgs).rejected == 0
    [row] = [r for r in history.list_conversations(demo, search="conv-fresh") if r["id"] == "conv-fresh"]
    overview = conversation_overview(demo, "conv-fresh")
    assert overview is not None and overview.messages == row["messages"] == 4


PAGES_WITH_TABLES = ("Home.py", "pages/bot_health.py", "pages/ai_performance.py", "pages/token_analytics.py",
                     "pages/cost_tracking.py", "pages/conversation_quality.py", "pages/activity_feed.py")  # fmt: skip


def column_configs(at: AppTest) -> Iterator[tuple[str, dict]]:
    for df in at.dataframe:
        yield from json.loads(df.proto.columns or "{}").items()


@pytest.mark.parametrize("path", PAGES_WITH_TABLES)
def test_tables_write_percentages_and_thousands_as_the_tiles_do(demo: Store, path: str) -> None:
    """Percentages one way everywhere: a ratio column shows one decimal like `fmt.text` ("9.4%",
    where Streamlit's "percent" alone shows "9.39%"), a progress bar too; counts, tokens and
    milliseconds carry thousands separators; no column is labelled with its raw frame name."""
    runs = list(every_tab(path, {"range": "24h"}))
    configs = [c for at in runs for c in column_configs(at)]
    assert configs, f"{path} shows no table with a column configuration"
    for col, cfg in configs:
        tc = cfg.get("type_config") or {}
        form = tc.get("format")
        if tc.get("type") == "progress":
            assert (form, tc.get("max_value")) == ("%.1f%%", 100.0), (path, col, tc)
        elif form == "percent":
            assert tc.get("step") == 0.001, (path, col, tc)  # one decimal
        elif isinstance(form, str) and "%d" in form or form in ("%.0f", "%.0f ms"):
            raise AssertionError(f"{path} column {col} has no thousands separators ({form})")
    for df in (df for at in runs for df in at.dataframe):
        shown = json.loads(df.proto.columns or "{}")
        for col in df.value.columns:
            label = (shown.get(str(col)) or {}).get("label") or str(col)
            assert not (label == str(col) and "_" in label), f"{path} shows the raw column name {label!r}"


def test_handoff_is_never_a_bot_in_any_chart_of_bot_health_or_ai_performance(demo: Store) -> None:
    for path in ("pages/bot_health.py", "pages/ai_performance.py"):
        for chart in (c for at in every_tab(path, {"range": "24h"}) for c in at.get("plotly_chart")):
            for t in json.loads(chart.proto.spec)["data"]:
                assert t.get("name") != "handoff", (path, t.get("name"))
                xs = t.get("x") if isinstance(t.get("x"), list) else []
                assert "handoff" not in xs, (path, t.get("name"))


def test_token_analytics_and_live_monitoring_tiles_are_catalog_figures(demo: Store) -> None:
    """The tiles of these pages carry the catalog's label and help: no page spells its own."""
    helps = {m.label: m for m in catalog.CATALOG.values()}
    at = run("pages/token_analytics.py", {"range": "24h"})
    for tile in at.metric:
        assert tile.label in helps, tile.label
        assert tile.proto.help.startswith(helps[tile.label].formula)
    at = run("pages/live_monitoring.py", {"metric": "messages", "timeframe": "1h"})
    tiles = {t.label: t for t in at.metric}
    for name in ("active_conversations", "conversations_today", "messages_today", "ai_confidence_avg",
                 "safety_score_avg", "human_interventions_today", "firing_alerts", "system_load", "response_time_alert_ms",
                 "claude_requests_today", "claude_cost_today_usd"):  # fmt: skip
        m = catalog.get(name)
        assert m.label in tiles and tiles[m.label].proto.help == m.help, name
        assert len(m.label) <= 20, f"{m.label!r} is too long for a sixth of the page"
    live = monitoring.live_metrics(demo)
    if (utcnow() - utcnow().replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() < 20 * 60:
        return  # active conversations of the last 15 minutes may have begun yesterday
    assert int(tiles["Conversations today"].value.replace(",", "")) >= int(
        tiles["Active conversations"].value.replace(",", "")
    )
    assert live["conversations_total_today"] >= live["conversations_active"]


# ---- a column's help (its ⓘ) says what its header says ----------------------------------------------

# statistics a header or a help may name; a help names them in its formula (before "Window:")
STATISTICS = {
    "P50": r"\bp50\b|\bmedian\b|\b50th percentile",
    "P95": r"\bp95\b|\b95th percentile",
    "P99": r"\bp99\b|\b99th percentile",
    "mean": r"\bmean\b|\baverage\b|\bavg\b",
    "max": r"\bmax\b|\bmaximum\b|\bslowest\b",
}
# a header naming one of these (left) has a help naming it too (right)
KEYWORDS = {r"\btarget": r"\btarget", r"succe": r"succe", r"\bfail|\berror": r"\bfail|\berror",
            r"\bcache": r"\bcache", r"\bblock": r"\bblock"}  # fmt: skip
# "last 24h", "last 7d", "last 5 min", "last hour", "(1h)", "last 24 hours"
WINDOW_WORDS = re.compile(r"(?:last|\()\s*(?:(\d+)\s*(h|d|min|minutes?|hours?|days?)\b|(hour|day)\b)", re.I)
SECONDS = {"h": 3600, "hour": 3600, "hours": 3600, "d": 86_400, "day": 86_400, "days": 86_400, "min": 60,
           "minute": 60, "minutes": 60}  # fmt: skip


def statistics(text: str) -> set[str]:
    return {name for name, pattern in STATISTICS.items() if re.search(pattern, text, re.I)}


def windows_named(text: str) -> set[int]:
    """The windows `text` names ("the last 24 hours", "last 5 min", "(1h)"), in seconds."""
    return {int(n or 1) * SECONDS[(unit or word).lower()] for n, unit, word in WINDOW_WORDS.findall(text)}


def help_problems(
    header: str, help_text: str, page_s: int | None, said: set[int], figure: bool = True
) -> list[str]:
    """What is wrong with a column's help beside its header: a statistic the header names that the
    help does not (P99 with "95th percentile", Mean with "Median"), a percentile in the help of a
    column that names none ("Latency": "Median LLM call latency"), a header's target, success,
    failure, cache or blocked that the help does not speak of, and a help's window ("Window: the
    last 24 hours") that is neither the page's range (`page_s`) nor one the header or the page
    (`said`: its captions) names. The statistics are checked on `figure` columns (numbers): a text
    column's help may speak of other figures ("Bot (or step)" says which handoff P95 is which)."""
    formula, _, window = help_text.partition(" Window:")
    shown, described = (statistics(header), statistics(formula)) if figure else (set(), set())
    problems = [f"{s} not in the help" for s in shown - described]
    if shown and described - shown:
        problems.append(f"the help names {sorted(described - shown)} too")
    if not shown and described - {"mean"}:
        problems.append(f"the help names {sorted(described)}, the header no statistic")
    problems += [f"the header says {k!r}, the help does not" for k, h in KEYWORDS.items()
                 if re.search(k, header, re.I) and not re.search(h, formula, re.I)]  # fmt: skip
    over = window.split(";")[0]
    if over.strip().startswith("the last"):
        allowed = {page_s} | windows_named(header) | said
        if not windows_named(over) <= allowed:
            problems.append(f"its window ({over.strip()}) is not the page's")
    return problems


def test_help_problems_catches_the_kinds_of_mismatch_it_is_for() -> None:
    llm = "Window: the selected window; exact."
    assert help_problems("P99 ms", f"95th percentile of LLM call latency. {llm}", 3600, set())
    assert help_problems("Mean ms", f"Median LLM call latency. {llm}", 3600, set())
    assert help_problems("P50 target", f"Median operation duration. {llm}", 3600, set())
    assert help_problems("Failed calls", f"LLM calls. {llm}", 3600, set())
    assert help_problems("Response success rate", f"Failed bot responses / bot responses. {llm}", 3600, set())
    assert help_problems("Latency", f"Median LLM call latency. {llm}", 3600, set())
    assert help_problems("LLM requests", "LLM calls. Window: the last 24 hours; exact.", 3600, set())
    assert not help_problems(
        "LLM requests", "LLM calls. Window: the last 24 hours; exact.", 7 * 86_400, {86_400}
    )
    assert not help_problems(
        "LLM P50 (1h)", "Median LLM call latency. Window: the last hour; exact.", None, set()
    )
    assert not help_problems(
        "P95 target", "The SLA target for the P95 (95th percentile). Window: any.", 3600, set()
    )


def page_runs(path: str) -> Iterator[tuple[AppTest, int | None]]:
    """The page run on each tab (each lazy tab's content runs only when open) and, for the tabs
    that show a table, on each range its range control offers; with that range in seconds."""
    for at in every_tab(path):
        ranges = [c for c in at.segmented_control if c.key == "range"]
        if not ranges:
            yield at, None
            continue
        tab = at.query_params.get("tab")
        for option in ranges[0].options if at.dataframe else [ranges[0].value]:
            query = {"range": option, **({"tab": tab} if tab else {})}
            yield (at if option == ranges[0].value else run(path, query)), window_seconds(option)


FIGURES = ("number", "progress")  # the column types that hold a figure
ALL_PAGES = ["Home.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]


@pytest.mark.parametrize("path", ALL_PAGES)
def test_every_column_help_names_the_statistic_target_and_window_of_its_header(
    demo: Store, path: str
) -> None:
    """A column's ⓘ describes that column: "P99 ms" is not helped by "95th percentile", "Mean ms"
    not by "Median", a "P50 target" not by the measured median, "Failed calls" not by "LLM calls",
    and a table over the page's last 1h does not say "Window: the last 24 hours" (the help came
    from `fmt.column`'s catalog metric, and a page gave the wrong metric or a hard-coded window)."""
    problems = []
    runs = list(page_runs(path))
    if path == "pages/cost_tracking.py":  # and the table of the calls behind an anomaly (?calls=)
        trace = frames.cost_report(demo, "7d")["anomalies"]["trace_id"].iloc[0]
        runs.append((run(path, {"calls": trace}), window_seconds("7d")))
    for at, page_s in runs:
        said = windows_named("\n".join(str(e.value) for e in (*at.caption, *at.subheader)))
        for df in at.dataframe:
            for col, cfg in json.loads(df.proto.columns or "{}").items():
                if cfg.get("help"):
                    problems += [f"{path} ({at.query_params}) column {cfg.get('label')!r}: {p}"
                                 for p in help_problems(cfg.get("label") or col, cfg["help"], page_s, said,
                                                        (cfg.get("type_config") or {}).get("type") in FIGURES)]  # fmt: skip
    assert not problems, "\n".join(problems)


def test_a_quiet_minute_is_drawn_as_zero_calls_not_jumped_over(tmp_path: Path) -> None:
    """During a system-wide stop no call is recorded: the requests chart drops to 0 for those
    minutes (it drew a straight line from 18 calls to 37 across them); before the store's first
    call there is nothing to draw; a call without a bot is its own series, "(none)", not "nan"."""
    from observability.ui import charts

    store = Store.from_url(f"sqlite:///{tmp_path / 'quiet.db'}")
    store.migrate()
    now = utcnow().replace(second=30, microsecond=0)
    t0 = to_epoch(now) - 20 * 60  # calls 20 and 19 minutes ago, then 5 quiet minutes, then 13 ago
    calls = [events.llm_call(uuid.uuid4().hex, t0 + m * 60, bot=bot, agent=None, decision_type=None,
                             model="claude-sonnet-4-5", provider="anthropic", input_tokens=10, output_tokens=5,
                             cache_read_tokens=0, cache_write_tokens=0, latency_ms=100.0, cache_hit=False,
                             cost_usd=0.01, conversation_id=None, success=True, error_type=None)
             for m in (0, 1, 7) for bot in ("lead_bot", None)]  # fmt: skip
    assert ingest.write_batch(store, calls).rejected == 0
    rollups.run(store)
    df = frames.requests_series(store, "1h", None, now=now)
    lead = df[df["bot"] == "lead_bot"].set_index("ts")["requests"]
    first = pd.Timestamp(now).floor("60s") - pd.Timedelta(minutes=20)
    assert lead.index.min() == first  # nothing before the first call
    assert list(lead.loc[first : first + pd.Timedelta(minutes=7)]) == [1, 1, 0, 0, 0, 0, 0, 1]
    assert lead.index.max() == pd.Timestamp(now).floor("60s") and lead.iloc[-1] == 0  # up to now
    fig = charts.area(df, x="ts", y="requests", color="bot")
    assert sorted(t.name for t in fig.data) == ["(none)", "lead_bot"]
    store.dispose()


def test_an_area_chart_of_one_point_shows_it() -> None:
    """A store an hour old on a day's chart has one bucket: an area of one point draws nothing."""
    from observability.ui import charts

    one = pd.DataFrame({"ts": [pd.Timestamp("2026-12-03 16:00")] * 2, "model": ["a", "b"], "tokens": [5, 7]})
    assert all("markers" in t.mode for t in charts.area(one, x="ts", y="tokens", color="model").data)
    two = pd.concat([one, one.assign(ts=pd.Timestamp("2026-12-03 17:00"))])
    assert all(t.mode == "lines" for t in charts.area(two, x="ts", y="tokens", color="model").data)


def test_status_now_and_the_threshold_rules_agree_at_and_around_each_threshold() -> None:
    """At exactly a threshold the page said "warning" (>=) while the rule (strictly beyond) stayed
    quiet: both now judge the same side of each threshold, for every shipped threshold rule."""
    from observability.alerting.model import breach

    settings = get_settings()
    rules = {
        r.family: r
        for r in alert_rules.default_rules(settings)
        if r.family in threshold_figures.CATALOG_NAMES
    }
    assert set(rules) == set(threshold_figures.CATALOG_NAMES)
    for family, rule in rules.items():
        spec = monitoring.METRICS[family]
        thresholds = {"warning": rule.threshold, "critical": rule.critical_threshold}
        for t in (rule.threshold, rule.critical_threshold):
            for value in (t - 0.01, t, t + 0.01):
                page = monitoring.threshold_status(value, thresholds, spec.bad_direction)
                fired = breach(value, rule.comparison, rule.threshold, rule.critical_threshold, "warning")
                assert page == (fired or "ok"), (family, value, page, fired)


def test_quiet_minutes_at_the_start_of_the_window_are_zero_when_the_store_is_older(tmp_path: Path) -> None:
    """Calls stopped before the hour began and came back 10 minutes ago: the hour's chart starts at
    the hour's start with zeros, not at the first call back (the store held calls before it)."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'older.db'}")
    store.migrate()
    now = utcnow().replace(second=30, microsecond=0)

    def call(ago_min: int) -> list:
        return events.llm_call(uuid.uuid4().hex, to_epoch(now) - ago_min * 60, bot="lead_bot", agent=None,
                               decision_type=None, model="claude-sonnet-4-5", provider="anthropic", input_tokens=10,
                               output_tokens=5, cache_read_tokens=0, cache_write_tokens=0, latency_ms=100.0,
                               cache_hit=False, cost_usd=0.01, conversation_id=None, success=True, error_type=None)  # fmt: skip

    assert ingest.write_batch(store, [call(100), call(10)]).rejected == 0
    rollups.run(store)
    lead = frames.requests_series(store, "1h", None, now=now).set_index("ts")["requests"]
    start = (pd.Timestamp(now) - pd.Timedelta(hours=1)).ceil("60s")
    assert lead.index.min() <= start and lead.loc[start : start + pd.Timedelta(minutes=40)].eq(0).all()
    assert lead.sum() == 1
    store.dispose()
