# ruff: noqa: E402  (the project root goes on sys.path before the imports)
"""Entry point and router of the console: sign-in, role-based navigation, and the overview page.

`streamlit run Home.py`. With AUTH_MODE=none everyone is a local admin (a red banner says so);
otherwise users sign in with the accounts of `python -m observability.users`.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st

from observability import auth
from observability.timeutil import utcnow
from observability.ui import attention, charts, data, fmt, nav, sso, warmup
from observability.ui import common as ui

# the tab's icon from the console itself: a ":material/..." icon is fetched from fonts.gstatic.com
# on every page load (lost offline or behind a firewall, and a request to a third party)
st.set_page_config(
    page_title="Bot operations console", page_icon=str(ROOT / "observability" / "ui" / "console_icon.png"),
    layout="wide",
)  # fmt: skip


def login_page() -> None:
    ui.page_header("Bot operations console", "Sign in to watch and steer the bots.", system_banner=False)
    if ui.cookie_sessions():  # served by app.py: its own sign-in route sets the session cookie
        reason = st.session_state.get(ui.SESSION_END_KEY)
        claims = sso.identity()
        if claims is not None and not reason:  # back from the identity provider: finish single sign-on
            sso.finish(claims)
            return
        if reason:
            st.warning(f"Signed out: {ui.md_escape(reason)}.", icon=":material/logout:")
        nxt = urlparse(st.context.url or "/").path or "/"
        st.markdown(
            f'<a href="/auth/sign-in?{urlencode({"next": nxt})}" target="_self">Sign in</a>',
            unsafe_allow_html=True,
        )
        return
    with st.form("login", clear_on_submit=False):
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            user = auth.authenticate(ui.get_store(), name.strip(), password, client=ui.client_address())
        except auth.AuthError as exc:  # one message for every refusal (never which part was wrong)
            st.error(f"Sign-in failed: {ui.md_escape(exc)}.")
        else:
            ui.sign_in(user)
            st.rerun()


# where each Overview figure leads, in the order of the figures: (page stem, label, URL filters)
OVERVIEW_LINKS = (
    # the calls behind the 5-minute figures: from 5 minutes ago (LAST_5_MIN is filled in per run)
    ("llm_calls", "LLM calls", {"from": "LAST_5_MIN"}),
    ("llm_calls", "Failed calls", {"from": "LAST_5_MIN", "status": "error"}),
    ("llm_calls", "Slowest calls", {"range": "1h", "sort": "slowest"}),
    ("cost_tracking", "Cost tracking", {}),
    ("conversations", "Conversations", {"active": "1"}),  # the list with the same filter (Active now)
    ("alerts", "Alerts", {}),
)


def overview_page() -> None:
    ui.page_header("Overview", "Live figures of every bot; refreshes every 15 seconds.")

    @ui.live(run_every=ui.LIVE_REFRESH_S)
    def live() -> None:
        k = data.overview_kpis()
        c = st.columns(6)
        fmt.metric(c[0], "llm_requests_per_min", k.requests_per_min, window="5 min")
        fmt.metric(c[1], "llm_error_rate", k.error_rate, window="5 min")
        fmt.metric(c[2], "llm_p95_ms", k.p95_latency_ms, window="1h")
        fmt.metric(c[3], "spend_today_usd", k.spend_today_usd)
        fmt.metric(c[4], "active_conversations", k.active_conversations)
        fmt.metric(c[5], "firing_alerts", k.firing_alerts)
        since = f"{utcnow() - timedelta(minutes=5):%Y-%m-%dT%H:%M:%S}"
        for col, (page, label, params) in zip(c, OVERVIEW_LINKS, strict=True):  # each figure opens its page
            with col:
                ui.page_link(page, label, icon=":material/arrow_outward:",
                             **{k: since if v == "LAST_5_MIN" else v for k, v in params.items()})  # fmt: skip

    @ui.live(run_every=ui.LIVE_REFRESH_S)
    def requests() -> None:
        series = data.requests_series("1h", ())
        if series.empty:
            ui.empty_state(
                "No LLM calls in the last hour.",
                "Point a bot's ObservabilityClient at this store, or run the demo: "
                "`python -m observability.simulate --backfill-hours 24`.",
            )
            return
        fig = charts.area(
            series,
            x="ts",
            y="requests",
            color="bot",
            title="LLM requests per minute, last hour (the current minute is still running)",
        )
        st.plotly_chart(fig, key="ov_requests")

    @ui.live(run_every=ui.LIVE_REFRESH_S)
    def latency() -> None:
        lat = data.latency_by_bot("1h", ())
        if lat.empty:
            ui.empty_state("No LLM calls in the last hour.")
            return
        long = lat.melt(
            id_vars="bot", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="ms"
        )
        fig = charts.bar(
            long, x="bot", y="ms", color="percentile", title="LLM latency by bot, last hour (ms)"
        )
        st.plotly_chart(fig, key="ov_latency")

    @ui.live(run_every=ui.LIVE_REFRESH_S)
    def spend() -> None:
        today = data.llm_breakdown(86_400, (), ("model",))
        if today.empty:
            ui.empty_state("No LLM calls in the last 24 hours.")
            return
        fig = charts.bar(today, x="model", y="cost_usd", title="Spend by model, last 24 hours", ylabel="USD")
        st.plotly_chart(fig, key="ov_spend_models")

    @ui.live(run_every=ui.LIVE_REFRESH_S)
    def tables() -> None:
        st.subheader("Bots right now")
        bots = data.bots_now()
        ui.table(
            bots, "bots_now.csv", key="ov_bots",
            column_config={
                "bot": st.column_config.TextColumn("Bot"),
                **fmt.columns(
                    {"requests_1h": "llm_requests", "error_rate_1h": "llm_error_rate", "p50_ms": "llm_p50_ms",
                     "p95_ms": "llm_p95_ms"},
                    {"requests_1h": "LLM requests (1h)", "error_rate_1h": "LLM error rate (1h)",
                     "p50_ms": "LLM P50 (1h)", "p95_ms": "LLM P95 (1h)"},
                    window="the last hour",
                ),
                "spend_today_usd": fmt.column("spend_today_usd"),
                "slow_operations": st.column_config.TextColumn(
                    f"P95 over SLA, last {data.alert_window_s() // 60:g} min",
                    help="Operations whose P95 is above its SLA target in the sla_violation alert's window "
                    "(the same evaluation the alert and Bot health read)",
                ),
            },
        )  # fmt: skip

        st.subheader("Open alerts")
        alerts = data.open_alerts()
        if alerts.empty:
            st.success("No alert is firing.", icon=":material/check_circle:")
        else:
            ui.table(
                alerts[["severity", "state", "rule", "message", "fired_at"]],
                "open_alerts.csv",
                key="ov_alerts",
            )
        if (ROOT / "pages" / "alerts.py").is_file():
            st.page_link(
                str(ROOT / "pages" / "alerts.py"),
                label="Alerts and rules",
                icon=":material/arrow_forward:",
            )

    live()
    # the charts in tabs: a load queries and draws only the open tab's (its name is in the URL, ?tab=Spend+by+model)
    ui.lazy_tabs({"Requests": requests, "Latency by bot": latency, "Spend by model": spend})
    tables()
    trouble()


def _open_conversation(cid: str) -> None:
    st.switch_page(str(ROOT / "pages" / "conversations.py"), query_params={"conversation": cid})


@ui.live(run_every=ui.LIVE_REFRESH_S)
def trouble() -> None:
    """The live conversations in trouble, one click from their take-over control."""
    if (ROOT / "pages" / "conversations.py").is_file():
        attention.attention_panel(_open_conversation, key="ov_attention")


AFTER_LOGIN = "after_login"  # session key: the deep link a signed-out visitor asked for


def remember_deep_link() -> None:
    """Before sign-in: keep the page and query string the visitor opened (a shared link), so
    sign-in lands there instead of on the overview."""
    if AFTER_LOGIN in st.session_state:
        return
    try:
        path = urlparse(st.context.url or "").path.rstrip("/").rsplit("/", 1)[-1]
        params = st.query_params.to_dict()
    except Exception:  # noqa: BLE001 - no browser context (tests): nothing to remember
        return
    path = params.pop(ui.NEXT_PARAM, None) or path  # a page sent back through the router
    if nav.page_by_name(path) is not None:
        st.session_state[AFTER_LOGIN] = (path, params)


def main() -> None:
    user = ui.current_user()
    if user is None:
        remember_deep_link()
        # every page's URL shows the sign-in form (hidden entries), so a shared link keeps its path
        # instead of hitting "page not found"; after sign-in the link is opened (see below)
        doors = [
            st.Page(
                login_page, title="Sign in", icon=":material/login:", url_path=p.url_path, visibility="hidden"
            )
            for p in nav.PAGES
            if (ROOT / p.path).is_file()
        ]
        if sso.enabled():
            doors.append(
                st.Page(sso.sso_page, title="Single sign-on", url_path=sso.SSO_URL_PATH, visibility="hidden")
            )
        pg = st.navigation(
            [st.Page(login_page, title="Sign in", icon=":material/login:", default=True), *doors],
            position="hidden",
        )
        pg.run()
        return
    overview = st.Page(overview_page, title=nav.OVERVIEW_TITLE, icon=nav.OVERVIEW_ICON, default=True)
    groups: dict[str, list] = {"": [overview]}
    for section, specs in nav.sections(nav.existing_pages_for_role(user.role, ROOT)).items():
        groups[section] = [
            st.Page(str(ROOT / p.path), title=p.title, icon=p.icon, url_path=p.url_path) for p in specs
        ]
    # a page this role may not open, asked for by its URL (a shared link, a bookmark): hidden from
    # the navigation, its own `ui.require` says the role may not open it (it was Streamlit's "Page
    # not found" and Overview)
    allowed = {p.url_path for p in nav.existing_pages_for_role(user.role, ROOT)}
    groups[""] += [
        st.Page(str(ROOT / spec.path), title=spec.title, icon=spec.icon, url_path=spec.url_path, visibility="hidden")
        for spec in nav.PAGES
        if spec.url_path not in allowed and (ROOT / spec.path).is_file()
    ]  # fmt: skip
    pg = st.navigation(groups, expanded=True)
    nxt = st.query_params.get(ui.NEXT_PARAM)
    if nxt and AFTER_LOGIN not in st.session_state:  # sent back through the router while signed in
        st.session_state[AFTER_LOGIN] = (
            nxt,
            {k: v for k, v in st.query_params.to_dict().items() if k != ui.NEXT_PARAM},
        )
    target = st.session_state.pop(AFTER_LOGIN, None)
    if target is not None:
        page = next((p for ps in groups.values() for p in ps if p.url_path == target[0]), None)
        if page is not None and page.url_path != pg.url_path:
            st.switch_page(page, query_params=target[1] or None)
    with st.sidebar:
        st.caption(f"Signed in as **{ui.md_escape(user.name)}** ({user.role})")
        if ui.cookie_sessions() and not ui.is_auth_off():
            st.markdown('<a href="/auth/sign-out" target="_self">Sign out</a>', unsafe_allow_html=True)
        elif not ui.is_auth_off() and st.button("Sign out", icon=":material/logout:", key="logout"):
            ui.sign_out()
            st.rerun()
    ui.filters_from_the_url(pg.url_path)
    ui.run_guarded(pg.run)


with warmup.page_run():  # the console's idle imports wait for a pause in page runs
    main()
