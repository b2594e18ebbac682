"""MONITORING_ENABLED=false turns the monitoring service of source document 004 off (system load
readings, alert evaluation, escalation) while the worker goes on storing what bots send."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from observability import redis_client
from observability.sdk import ObservabilityClient
from observability.settings import Settings
from observability.store import Store, schema
from observability.worker.runner import Worker


def count(store: Store, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with store.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)


def test_the_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).monitoring_enabled is True
    assert Settings.from_env({"MONITORING_ENABLED": "false"}).monitoring_enabled is False
    assert Settings.from_env({"MONITORING_ENABLED": "true"}).monitoring_enabled is True


@pytest.mark.parametrize("enabled", [True, False])
def test_with_monitoring_off_the_worker_stores_events_but_reads_no_load_and_raises_no_alert(
    enabled: bool, tmp_path: Path, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'obs.db'}")
    store.migrate()
    env = Settings.from_env({"MONITORING_ENABLED": "true" if enabled else "false"})
    settings = make_settings(store.url, redis_url, monitoring_enabled=env.monitoring_enabled)
    client = ObservabilityClient(settings=settings)
    worker = Worker(store, settings, redis=redis_client.connect(settings), worker_id="w1")
    try:
        for i in range(30):  # AI confidence far below its critical threshold (0.4)
            client.record_metric("ai_confidence", 0.1, conversation_id=f"c{i}")
        client.record_llm_call("claude-sonnet-4-5", "anthropic", 100, 20, 40.0, bot="lead")
        assert client.flush(10.0)
        outcomes = worker.tick()
    finally:
        client.close()
        worker.close()

    assert count(store, schema.llm_calls) == 1, "events are stored either way"
    assert count(store, schema.system_metrics, schema.system_metrics.c.metric_name == "ai_confidence") == 30
    load = count(store, schema.system_metrics, schema.system_metrics.c.metric_name == "system_load")
    low_confidence = count(store, schema.alerts, schema.alerts.c.rule_name == "low_ai_confidence")
    monitoring_steps = {"system_load", "alerts_evaluate", "alerts_escalate"}
    if enabled:
        assert monitoring_steps <= outcomes.keys(), outcomes
        assert load == 1 and low_confidence == 1, "the rule saw the low confidence (pending its `for`)"
    else:
        assert not monitoring_steps & outcomes.keys(), outcomes
        assert {"rollups", "retention", "alerts_deliver", "heartbeat"} <= outcomes.keys(), outcomes
        assert load == 0 and low_confidence == 0
        assert count(store, schema.alerts) == 0
    store.dispose()
