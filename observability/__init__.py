"""Operations console for LLM-driven chat bots: tracing, SLAs, alerting, analytics and control.

The public names of DESIGN section 5 can be imported from the package itself
(`from observability import PerformanceTracker`) as well as from their modules. They are loaded
on first use, so a bot that only imports the SDK does not pay for SQLAlchemy, pandas or
scikit-learn at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ObservabilityClient": "observability.sdk",
    "Store": "observability.store",
    "LLMObservabilityService": "observability.llm_observability",
    "LatencyReport": "observability.llm_observability",
    "ObservabilityDashboard": "observability.llm_observability",
    "PerformanceTracker": "observability.performance",
    "BotMetricsCollector": "observability.bot_metrics",
    "DecisionCost": "observability.agent_costs",
    "DecisionCostTracker": "observability.agent_costs",
    "CostReport": "observability.agent_costs",
    "ConversationAnalytics": "observability.conversation_analytics",
    "AlertingService": "observability.alerting",
    "PermissionDenied": "observability.auth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'observability' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
