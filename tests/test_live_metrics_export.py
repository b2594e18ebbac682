"""Source document 004's live figures on `/metrics`: active conversations, AI confidence, safety
score, system load and human interventions, the same numbers the Live monitoring page shows
(`monitoring.live_metrics`), named and described by the metric catalog."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from observability import auth, control
from observability import events as ev
from observability.analytics import catalog, monitoring
from observability.settings import Settings
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import utcnow
from observability.worker.metrics import LIVE_FIGURES, StoreCollector, render

FAMILIES = {
    "obs_active_conversations": "conversations_active",
    "obs_ai_confidence_avg": "ai_confidence_avg",
    "obs_safety_score_avg": "safety_score_avg",
    "obs_system_load_percent": "system_load",
    "obs_human_interventions_today": "human_interventions",
}


def scrape(store: Store, settings: Settings) -> dict[str, tuple[str, list[float]]]:
    """/metrics as a scraper reads it: family name -> (HELP text, sample values)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, settings))
    resp = render(registry, "text/plain", None)
    assert resp.status == 200
    return {
        f.name: (f.documentation, [s.value for s in f.samples])
        for f in text_string_to_metric_families(resp.body.decode())
    }


def seed(store: Store) -> None:
    now = time.time()
    rows = []
    for i in range(3):  # three conversations talking now, one that went quiet an hour ago
        rows.append(ev.message(uuid.uuid4().hex, now - 30 - i, conversation_id=f"c{i}", role="user",
                               text="hello", bot="lead", account_id=None))  # fmt: skip
    rows.append(ev.message(uuid.uuid4().hex, now - 3600, conversation_id="old", role="user", text="hi",
                           bot="lead", account_id=None))  # fmt: skip
    for name, values in (("ai_confidence", (0.9, 0.7, 0.8)), ("safety_score", (0.95, 0.99)),
                         ("system_load", (40.0, 62.5))):  # fmt: skip
        for k, v in enumerate(values):  # the last system_load reading is the newest
            rows.append(ev.metric(uuid.uuid4().hex, now - 60 + k, metric_name=name, metric_type="gauge", value=v,
                                  account_id=None, conversation_id=None))  # fmt: skip
    write_batch(store, rows)
    auth.create_user(store, "olga", auth.OPERATOR, "a-long-password")
    assert control.take_control(store, "c1", "olga", "customer asked for a person").outcome == "taken"


def test_metrics_export_the_document_live_figures_as_the_service_computes_them(
    store: Store, make_settings: Callable[..., Settings], store_url: str
) -> None:
    seed(store)
    settings = make_settings(store_url)
    exported = scrape(store, settings)
    live = monitoring.live_metrics(store, utcnow())
    for family, key in FAMILIES.items():
        help_text, values = exported[family]
        assert values == [pytest.approx(float(live[key]))], (family, values, live[key])
    assert exported["obs_active_conversations"][1] == [3.0]
    assert exported["obs_ai_confidence_avg"][1] == [pytest.approx(0.8)]
    assert exported["obs_safety_score_avg"][1] == [pytest.approx(0.97)]
    assert exported["obs_system_load_percent"][1] == [62.5]
    assert exported["obs_human_interventions_today"][1] == [1.0]
    for name in LIVE_FIGURES:  # every family says what it counts and over which window
        m = catalog.get(name)
        assert exported[m.prometheus][0] == m.describe() and "Window:" in m.describe()


def test_a_live_figure_without_data_has_no_sample_rather_than_a_zero(
    store: Store, make_settings: Callable[..., Settings], store_url: str
) -> None:
    exported = scrape(store, make_settings(store_url))
    for family in ("obs_ai_confidence_avg", "obs_safety_score_avg", "obs_system_load_percent"):
        assert exported[family][1] == [], family
    assert exported["obs_active_conversations"][1] == [0.0]
    assert exported["obs_human_interventions_today"][1] == [0.0]
