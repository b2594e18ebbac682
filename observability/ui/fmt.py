"""Figures written for people, from the metric catalog (`observability.analytics.catalog`).

`text(name, value)` formats a value in its metric's unit (thousands separators, percentages with
one decimal, milliseconds and tokens as whole numbers, dollars with cents); `metric(col, name,
value)` draws an `st.metric` with the catalog's label and help; `column(name)` gives the
`st.column_config` of a table column holding that metric. Pages take labels, units and help from
here, never spell them themselves.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from observability.analytics import catalog, sla

DASH = "–"
# unit -> (python format of a value, st.column_config format). Table formats write what `text`
# writes: "%,d" puts in thousands separators (Streamlit's printf is sprintf-js with "," for them), and
# a ratio is Streamlit's "percent" with the decimals `_STEPS` gives (its default shows two: "9.39%").
_FORMATS = {
    "count": ("{:,.0f}", "%,d"),
    "tokens": ("{:,.0f}", "%,d"),
    "per_min": ("{:,.1f}", "%,.1f"),
    "ratio": ("{:.1%}", "percent"),
    "percent": ("{:.1f}%", "%.1f%%"),
    "ms": ("{:,.0f} ms", "%,.0f ms"),
    "usd": ("${:,.2f}", "dollar"),
    "usd_precise": ("${:,.4f}", "$%,.4f"),
    "sigma": ("{:.1f}σ", "%.1fσ"),
    "score": ("{:.2f}", "%.2f"),
    "signed": ("{:+.2f}", "%+.2f"),
    "x": ("{:.2f}×", "%.2f×"),
}
# Streamlit writes a "percent" column with (decimals of `step`) - 2 decimals: 0.001 gives "9.4%"
_STEPS = {"ratio": 0.001}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(unit: str, value: Any) -> str:
    """`value` written in `unit` (one of `catalog.UNITS`); a dash for no value."""
    if _missing(value):
        return DASH
    if unit.startswith("usd") and float(value) < 0:  # -$1.50, not $-1.50
        return "-" + _FORMATS[unit][0].format(-float(value))
    return _FORMATS[unit][0].format(float(value))


def text(name: str, value: Any) -> str:
    """`value` of the catalog metric `name`, formatted in its unit."""
    return number(catalog.get(name).unit, value)


def label(name: str) -> str:
    return catalog.get(name).label


def help_text(name: str, window: str | None = None) -> str:
    """The catalog's help of `name`; `window` (in words) when it is shown over another window."""
    return catalog.get(name).describe(window)


def metric(container: Any, name: str, value: Any, *, label: str | None = None, window: str | None = None,
           **kwargs: Any) -> None:  # fmt: skip
    """`container.metric` with the catalog's label, formatting and help text; with `window` (in
    words, e.g. "last 5 minutes") the label says it and the help names it."""
    shown = label or catalog.get(name).label
    if window and not label:
        shown = f"{shown} ({window})"
    container.metric(shown, text(name, value), help=help_text(name, window), **kwargs)


def column(name: str, label: str | None = None, window: str | None = None) -> Any:
    """The `st.column_config` of a table column holding the catalog metric `name`, its help over
    `window` (the table's, in words) when the metric is over the selected window; a metric with a
    window of its own (the alert window, since 00:00 UTC) keeps that one in a table of other columns."""
    m = catalog.get(name)
    over = window if m.window == catalog.SELECTED else None
    return st.column_config.NumberColumn(
        label or m.label, format=_FORMATS[m.unit][1], step=_STEPS.get(m.unit), help=m.describe(over)
    )


def columns(
    mapping: dict[str, str], labels: dict[str, str] | None = None, window: str | None = None
) -> dict[str, Any]:
    """`column_config` for a table: {frame column: catalog metric}, labels overriding the catalog's."""
    labels = labels or {}
    return {col: column(name, labels.get(col), window) for col, name in mapping.items()}


def progress(frame: Any, mapping: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """Progress bars for 0-1 ratio columns of `frame` ({frame column: catalog metric}), written as
    `text` writes the metric (one decimal, "32.8%"): Streamlit's "percent" format shows two, and a
    printf format cannot scale, so the shown copy holds percents. Returns (frame to show, column_config);
    downloads keep the original frame's ratios."""
    shown = frame.copy()
    config: dict[str, Any] = {}
    for col, name in mapping.items():
        m = catalog.get(name)
        if m.unit != "ratio":
            raise ValueError(f"{name} is not a ratio metric (unit {m.unit})")
        shown[col] = pd.to_numeric(frame[col], errors="coerce") * 100.0  # None (not scored yet) -> NaN
        config[col] = st.column_config.ProgressColumn(
            m.label, min_value=0.0, max_value=100.0, format="%.1f%%", help=m.describe()
        )
    return shown, config


def time_column(label: str = "Time (UTC)") -> Any:
    """A timestamp column written for people: 2026-12-02 03:15:07, no offset or fractions (every
    stored time is UTC, which the label says)."""
    return st.column_config.DatetimeColumn(label, format="YYYY-MM-DD HH:mm:ss")


def text_column(label: str, help: str | None = None) -> Any:  # noqa: A002 - Streamlit's own name
    """A text column with a readable label."""
    return st.column_config.TextColumn(label, help=help)


def top_conversations_columns(window: str) -> dict[str, Any]:
    """The `column_config` of the top-conversations tables (Cost tracking, Token analytics) whose
    totals cover `window` (in words, `frames.top_conversations_span`); the conversation column
    holds links to the conversation, shown as its id (give `ui.table` the frame of ids to download)."""
    return {
        "conversation_id": st.column_config.LinkColumn("Conversation", display_text=r"conversation=([^&]+)"),
        "bot": text_column("Bot"), "first_ts": time_column("First call (UTC)"),
        "last_ts": time_column("Last call (UTC)"),
        **columns({"requests": "llm_requests", "input_tokens": "input_tokens", "output_tokens": "output_tokens",
                   "cache_read_tokens": "cache_read_tokens", "total_tokens": "total_tokens", "cost_usd": "llm_cost_usd",
                   "cost_saved_usd": "llm_cost_saved_usd", "errors": "llm_failed_calls"},
                  {"cost_usd": "Spend", "errors": "Failed calls"}, window=window),
    }  # fmt: skip


def steps_as_steps(frame: Any, col: str = "bot") -> Any:
    """`frame` with the handoff service's rows named as the step between bots it is ("handoff
    step"), not as a bot called "handoff" (`sla.pair_label` names it so in pairs)."""
    if frame.empty or col not in frame:
        return frame
    return frame.assign(**{col: frame[col].replace({sla.HANDOFF_STEP: sla.STEP_LABEL})})


# a conversation's state in words, the same on every page (an emoji font may be missing)
STATE_LABEL = {"ai": "AI", "human": "human", "stopped": "stopped"}
# what a person did to a conversation, as its timeline says it (the `ref` of an intervention or emergency row)
ACTION_LABEL = {
    "take_control": "took over", "reply": "replied", "release_control": "handed back to the AI",
    "release_control_resolved": "handed back to the AI, resolved", "stop": "stopped it", "reset": "reset it",
    "system_stop": "stopped every conversation", "system_resume": "resumed every conversation",
}  # fmt: skip


def state_words(states: Any) -> Any:
    """A column of conversation states (a pandas Series) in those words; an unknown one as it is."""
    return states.map(STATE_LABEL).fillna(states)


# the token kinds of an LLM call, as a chart's legend names them
TOKEN_KIND_LABEL = {"input_tokens": "input", "output_tokens": "output", "cache_read_tokens": "cache read",
                    "cache_write_tokens": "cache write"}  # fmt: skip
