"""The names of DESIGN section 5 are importable where outside tests look for them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import observability

PUBLIC = {
    "observability.sdk": ["ObservabilityClient"],
    "observability.store": ["Store"],
    "observability.analytics.llm_observability": [
        "LLMObservabilityService",
        "LatencyReport",
        "ObservabilityDashboard",
    ],
    "observability.analytics.performance": ["PerformanceTracker"],
    "observability.analytics.bot_metrics": ["BotMetricsCollector"],
    "observability.analytics.agent_costs": ["DecisionCostTracker", "DecisionCost", "CostReport"],
    "observability.analytics.conversation_analytics": ["ConversationAnalytics"],
    "observability.alerting": ["AlertingService"],
    "observability.auth": ["PermissionDenied"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_is_in_its_module_and_on_the_package(module: str) -> None:
    mod = __import__(module, fromlist=["_"])
    for name in PUBLIC[module]:
        assert getattr(observability, name) is getattr(mod, name)


def test_the_service_methods_of_section_5_exist() -> None:
    methods = {
        "LLMObservabilityService": ["cost_by_model", "cost_by_conversation", "latency_report", "sla_compliance",
                                    "error_rate", "alert_check", "dashboard"],
        "PerformanceTracker": ["get_bot_stats", "check_sla_compliance"],
        "BotMetricsCollector": ["get_bot_summary", "get_system_summary", "feed_to_alerting"],
        "DecisionCostTracker": ["record", "report"],
        "ConversationAnalytics": ["sentiment_trajectory", "detect_topic_drift", "engagement_score",
                                  "detect_resolution", "handoff_effectiveness", "quality_score"],
        "AlertingService": ["add_rule", "remove_rule", "enable_rule", "disable_rule", "list_rules",
                            "check_and_send_alerts", "acknowledge_alert", "resolve_alert", "escalate_alert",
                            "active_alerts", "process_escalations"],
        "ObservabilityClient": ["record_llm_call", "track_operation", "track_async_operation", "track_performance",
                                "record_bot_interaction", "record_handoff", "record_message", "set_account",
                                "record_metric", "log_activity", "ai_may_respond", "flush", "close", "stats"],
    }  # fmt: skip
    for cls, names in methods.items():
        missing = [n for n in names if not callable(getattr(getattr(observability, cls), n, None))]
        assert not missing, f"{cls} lacks {missing}"


def test_importing_the_sdk_does_not_load_the_heavy_libraries() -> None:
    code = (
        "import sys; from observability.sdk.client import ObservabilityClient; "
        "print(','.join(m for m in ('pandas', 'sklearn', 'streamlit', 'plotly') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_the_sdk_loads_neither_sqlalchemy_nor_the_store() -> None:
    """A bot installs the SDK without the console: `import observability.sdk` loads neither
    SQLAlchemy nor the store, control, alerting, worker or Streamlit (DESIGN section 3)."""
    code = (
        "import sys; import observability.sdk; from observability.sdk import ObservabilityClient; "
        "print(','.join(m for m in ('sqlalchemy', 'observability.store', 'observability.control', "
        "'observability.alerting', 'observability.worker', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
