"""The figure a threshold rule judges, now: one definition for the alert rules and the console.

`ALERT_THRESHOLDS_CONFIG` gives warning and critical values for system load, response time, AI
confidence and safety score; each becomes a built-in rule (`high_response_time`, ...). Live
monitoring's "Status now" judges the same metric against the same thresholds, so it must judge the
same number, or the page says "warning" while the rule never goes pending (it did: the page judged
the LLM P95 and the rule the mean bot response time). Both read `judged_now` here:

- `response_time`: the mean latency of the LLM calls in the alert window (source document 004's
  `response_time_avg`; "High response times (>2s)"). A metric a bot records under this name is
  not used: the response time is measured, from the calls themselves;
- any other name (system_load, ai_confidence, safety_score, a custom metric): the mean of the
  values recorded in `system_metrics` in the alert window.

The window is `ALERT_METRIC_WINDOW_S` (5 minutes by default), ending at `now` inclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import resolve_now

MEASURED_RESPONSE_TIME = "response_time"

# thresholded metric -> the catalog entry of its judged figure (label, help, window)
CATALOG_NAMES = {
    "response_time": "response_time_alert_ms",
    "ai_confidence": "ai_confidence_alert",
    "safety_score": "safety_score_alert",
    "system_load": "system_load_alert",
}


def window_s(settings: Settings | None = None) -> float:
    """The alert window in seconds (at least one)."""
    return max(float((settings or get_settings()).alert_metric_window_s), 1.0)


def judged_now(
    store: Store,
    names: Iterable[str],
    now: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, float | None]:
    """{name: the figure its threshold rule judges at `now`, or None without data in the window}."""
    now = resolve_now(now)
    wanted = sorted(set(names))
    start = now - timedelta(seconds=window_s(settings))
    out: dict[str, float | None] = dict.fromkeys(wanted)
    recorded = [n for n in wanted if n != MEASURED_RESPONSE_TIME]
    with store.connect() as conn:
        if recorded:
            sm = schema.system_metrics
            for name, avg in conn.execute(
                sa.select(sm.c.metric_name, sa.func.avg(sm.c.value))
                .where(sm.c.metric_name.in_(recorded), sm.c.ts > start, sm.c.ts <= now)
                .group_by(sm.c.metric_name)
            ):
                out[name] = None if avg is None else float(avg)
        if MEASURED_RESPONSE_TIME in out:
            llm = schema.llm_calls
            avg = conn.execute(
                sa.select(sa.func.avg(llm.c.latency_ms)).where(llm.c.ts > start, llm.c.ts <= now)
            ).scalar()
            out[MEASURED_RESPONSE_TIME] = None if avg is None else float(avg)
    return out
