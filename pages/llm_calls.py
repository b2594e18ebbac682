"""LLM calls explorer: every recorded call, filtered, sorted and paged, each linking to its
conversation. Every filter lives in the URL (see `observability.analytics.calls_explorer` for
the parameters), so other pages link here with the filter set and a shared link shows the same."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from observability.analytics import calls_explorer as ce
from observability.ui import common as ui

ui.require("dashboards.view")
ui.page_header(
    "LLM calls",
    "Every LLM call the bots recorded, newest first: filter, sort, and open the conversation a call belongs to.",
)
explore = ui.cached_query(ce.explore_calls)
options = ui.cached_query(ce.call_options)
PAGE_SIZE = 50
SORT_LABEL = {"newest": "Newest first", "oldest": "Oldest first", "slowest": "Slowest first",
              "costliest": "Most expensive first"}  # fmt: skip

opts = options()


def _linked(name: str) -> list[str]:
    """Values a link put in the URL (offered even when not seen lately)."""
    try:
        return [v for v in st.query_params.get_all(name) if v]
    except Exception:  # noqa: BLE001 - a parameter bound to a widget reads through the widget
        return list(st.session_state.get(name) or [])


chosen: dict[str, object] = {}
slots: dict[str, object] = {}  # under each field: where its error shows
r1 = st.columns(5)
for col, (name, label, placeholder) in zip(r1, (
    ("bot", "Bot", "All bots"), ("model", "Model", "All models"), ("provider", "Provider", "All providers"),
    ("agent", "Agent", "All agents"), ("error", "Error type", "Any"),
), strict=True):  # fmt: skip
    values = sorted(set(opts.get(name, [])) | set(_linked(name)))
    chosen[name] = col.multiselect(label, values, **ui.in_url(name), placeholder=placeholder)
    slots[name] = col.empty()
r2 = st.columns([1.3, 1, 1, 1, 1, 1.2, 1.8], vertical_alignment="bottom")  # "newest" fits at 1280 px
with r2[0]:
    # no format_func on URL-bound widgets: the URL holds the formatted option, and links use the plain values
    chosen["status"] = st.segmented_control("Status", list(ce.STATUSES), **ui.in_url("status"),
                                            help="ok: succeeded; error: failed")  # fmt: skip
    slots["status"] = st.empty()
for col, (name, label) in zip(r2[1:5], (("lat_min", "Latency from (ms)"), ("lat_max", "to (ms)"),
                                        ("cost_min", "Cost from ($)"), ("cost_max", "to ($)")), strict=True):  # fmt: skip
    with col:
        chosen[name] = st.text_input(label, **ui.in_url(name))
        slots[name] = st.empty()
with r2[5]:
    chosen["sort"] = st.selectbox("Sort", list(ce.SORTS), **ui.in_url("sort"))
chosen["conversation"] = r2[6].text_input("Conversation", **ui.in_url("conversation"),
                                          placeholder="conversation id")  # fmt: skip
r3 = st.columns([3, 2, 2])
with r3[0]:
    chosen["range"] = ui.time_range_filter(tuple(ce.RANGES), default=ce.DEFAULT_RANGE, key="range")
slots["range"] = r3[0].empty()
chosen["from"] = r3[1].text_input("From (UTC)", **ui.in_url("from"),
                                  placeholder="YYYY-MM-DDTHH:MM",
                                  help="Overrides the time range.")  # fmt: skip
slots["from"] = r3[1].empty()
chosen["to"] = r3[2].text_input("To (UTC)", **ui.in_url("to"), placeholder="now")
slots["to"] = r3[2].empty()
if chosen["from"] or chosen["to"]:  # the range's control stays lit: say which one the list follows
    r3[0].caption("From / To are set: they, not the range, bound the list.")

try:
    filters = ce.CallFilters.from_params(chosen)
except ce.FilterError as exc:
    for key, message in exc.errors.items():
        slots.get(key, st).error(message, icon=":material/error:")  # beside its field
    st.caption("No call is listed until the filters above are fixed; every other value is kept.")
    st.stop()

# ?after=<cursor>&page=<n>: a shared link shows the same rows
cursor, number = ui.keyset_position(filters, "lc_filters")
try:
    page = explore(filters, cursor=cursor, limit=PAGE_SIZE)
except ce.FilterError as exc:  # a page link from another sort, or edited by hand
    ui.first_page_after_bad_link(next(iter(exc.errors.values())))
    cursor, number = None, 1
    page = explore(filters, cursor=None, limit=PAGE_SIZE)

if not page.rows:
    ui.empty_state("No LLM call matches these filters.", "Widen the time range or clear a filter.")
else:
    df = pd.DataFrame(page.rows)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["tokens"] = df["input_tokens"] + df["output_tokens"]
    df["conversation"] = [
        ui.query_link("conversations", conversation=c) if c else None for c in df["conversation_id"]
    ]
    for col in ("agent", "error_type", "error_raw"):  # an empty cell, not the word "None"
        df[col] = df[col].fillna("")
    view = df[["ts", "bot", "agent", "model", "provider", "success", "error_type", "error_raw", "latency_ms", "input_tokens",
               "output_tokens", "cost_usd", "cache_hit", "conversation", "trace_id"]]  # fmt: skip
    st.dataframe(
        view, hide_index=True, key="lc_table", placeholder="",
        column_config={
            "ts": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "success": st.column_config.CheckboxColumn("ok"),
            "error_type": st.column_config.TextColumn("error", help="The failure's kind (spans: rate_limit, server_error, "
                                                      "timeout, auth, bad_request, content_filter, other)"),
            "error_raw": st.column_config.TextColumn("error as sent", help="The error as the client or "
                                                     "instrumentation named it (exception type, HTTP status)"),
            "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.0f"),
            "input_tokens": st.column_config.NumberColumn("tokens in"),
            "output_tokens": st.column_config.NumberColumn("tokens out"),
            "cost_usd": st.column_config.NumberColumn("cost (USD)", format="$%.5f"),
            "cache_hit": st.column_config.CheckboxColumn(
                "cached", help="Answered from the bot's response cache: no provider call, so no cost (what "
                "caching saved is on Cost tracking)"),
            "conversation": st.column_config.LinkColumn(
                "conversation", display_text=r"conversation=(.*)$", help="Open the conversation"),
        },
    )  # fmt: skip
    # the CSV holds the conversation's id, not the page's link to it
    ui.download_csv(view.assign(conversation=df["conversation_id"]), "llm_calls.csv", key="lc_csv")
    first = (number - 1) * PAGE_SIZE + 1
    st.caption(f"Calls {first:,}–{first + len(page.rows) - 1:,} · {SORT_LABEL[filters.sort].lower()}")
ui.keyset_pager(cursor, number, page.next_cursor, "lc_filters", buttons="lc")
