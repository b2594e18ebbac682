# ruff: noqa: E402  (the project root goes on sys.path before the imports)
"""Entry point and router of the console: sign-in, role-based navigation, and the overview page.

`streamlit run Home.py`. With AUTH_MODE=none everyone is a local admin (a red banner says so);
otherwise users sign in with the accounts of `python -m observability.users`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st

from observability import auth
from observability.ui import charts, data, nav
from observability.ui import common as ui

st.set_page_config(page_title="Bot operations console", page_icon=":material/smart_toy:", layout="wide")


def login_page() -> None:
    ui.page_header("Bot operations console", "Sign in to watch and steer the bots.")
    with st.form("login", clear_on_submit=False):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            user = auth.authenticate(ui.get_store(), name.strip(), password)
        except auth.AccountLocked as exc:
            st.error(f"Too many failed sign-ins: {exc}. Try again later or ask an admin.")
        except auth.AuthError as exc:
            st.error(f"Sign-in failed: {exc}.")
        else:
            ui.sign_in(user)
            st.rerun()


def overview_page() -> None:
    ui.page_header("Overview", "Live figures of every bot; refreshes every 15 seconds.")

    @st.fragment(run_every=ui.LIVE_REFRESH_S)
    def live() -> None:
        k = data.overview_kpis()
        c = st.columns(6)
        c[0].metric(
            "Requests / min", f"{k.requests_per_min:,.1f}", help="LLM calls per minute, last 5 minutes"
        )
        c[1].metric("Error rate", f"{k.error_rate:.1%}", help="Failed LLM calls, last 5 minutes")
        c[2].metric(
            "P95 latency", "–" if k.p95_latency_ms is None else f"{k.p95_latency_ms:,.0f} ms",
            help="LLM call latency, last hour (exact)",
        )  # fmt: skip
        c[3].metric("Spend today", f"${k.spend_today_usd:,.2f}", help="Since 00:00 UTC")
        c[4].metric(
            "Active conversations", f"{k.active_conversations:,}", help="Activity in the last 15 minutes"
        )
        c[5].metric("Firing alerts", f"{k.firing_alerts:,}", help="Alerts firing or acknowledged")
        series = data.requests_series("1h", ())
        if series.empty:
            ui.empty_state(
                "No LLM calls in the last hour.",
                "Point a bot's ObservabilityClient at this store, or run the demo: "
                "`python -m observability.simulate --backfill-hours 24`.",
            )
            return
        left, right = st.columns(2)
        fig = charts.area(series, x="ts", y="requests", color="bot", title="Requests per minute, last hour")
        left.plotly_chart(fig, key="ov_requests")
        lat = data.latency_by_bot("1h", ())
        if not lat.empty:
            fig = charts.bar(
                lat.melt(id_vars="bot", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms"),
                x="bot", y="ms", color="percentile", barmode="group", title="LLM latency by bot, last hour (ms)",
            )  # fmt: skip
            right.plotly_chart(fig, key="ov_latency")

    live()


def main() -> None:
    user = ui.current_user()
    if user is None:
        pg = st.navigation([st.Page(login_page, title="Sign in", icon=":material/login:")], position="hidden")
        pg.run()
        return
    overview = st.Page(overview_page, title=nav.OVERVIEW_TITLE, icon=nav.OVERVIEW_ICON, default=True)
    groups: dict[str, list] = {"": [overview]}
    for section, specs in nav.sections(nav.existing_pages_for_role(user.role, ROOT)).items():
        groups[section] = [
            st.Page(str(ROOT / p.path), title=p.title, icon=p.icon, url_path=p.url_path) for p in specs
        ]
    pg = st.navigation(groups, expanded=True)
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        if not ui.is_auth_off() and st.button("Sign out", icon=":material/logout:", key="logout"):
            ui.sign_out()
            st.rerun()
    pg.run()


main()
