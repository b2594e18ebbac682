"""One SLA evaluation per bot, operation and window: what every SLA figure reads.

`evaluate(store, window, now=)` measures P50/P95/P99 of every (bot, operation) of the SLA table
(`data/sla_targets.json`) over the window through `PerformanceTracker.check_sla_compliance`, and
judges each pair against all three targets. The Bot health headline, its chart and table, the
Overview's "SLA breach" column, the `sla_violation` alert input (`alerting.inputs.sla_ratios`) and
the `obs_sla_*` families of `/metrics` all read this one result, so none of them can disagree with
another over the same window. `alert_window_s()` is the window the alert rules evaluate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from observability.analytics.performance import PerformanceTracker, SlaTarget
from observability.settings import get_settings
from observability.store import Store
from observability.timeutil import Window, window_seconds

PERCENTILES = ("p50", "p95", "p99")
# the handoff service reports its operations under this name: a step between bots, not a bot
HANDOFF_STEP = "handoff"


STEP_LABEL = "handoff step"  # how people see HANDOFF_STEP: a step between bots, not a bot
# What a "handoff step" row times, beside AI performance's "Handoff P95, whole handoff" (catalog
# `handoff_p95_ms`): the two read different rows, so a reader is told why they differ.
STEP_HELP = (
    "A bot, or the handoff step: the handoff service's own tracked operations (track_operation, e.g. "
    "“execute”, the transfer alone). AI performance's “Handoff P95, whole handoff” is another figure: the "
    "duration bots record with each whole handoff (record_handoff), blocked ones included."
)


def pair_label(bot: str, operation: str) -> str:
    """How a page names a bot × operation pair: 'lead_bot · process', and the handoff service's
    operations as the handoff step ('handoff step · execute'), never as a bot."""
    return f"{STEP_LABEL if bot == HANDOFF_STEP else bot} · {operation}"


def scope_label(labels: Mapping[str, str]) -> str:
    """An alert's labels as people read them ('handoff step' for bot=handoff, like `pair_label`;
    'k=v' otherwise). Only for text: the labels themselves keep bot=handoff, since dedup keys,
    silence matchers and receivers' routing match on them."""
    return ", ".join(
        STEP_LABEL if k == "bot" and v == HANDOFF_STEP else f"{k}={v}" for k, v in sorted(labels.items())
    )


WITHIN, BREACH, NO_DATA = "within target", "breach", "no data"


@dataclass(frozen=True)
class SlaRow:
    bot: str
    operation: str
    count: int
    errors: int
    error_rate: float
    cache_hit_rate: float
    actual: dict[str, float | None]  # p50, p95, p99 in ms (None without operations)
    target: dict[str, float]  # p50, p95, p99 targets in ms
    breaches: tuple[str, ...]  # the percentiles above their target, e.g. ("p95", "p99")

    @property
    def status(self) -> str:
        if not self.count:
            return NO_DATA
        return BREACH if self.breaches else WITHIN

    @property
    def p95_ratio(self) -> float | None:
        p95, target = self.actual["p95"], self.target["p95"]
        return None if p95 is None or not target else p95 / target

    def describe(self) -> str:
        """'P95 2,610 ms > 2,500 ms; P99 ...' for the breached percentiles."""
        return "; ".join(
            f"{p.upper()} {self.actual[p]:,.0f} ms > {self.target[p]:,.0f} ms" for p in self.breaches
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "bot": self.bot, "operation": self.operation, "status": self.status, "requests": self.count,
            "errors": self.errors, "error_rate": self.error_rate, "cache_hit_rate": self.cache_hit_rate,
            **{p: self.actual[p] for p in PERCENTILES}, **{f"target_{p}": self.target[p] for p in PERCENTILES},
            "p95_ratio": self.p95_ratio, "breaches": ", ".join(p.upper() for p in self.breaches),
        }  # fmt: skip


@dataclass(frozen=True)
class SlaEvaluation:
    window: Window
    window_seconds: float
    approximate: bool
    source: str
    rows: tuple[SlaRow, ...]

    @property
    def measured(self) -> list[SlaRow]:
        """Pairs with operations in the window."""
        return [r for r in self.rows if r.count]

    @property
    def breaching(self) -> list[SlaRow]:
        return [r for r in self.rows if r.status == BREACH]

    def for_bots(self, bots: Sequence[str] | None) -> SlaEvaluation:
        """The same evaluation restricted to `bots` (every bot when empty)."""
        if not bots:
            return self
        keep = set(bots)
        return SlaEvaluation(self.window, self.window_seconds, self.approximate, self.source,
                             tuple(r for r in self.rows if r.bot in keep))  # fmt: skip

    def alert_breaches(self, min_samples: int) -> list[SlaRow]:
        """Pairs whose P95 is above its target over at least `min_samples` operations: the pairs
        the `sla_violation` rule acts on (a P95 over fewer is their maximum and opens nothing).
        Bot health's alert-window note and Overview's column both list exactly these."""
        need = max(min_samples, 1)
        return [r for r in self.rows if "p95" in r.breaches and r.count >= need]

    def worst_p95_ratio(self, min_samples: int = 0) -> dict[str, SlaRow]:
        """Per bot, the operation with the highest P95/target ratio among those with at least
        `min_samples` operations (else the highest of the few): what `sla_violation` watches."""
        need = max(min_samples, 1)
        worst: dict[str, SlaRow] = {}
        for r in self.rows:
            if r.p95_ratio is None:
                continue
            cur = worst.get(r.bot)
            if cur is None or (r.count >= need, r.p95_ratio) > (cur.count >= need, cur.p95_ratio):
                worst[r.bot] = r
        return worst


def alert_window_s() -> int:
    """The window the alert rules evaluate (ALERT_METRIC_WINDOW_S, 300 s by default)."""
    return max(int(get_settings().alert_metric_window_s), 1)


def alert_breaches(
    store: Store, *, now: datetime | None = None, bots: Sequence[str] | None = None
) -> list[SlaRow]:
    """The SLA breaches the `sla_violation` rule acts on now: the evaluation over the alert window
    (`alert_window_s`), pairs with P95 above target over at least ALERT_MIN_SAMPLES operations.
    The one function behind Overview's "P95 over SLA" column and Bot health's alert-window note."""
    evaluation = evaluate(store, alert_window_s(), now=now).for_bots(bots)
    return evaluation.alert_breaches(get_settings().alert_min_samples)


def evaluate(
    store: Store,
    window: Window = "1h",
    *,
    now: datetime | None = None,
    targets: Sequence[SlaTarget] | None = None,
) -> SlaEvaluation:
    """Every SLA target's P50/P95/P99 over the window against its three targets (see the module
    docstring). A pair breaches when any measured percentile exceeds its target; a pair without
    operations in the window has status 'no data'."""
    items = PerformanceTracker(store, targets).check_sla_compliance(window, now=now)
    rows = tuple(
        SlaRow(
            bot=i["bot"], operation=i["operation"], count=int(i["count"]), errors=int(i["errors"]),
            error_rate=float(i["error_rate"]), cache_hit_rate=float(i["cache_hit_rate"]),
            actual={p: i[f"actual_{p}"] for p in PERCENTILES},
            target={p: float(i[f"target_{p}"]) for p in PERCENTILES},
            breaches=tuple(p for p in PERCENTILES
                           if i[f"actual_{p}"] is not None and i[f"actual_{p}"] > i[f"target_{p}"]),
        )
        for i in items
    )  # fmt: skip
    first = items[0] if items else {}
    return SlaEvaluation(window, window_seconds(window), bool(first.get("approximate", False)),
                         str(first.get("source", "")), rows)  # fmt: skip
