"""Operations console for LLM-driven chat bots: tracing, SLAs, alerting, analytics and control.

The package is laid out by the parts of DESIGN section 2; each subpackage's docstring says what it
holds and what it may import (`tests/test_architecture.py` enforces it):

- contract modules, importing nothing of the package: `settings` (the only reader of the
  environment), `events` (the wire contract of events), `keys` (Redis key and channel names),
  `timeutil` (time and windows), `redaction`, `telemetry`;
- `sdk/` (what bots import), `store/`, `analytics/`, `alerting/`, `control/`, `auth/`, `worker/`,
  `ui/` (the only Streamlit user), `demo/`.

The public names of DESIGN section 5 can be imported from the package itself
(`from observability import PerformanceTracker`) as well as from their modules. They are loaded
on first use, so a bot that only imports the SDK does not pay for SQLAlchemy, pandas or
scikit-learn at import time. The service modules' earlier top-level paths
(`observability.performance`, ...) still import, as lazy aliases of their new homes.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ObservabilityClient": "observability.sdk",
    "Store": "observability.store",
    "LLMObservabilityService": "observability.analytics.llm_observability",
    "LatencyReport": "observability.analytics.llm_observability",
    "ObservabilityDashboard": "observability.analytics.llm_observability",
    "PerformanceTracker": "observability.analytics.performance",
    "BotMetricsCollector": "observability.analytics.bot_metrics",
    "DecisionCost": "observability.analytics.agent_costs",
    "DecisionCostTracker": "observability.analytics.agent_costs",
    "CostReport": "observability.analytics.agent_costs",
    "ConversationAnalytics": "observability.analytics.conversation_analytics",
    "AlertingService": "observability.alerting",
    "PermissionDenied": "observability.auth",
}

# Earlier module paths of the section-5 services -> where they live now.
_MOVED = {
    "observability.performance": "observability.analytics.performance",
    "observability.llm_observability": "observability.analytics.llm_observability",
    "observability.bot_metrics": "observability.analytics.bot_metrics",
    "observability.agent_costs": "observability.analytics.agent_costs",
    "observability.conversation_analytics": "observability.analytics.conversation_analytics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'observability' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Alias(types.ModuleType):
    """A module at an old path whose attributes are those of the module at the new one."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__dict__["_target"]), name)


class _MovedFinder:  # a meta path finder and loader (not importlib.abc's: that import costs a bot ~10 ms)
    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Alias(spec.name, f"alias of {_MOVED[spec.name]}")
        module._target = _MOVED[spec.name]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        importlib.import_module(module.__dict__["_target"])


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())
