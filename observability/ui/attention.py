"""The "Needs attention" panel of Overview and Conversations: live conversations in trouble, worst
first, each row saying why, with one button that opens it.

The ranking is `observability.analytics.attention.needs_attention` (one SQL statement, cached for
the console's TTL); this module only lays it out. Ids, bot and account names come from bots and
users, so they are escaped before they reach markdown.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from observability.analytics.attention import needs_attention
from observability.ui import common as ui

_ranked = ui.cached_query(needs_attention)
HELP = (
    "Trouble score of live AI conversations (last hour): safety score below threshold 40/20, the user "
    "asked for a person 30, unanswered for 10/5/1 min 30/20/10, AI confidence below threshold 25/12, "
    "failed handoff 20, circular handoff 15, sentiment declining 15, negative sentiment 15. "
    "VIP accounts break ties."
)


def attention_panel(on_open: Callable[[str], None], *, key: str, limit: int = 8) -> list[dict]:
    """Render the ranked list; `on_open(conversation_id)` runs when a row's Open button is clicked.
    Returns the rows shown."""
    st.subheader("Needs attention", help=HELP)
    rows = _ranked(limit=limit)
    if not rows:
        st.success("No live conversation shows signs of trouble.", icon=":material/check_circle:")
        return rows
    if ui.system_stop() is not None:
        st.caption("The system-wide stop holds: these conversations are stopped too. They stay ranked so "
                   "you know where to look first when the bots resume.")  # fmt: skip
    for r in rows:
        left, right = st.columns([6, 1], vertical_alignment="center")
        badge = " · **VIP**" if r["vip"] else ""
        account = r["account_name"] or r["account_id"]
        who = " · ".join(ui.md_escape(x) for x in (r["bot"], account) if x)
        left.markdown(
            f"**trouble {r['score']}** · {ui.md_escape(r['id'])}{badge} · {who}  \n"
            + ui.md_escape("; ".join(r["reasons"]))
        )
        if right.button("Open", key=f"{key}_{r['id']}", icon=":material/open_in_new:"):
            on_open(r["id"])
    return rows
