"""Read-side services over the store, each figure computed once for the pages, alerts and `/metrics`:

- `window`: the window and read-plan engine (raw rows vs rollups, `aggregate`) every service reads
  through; windows themselves are defined in `observability.timeutil`;
- `performance` (operations and SLAs), `llm_observability` and `pricing` (LLM calls, spend,
  budget), `bot_metrics` (interactions and handoffs), `agent_costs` (decisions and anomalies);
- `conversation_analytics` (scoring, no store), `conversation_scoring` (the worker's step) and
  `conversations` (quality listings and the on-demand analysis, over the same messages);
- `monitoring` (overview and live metrics), `activity` (the activity feed), `thresholds` (the one
  reader of the thresholds file).

May import `observability.store`, `observability.auth` (permission checks on the few writes) and
the contract modules; never Streamlit, alerting, control or the worker.
"""
