"""Helpers every console page uses. Names here are stable: other pages rely on them.

Store and user
    get_store()                 -> Store      one per DATABASE_URL per process (st.cache_resource);
                                              actions and sign-in use it (the primary)
    get_read_store()            -> Store      DATABASE_READ_URL (a hot standby) when set, else get_store();
                                              every cached_query reads through it
    current_user()              -> User|None  signed-in user (re-read from the store each run, so a
                                              disabled account is signed out); "local" admin when AUTH_MODE=none
    require(action)             -> User       st.error + st.stop unless the user's role may `action`
    is_auth_off()               -> bool       AUTH_MODE=none

Layout
    page_header(title, caption=None)          title, caption, red "Authentication is off" banner, the
                                              red "Every conversation is stopped" banner while a
                                              system-wide stop holds (every page shows it), and a
                                              note while the read replica lags over REPLICA_MAX_LAG_S
    danger_button(label, key, **kw) -> bool   a primary button styled red, for destructive actions
    empty_state(message, hint=None)           the friendly "nothing here yet" box
    download_csv(df, filename, key)           a "Download CSV" button under a table
    table(df, filename, key, **kw)            st.dataframe + download_csv in one call
    lazy_tabs({label: draw, ...}, key="tab")  tabs of which only the open one runs `draw` (its
                                              queries and charts); the open tab is in the URL

Filters in the URL (so a view can be shared as a link; widgets bound to st.query_params)
    st.<widget>(..., **in_url(key))                  bind a widget to ?key= (never bind= directly: see
                                                    filters_from_the_url)
    time_range_filter(options=("1h", "24h", "7d"), default="1h", key="range") -> str
    bot_filter(bots, key="bot")       -> list[str]  selected bots ([] means all; handoff_step=True offers it)
    query_param(key, default=None)    -> str|None   read a plain query parameter
    set_query_params(**values)                      write plain query parameters (None deletes)
    query_link(page_path, **params)   -> str        relative URL of a page with a query string
    page_link(page, label, icon=None, **params)     a link to another page with its filters set
    keyset_position(filters, key) -> (cursor, n)    a paged list's page from ?after=&page= (new
                                                    filters: the first page)
    keyset_pager(cursor, n, next_cursor, key, buttons)  first / previous / next page buttons
    go_to_keyset_page(cursor, n)                    show page n (after `cursor`) and put it in the URL
    first_page_after_bad_link(message)              a stale page link: say so, show the first page

Caching
    cached_query(fn)   fn(store, *args, **kw) -> cached callable(*args, **kw); st.cache_data with
                       ttl=settings.console_cache_ttl_s, keyed by the read URL and the arguments
    clear_caches()     forget every cached query (benchmarks' cold runs, tests)
    LIVE_REFRESH_S     seconds between refreshes of live fragments (live(run_every=...))
    live(run_every)    st.fragment(run_every=...) that checks the session on each of its runs
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlparse

import pandas as pd
import streamlit as st

from observability import auth, control
from observability.analytics import sla
from observability.auth import sessions
from observability.settings import get_settings
from observability.store import Store, heartbeats
from observability.store.database import read_url

log = logging.getLogger(__name__)

USER_KEY = "user"  # st.session_state key holding the signed-in auth.User
LOCAL_USER = auth.User("local", auth.ADMIN)
LIVE_REFRESH_S = 15
TIME_RANGES = ("1h", "6h", "24h", "7d", "30d")

T = TypeVar("T")


# ---- store and user ---------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _store_for(database_url: str) -> Store:
    store = Store.from_url(database_url)
    try:
        store.ensure_migrated()
    except Exception as exc:  # noqa: BLE001 - a read-only or busy store still serves reads
        log.warning("console could not migrate the store: %s", exc)
    return store


def get_store() -> Store:
    """The store of DATABASE_URL, opened (and migrated) once per process and URL."""
    return _store_for(get_settings().database_url)


@st.cache_resource(show_spinner=False)
def _replica_for(read_url: str) -> Store:
    return Store.from_url(read_url)  # a standby is read-only: never migrated from here


def _reads_for(read_url: str) -> Store:
    return _store_for(read_url) if read_url == get_settings().database_url else _replica_for(read_url)


def get_read_store() -> Store:
    """Where the console's queries go: the read replica (DATABASE_READ_URL) when one is set, so
    dashboards do not load the primary that ingest writes to; else the same store as get_store()."""
    return _reads_for(read_url())


def is_auth_off() -> bool:
    return get_settings().auth_mode == "none"


_cookie_sessions = False  # set by app.py: sessions come from the signed cookie, not the page state
SESSION_END_KEY = "session_end_reason"  # st.session_state: why the cookie's session ended


def enable_cookie_sessions() -> None:
    """Called by app.py (the ASGI app): every run resolves the user from the session cookie."""
    global _cookie_sessions
    _cookie_sessions = True


def cookie_sessions() -> bool:
    if _cookie_sessions:
        return True
    try:  # app.py's SessionGate marks the page's connection
        return st.context.headers.get("x-obs-session-gate") == "1"
    except Exception:  # noqa: BLE001 - no browser context (AppTest)
        return False


def _cookie_user() -> auth.User | None:
    try:
        value = st.context.cookies.get(sessions.COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no browser context
        value = None
    resolved = sessions.resolve(get_store(), sessions.unsign(value if isinstance(value, str) else None))
    if resolved.user is None:
        st.session_state[SESSION_END_KEY] = resolved.reason
    return resolved.user


def current_user() -> auth.User | None:
    """The signed-in user, re-read from the store on every run (a disabled user is signed out, a
    changed role applies at once): from the session cookie under app.py, else from the page
    state (AppTest and `streamlit run Home.py`); with AUTH_MODE=none a local admin."""
    if is_auth_off():
        return st.session_state.get(USER_KEY) or LOCAL_USER
    if cookie_sessions():
        return _cookie_user()
    user = st.session_state.get(USER_KEY)
    if not isinstance(user, auth.User):
        return None
    fresh = auth.get_user(get_store(), user.name)
    if fresh is None or fresh.disabled:
        sign_out()
        return None
    if fresh != user:
        st.session_state[USER_KEY] = fresh
    return fresh


def client_address() -> str:
    """The browser's address as Streamlit sees it ("local" on localhost), for the sign-in throttle."""
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001 - no browser context (AppTest)
        ip = None
    return ip if isinstance(ip, str) and ip else "local"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~$:])")


# Unicode's bidirectional formatting characters (embeddings, overrides, isolates, marks): inside
# data they reorder what is drawn, so "\u202eRTL override" reads "edirrevo LTR" and a message can
# show other text than it holds. Data is shown with each one as a visible code instead.
# (the marks LRM, RLM and ALM only set the direction of neutral characters, and right-to-left
# writers use them: they stay)
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def visible_text(text: str) -> str:
    """`text` as it is, except bidi formatting characters, shown as their codes (`<U+202E>`)."""
    return _BIDI_CONTROLS.sub(lambda m: f"<U+{ord(m.group()):04X}>", str(text))


def visible_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `visible_text` applied to its text cells (a copy only when one holds such a character)."""
    text_cols = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    hit = [
        c
        for c in text_cols
        if df[c].map(lambda v: isinstance(v, str) and bool(_BIDI_CONTROLS.search(v))).any()
    ]
    if not hit:
        return df
    out = df.copy()
    for c in hit:
        out[c] = out[c].map(lambda v: visible_text(v) if isinstance(v, str) else v)
    return out


def md_escape(text: str) -> str:
    """`text` with every markdown character escaped, for user-supplied names in st.markdown/caption
    (and its bidi formatting characters shown as codes: `visible_text`)."""
    return _MD_SPECIAL.sub(r"\\\1", visible_text(text))


def sign_in(user: auth.User) -> None:
    st.session_state[USER_KEY] = user


def sign_out() -> None:
    st.session_state.pop(USER_KEY, None)


NEXT_PARAM = "next"  # query parameter carrying a deep link through Home.py's router


def _outside_router() -> bool:
    """True when Streamlit ran a page file directly instead of through Home.py's st.navigation.

    A freshly started server with a `pages/` directory serves the very first request in its legacy
    multipage mode until some session has called st.navigation; a deep link opened then would skip
    the router (and its sign-in form)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager

        return PagesManager.uses_pages_directory is True
    except Exception:  # noqa: BLE001 - internal API moved: assume the router ran
        return False


def route_from_the_start() -> bool:
    """Make Streamlit use Home.py's router (st.navigation) from the server's first page run.

    Streamlit decides on its first session whether the app is a legacy `pages/` directory app and
    keeps that until some run calls st.navigation; until then a page opened by URL runs on its own,
    `require` sends it back through the router (a second run) and the router switches to the
    page (a third): the first visit after a start paid three runs (bench/pages.py,
    browser_first_s). The console always routes through Home.py, so app.py says so at import.
    Returns False when Streamlit's internals moved (the redirect in `require` still applies)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except Exception:  # noqa: BLE001 - internal API moved
        return False
    if not hasattr(PagesManager, "uses_pages_directory"):
        return False
    PagesManager.uses_pages_directory = False
    return True


def _back_to_router() -> None:
    try:
        page = urlparse(st.context.url or "").path.rstrip("/").rsplit("/", 1)[-1]
        params = st.query_params.to_dict()
    except Exception:  # noqa: BLE001
        page, params = "", {}
    st.switch_page("Home.py", query_params={**params, NEXT_PARAM: page} if page else params)


def live(
    run_every: float | str | None = LIVE_REFRESH_S, **fragment_kwargs: Any
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """`st.fragment(run_every=...)` that checks the session again on each of its own runs.

    A fragment's timed rerun runs only its function, never the page's `require`: a tab left open
    went on receiving new messages after its user signed out in another tab or was disabled. Now a
    rerun whose session has ended, or whose role lost the page's permission, reruns the whole page,
    which then shows the sign-in (or the refusal) like any page load."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> T:
            # the page's own run checked it a moment ago (its fragments run within it): only the
            # fragment's timed reruns, seconds later, need a store read
            if time.monotonic() - st.session_state.get(LIVE_CHECKED_KEY, -1e9) > LIVE_CHECK_FRESH_S:
                wanted = st.session_state.get(LIVE_ACTION_KEY)
                user = current_user()
                if user is None or (wanted is not None and not user.can(wanted)):
                    st.rerun(scope="app")
                st.session_state[LIVE_CHECKED_KEY] = time.monotonic()
            return fn(*args, **kwargs)

        return st.fragment(run_every=run_every, **fragment_kwargs)(guarded)

    return decorate


LIVE_ACTION_KEY = "page_action"  # st.session_state: the action the open page was required for
LIVE_CHECKED_KEY = "session_checked_at"  # st.session_state: when the session was last checked
LIVE_CHECK_FRESH_S = 2.0  # a check this recent (the page's own run) is not repeated


def require(action: str) -> auth.User:
    """Stop the page with an error unless the current user's role may do `action`.

    Every page calls this first; it also sends a page that was opened outside Home.py's router
    back through it (with the deep link kept), so sign-in and role-based navigation always apply."""
    if _outside_router():
        _back_to_router()
    user = current_user()
    if user is None:
        st.error("Please sign in first.")
        st.stop()
    st.session_state[LIVE_ACTION_KEY] = action  # its live parts check it again on their own runs
    st.session_state[LIVE_CHECKED_KEY] = time.monotonic()
    if not user.can(action):
        st.error(f"You don't have permission to open this page: your role ({user.role}) may not "
                 f"`{action}`. An admin can change your role.", icon=":material/block:")  # fmt: skip
        st.stop()
    return user


# ---- layout -----------------------------------------------------------------------------------


def auth_banner() -> None:
    if is_auth_off():
        st.error(
            "Authentication is off (AUTH_MODE=none): anyone who can reach this console acts as admin.",
            icon=":material/lock_open:",
        )


def system_stop() -> dict | None:
    """The system-wide stop while it holds (`control.system_status`: by, at, reason), else None.
    Read from the store on every call, so it shows at once; a store that cannot answer is logged
    and reads as no stop (a store outage must not take every page down)."""
    try:
        system = control.system_status(get_store())
    except Exception as exc:  # noqa: BLE001
        log.warning("could not read the system-wide stop: %s", exc)
        return None
    return system if system["stopped"] else None


def system_stop_banner() -> bool:
    """The red banner of a system-wide stop on every page; True while the stop holds."""
    system = system_stop()
    if system is None:
        return False
    since = f" since {system['at']:%Y-%m-%d %H:%M:%S} UTC" if system["at"] else ""
    st.error(
        f"**Every conversation is stopped** (system-wide stop){since} by {md_escape(system['by'] or '?')}: "
        f"{md_escape(system['reason'] or 'no reason given')}. No bot may respond until an admin resumes "
        "them on the Emergency controls page.",
        icon=":material/emergency_home:",
    )
    return True


def replica_lag_note() -> None:
    """A note while the read replica is further behind the primary than REPLICA_MAX_LAG_S (or
    cannot be reached), so nobody takes a late figure for a current one."""
    s = get_settings()
    if not s.database_read_url or s.database_read_url == s.database_url:
        return
    try:
        lag = get_read_store().replica_lag_s()
    except Exception as exc:  # noqa: BLE001 - a replica outage must not take every page down
        log.warning("could not read the replica's lag: %s", exc)
        st.warning(
            "The read replica (DATABASE_READ_URL) cannot be reached: figures may be missing.",
            icon=":material/sync_problem:",
        )
        return
    if lag is None or lag <= s.replica_max_lag_s:
        return
    behind = "an unknown time" if lag == float("inf") else f"{lag:,.0f} s"
    st.warning(
        f"Figures come from a read replica that is {behind} behind the primary (more than "
        f"REPLICA_MAX_LAG_S = {s.replica_max_lag_s:g} s): the newest events and actions may not show yet.",
        icon=":material/sync_problem:",
    )


def worker_behind_note() -> None:
    """A warning on every page while no worker has ticked within HEALTH_MAX_WORKER_LAG_S: the
    pages go on showing figures that look current while nothing evaluates alerts, sends
    notifications or scores conversations (`store.heartbeats`, what /healthz reads too)."""
    try:
        pulse = _worker_pulse()
    except Exception as exc:  # noqa: BLE001 - the store's own trouble shows elsewhere
        log.warning("could not read the worker's heartbeat: %s", exc)
        return
    if not pulse.behind:
        return
    stalled = ("alerts are not evaluated or sent, conversations are not scored, and hourly and daily "
               "figures fall behind")  # fmt: skip
    if pulse.last_tick_at is None:
        st.warning(f"No worker has run on this store: {stalled}. Start one with "
                   "`python -m observability.worker`.", icon=":material/engineering:")  # fmt: skip
        return
    st.warning(
        f"The worker has not run for {_duration(pulse.age_s or 0)} (its last tick at "
        f"{pulse.last_tick_at:%H:%M:%S} UTC; at most {pulse.limit_s:,.0f} s is expected): {stalled} until it "
        "runs again. Nothing is lost: events wait for it.",
        icon=":material/engineering:",
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86_400:,.1f} days"


OPEN_PAGE_KEY = "ui_open_page"
URL_KEYS_KEY = "ui_url_keys"  # the keys of every widget bound to the URL so far in the session (`in_url`)


def in_url(key: str) -> dict[str, str]:
    """A widget's `key=` and `bind="query-params"`, for `st.<widget>(..., **in_url("status"))`: the
    key is recorded so that `filters_from_the_url` drops its kept value on the next page entry.
    Recorded when the widget is drawn, not when its URL changes: a filter picked and left at once
    (its rerun merged into the next page's by Streamlit) never had a run that saw its parameter in
    the URL, yet its value was kept and filtered the page's next visit (LLM calls came back from
    Overview's "Slowest calls" link listing failed calls only)."""
    keys = st.session_state.setdefault(URL_KEYS_KEY, ())
    if key not in keys:
        st.session_state[URL_KEYS_KEY] = (*keys, key)
    return {"key": key, "bind": "query-params"}


def filters_from_the_url(page: str) -> None:
    """A page opened from another one starts from its own URL: a filter the URL does not name is
    at the page's default. Streamlit keeps a URL-bound widget's value under its key for the session
    (its binding outlives a page switch), so a bot picked on Conversations went on filtering Cost
    tracking's spend, and LLM calls, left listing failed calls, came back from Overview's "Slowest
    calls" link or the sidebar still listing failed calls only; a link that should carry a filter
    (Overview's, an alert's) names it. A value the URL does name is dropped too, so its widget reads
    it from the URL: an alert's link to Conversation quality's `?tab=Handoffs` opened the tab the
    Alerts page had open, "History" then "Conversations"."""
    if st.session_state.get(OPEN_PAGE_KEY) == page:
        return
    st.session_state[OPEN_PAGE_KEY] = page
    for key in st.session_state.get(URL_KEYS_KEY, ()):
        st.session_state.pop(key, None)


def page_header(title: str, caption: str | None = None, *, system_banner: bool = True) -> None:
    """Page title and caption, with the red banners when authentication is off and while a
    system-wide stop holds (`system_banner=False` only for the sign-in form), and the read
    replica's lag note."""
    auth_banner()
    if system_banner:
        system_stop_banner()
        live(run_every=LIVE_REFRESH_S)(worker_behind_note)()  # an open tab sees the worker stop and start
        replica_lag_note()
    st.html(METRIC_LABEL_STYLE)
    st.title(title)
    if caption:
        st.caption(caption)


# Streamlit cuts a metric label that is wider than its column with an ellipsis ("Claude spend toda…");
# labels say what a figure counts and over which window, so a long one wraps onto a second line instead.
# It cuts a value too ("2,85…" for 2,856 ms in a sixth of a laptop's page): the value's size follows
# its metric's width (a container query), up to Streamlit's own 2.25rem, so ten characters fit.
METRIC_LABEL_STYLE = (
    '<style>[data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"],'
    '[data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"] p'
    "{white-space:normal!important;overflow:visible;text-overflow:clip}"
    '[data-testid="stMetric"]{container-type:inline-size}'
    '[data-testid="stMetricValue"]{font-size:clamp(1rem,17cqw,2.25rem)}</style>'
)


DANGER_STYLE = (
    "<style>.st-key-{key} button{{background-color:#c62828;border-color:#c62828;color:#fff}}"
    ".st-key-{key} button:hover{{background-color:#8e0000;border-color:#8e0000;color:#fff}}</style>"
)


def danger_button(label: str, key: str, **kwargs: Any) -> bool:
    """A primary button styled red (white on red), for actions that stop things."""
    st.html(DANGER_STYLE.format(key=key))
    return st.button(label, key=key, type="primary", **kwargs)


def empty_state(message: str, hint: str | None = None) -> None:
    """A friendly empty state instead of an empty chart."""
    text = message if not hint else f"{message}\n\n{hint}"
    st.info(text, icon=":material/hourglass_empty:")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: a spreadsheet evaluates these


def _csv_cell(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def csv_bytes(df: pd.DataFrame | None) -> bytes:
    """A table as CSV that a spreadsheet opens as data: a text cell (or column name) starting with
    `=`, `+`, `-`, `@`, tab or CR gets a leading `'` (OWASP), since bot names, authors and metric
    names come from SDK callers. Numbers stay numbers (a negative amount is not a formula)."""
    if df is None:
        return b""
    safe = df.copy()
    for col in safe.columns:
        dtype = safe[col].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)):
            safe[col] = safe[col].map(_csv_cell)
    safe.columns = [_csv_cell(str(c)) for c in safe.columns]
    # RFC 4180 line ends: a CR inside a cell is then quoted instead of breaking the row
    return safe.to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def download_csv(df: pd.DataFrame, filename: str, key: str, label: str = "Download CSV") -> None:
    """A download button for a table (every table in the console is downloadable), formula-safe."""
    data = csv_bytes(df)
    st.download_button(
        label, data=data, file_name=filename, mime="text/csv", key=key, icon=":material/download:",
        on_click="ignore",
    )  # fmt: skip


def table(
    df: pd.DataFrame, filename: str, key: str, download: pd.DataFrame | None = None, **dataframe_kwargs: Any
) -> None:
    """st.dataframe followed by its CSV download button; the CSV holds `download` when given (the
    frame before `fmt.progress` scaled its ratios for showing, or the ids a link column links to).

    A table with a link column must give `download`: otherwise its CSV would hold the console's
    `./page?key=…` links where the table shows ids (as Cost tracking's top conversations did)."""
    links = [c for c, cfg in (dataframe_kwargs.get("column_config") or {}).items()
             if isinstance(cfg, dict) and (cfg.get("type_config") or {}).get("type") == "link"]  # fmt: skip
    if links and download is None:
        raise ValueError(f"table {key!r} links {links}: pass download= with the ids instead of the links")
    dataframe_kwargs.setdefault("hide_index", True)
    dataframe_kwargs.setdefault("placeholder", "")  # a missing value is an empty cell, not "None"
    st.dataframe(visible_frame(df), key=f"{key}_df", **dataframe_kwargs)
    download_csv(df if download is None else download, filename, key=f"{key}_csv")


def lazy_tabs(sections: dict[str, Callable[[], Any]], key: str = "tab") -> str:
    """Tabs, one per section, of which only the open one's `draw` runs: a page load queries and
    draws one tab's charts, not every tab's. The open tab is in the URL (`?tab=Cache`; the first tab
    leaves no parameter), so a shared link opens the tab its sender saw; switching tabs reruns the
    page. A `draw` may be a live fragment (`st.fragment(run_every=...)`): it refreshes only while
    its tab is open. Returns the open tab's label."""
    labels = list(sections)
    tabs = st.tabs(labels, **in_url(key))
    label = next((lbl for lbl, tab in zip(labels, tabs, strict=True) if tab.open), labels[0])
    with tabs[labels.index(label)]:
        sections[label]()
    return label


# ---- URL filters ------------------------------------------------------------------------------


def time_range_filter(
    options: Sequence[str] = ("1h", "24h", "7d"),
    default: str = "1h",
    key: str = "range",
    label: str = "Time range",
) -> str:
    """A segmented control bound to `?range=`; returns the chosen range (never None).

    A value this page does not offer (a link from a page with other ranges) is replaced in the URL
    by the default before the control binds, so the URL always says what the page shows."""
    raw = query_param(key)
    if raw is not None and raw not in options:
        try:
            st.query_params[key] = default
        except Exception:  # noqa: BLE001 - already bound this run: the control corrects it
            pass
    value = st.segmented_control(label, list(options), default=default, **in_url(key), required=True)
    return value if value in options else default


def bot_filter(
    bots: Sequence[str], key: str = "bot", label: str = "Bots", *, handoff_step: bool = False
) -> list[str]:
    """A multiselect bound to `?bot=a&bot=b`; returns the chosen bots ([] = all bots).

    With `handoff_step` the handoff service is offered too, after the bots and under the name
    people see it by ("handoff step", `sla.STEP_LABEL`, also in the URL: a widget bound to the URL
    writes what it shows); it is returned as `sla.HANDOFF_STEP`, the name its operations are
    stored under. A link naming it `?bot=handoff` selects it too (the multiselect dropped that
    value silently and showed every bot)."""
    options = sorted({b for b in bots if b and b != sla.HANDOFF_STEP})
    if handoff_step:
        options.append(sla.STEP_LABEL)
        try:
            linked = st.query_params.get_all(key)
        except Exception:  # noqa: BLE001 - already bound this run: the widget holds the value
            linked = []
        if sla.HANDOFF_STEP in linked:  # the widget would drop it: it goes in as the widget's state
            named = dict.fromkeys(sla.STEP_LABEL if b == sla.HANDOFF_STEP else b for b in linked)
            st.session_state[key] = [b for b in named if b in options]
    chosen = st.multiselect(label, options, **in_url(key), placeholder="All bots")
    return [sla.HANDOFF_STEP if b == sla.STEP_LABEL else b for b in chosen if b in options]


_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]*")
# key -> (longest value, characters allowed, what a user is told); others: QUERY_PARAM_DEFAULT_RULE
QUERY_PARAM_RULES: dict[str, tuple[int, re.Pattern[str], str]] = {
    "calls": (4000, re.compile(r"[\w,.:-]*"), "call ids separated by commas"),
    "after": (600, _PRINTABLE, "printable characters"),  # a page cursor: a time, a sort value and an id
}
QUERY_PARAM_DEFAULT_RULE = (100, _PRINTABLE, "printable characters")


def query_param(key: str, default: str | None = None) -> str | None:
    """A plain (not widget-bound) query parameter, checked before use: a value that is too long or
    holds characters it may not is ignored (the default is returned) with a friendly warning that
    does not echo it, since a shared link is written by whoever sent it."""
    try:
        value = st.query_params.get(key, default)
    except Exception:  # noqa: BLE001 - bound parameters raise; treat as absent
        return default
    if value is None or value == default:
        return value
    max_len, allowed, what = QUERY_PARAM_RULES.get(key, QUERY_PARAM_DEFAULT_RULE)
    if len(value) > max_len or not allowed.fullmatch(value):
        st.warning(
            f"The link's `{key}` value was ignored: it must be at most {max_len} {what}. "
            "Check the link you were sent, or pick from the page instead.",
            icon=":material/link_off:",
        )
        return default
    return value


CURSOR_PARAM, PAGE_PARAM = "after", "page"  # a keyset-paged list's position: ?after=<cursor>&page=<n>
_UNSEEN = object()


def filters_changed(filters: Any, key: str) -> bool:
    """Whether a paged list's `filters` differ from the last run's (kept under `key` in the
    session), so the list goes back to its first page; a session's first run (a link just opened)
    is no change and keeps the link's page."""
    before = st.session_state.get(key, _UNSEEN)
    st.session_state[key] = filters
    return before is not _UNSEEN and before != filters


def keyset_position(filters: Any, key: str) -> tuple[str | None, int]:
    """The page of a keyset-paged list that the URL names, as (cursor, page number): the cursor the
    page's query continues after (None: the first page) and its number, for "rows 51-100". The
    position lives in the URL so a shared link shows the receiver the same rows. When `filters`
    differ from the last run's (kept under `key` in the session) the list goes back to its first
    page; a session's first run (a link just opened) keeps the link's position."""
    if filters_changed(filters, key):
        st.session_state.pop(f"{key}_trail", None)  # the pages seen belong to the old filters
        set_query_params(**{CURSOR_PARAM: None, PAGE_PARAM: None})
        return None, 1
    cursor = query_param(CURSOR_PARAM)
    if not cursor:
        if query_param(PAGE_PARAM) is not None:
            set_query_params(**{PAGE_PARAM: None})
        return None, 1
    number = query_param(PAGE_PARAM, "2") or "2"
    valid = number.isascii() and number.isdigit() and len(number) < 7  # not "²", not a 1e6-page claim
    return cursor, (max(int(number), 2) if valid else 2)


def keyset_pager(cursor: str | None, number: int, next_cursor: str | None, key: str, buttons: str) -> None:
    """First, previous and next page of a keyset-paged list at `number` (shown after `cursor`).
    A keyset page knows only where the next one starts, so the way back is the pages this session
    has shown, kept with the filters under `key` (keyset_position's); a page opened from a link has
    none before it until the first page is opened. `buttons` prefixes the buttons' keys."""
    trail = st.session_state.setdefault(f"{key}_trail", {1: None})
    trail[number] = cursor
    back = trail.get(number - 1, _UNSEEN) if number > 1 else _UNSEEN
    b1, b2, b3, _ = st.columns([1, 1.1, 1, 3])
    if b1.button("First page", key=f"{buttons}_first", disabled=cursor is None, icon=":material/first_page:"):
        go_to_keyset_page(None, 1)
    if b2.button(
        "Previous page", key=f"{buttons}_prev", disabled=back is _UNSEEN, icon=":material/navigate_before:",
        help=None if number == 1 or back is not _UNSEEN else "This page came from a link: open the first page to page back.",
    ):  # fmt: skip
        go_to_keyset_page(back, number - 1)
    if b3.button(
        "Next page", key=f"{buttons}_next", disabled=next_cursor is None, icon=":material/navigate_next:"
    ):
        go_to_keyset_page(next_cursor, number + 1)


def go_to_keyset_page(cursor: str | None, number: int) -> None:
    """Show another page of the list (`cursor` None: the first) and write it in the URL."""
    first = cursor is None or number <= 1
    set_query_params(**{CURSOR_PARAM: None if first else cursor, PAGE_PARAM: None if first else str(number)})
    st.rerun()


def first_page_after_bad_link(message: str) -> None:
    """A page position from a link that no longer works (another sort, an edited URL): say so and
    drop it, so the list shows its first page."""
    st.warning(f"{message[:1].upper()}{message[1:]}.", icon=":material/link_off:")
    set_query_params(**{CURSOR_PARAM: None, PAGE_PARAM: None})


def run_guarded(run: Callable[[], Any]) -> None:
    """The console's error boundary (Home.py runs every page through it): an unexpected error is
    logged with its traceback under a short id, and the page shows only that id, never the
    traceback (which can hold data, paths and queries). Streamlit's own stop/rerun signals are
    BaseExceptions and pass through."""
    try:
        run()
    except Exception:
        error_id = uuid.uuid4().hex[:10]
        log.exception("page error %s", error_id)
        st.error(
            f"Something went wrong on this page (error id {error_id}). The details are in the console's "
            "log under that id: pass it on to whoever runs the console.",
            icon=":material/error:",
        )


def set_query_params(**values: str | None) -> None:
    for k, v in values.items():
        if v is None:
            st.query_params.pop(k, None)
        else:
            st.query_params[k] = str(v)


def query_link(page_path: str, **params: Any) -> str:
    """Relative link to another page with a query string, e.g. query_link("cost_tracking", day=...)."""
    slug = page_path.rsplit("/", 1)[-1].removesuffix(".py")
    clean = {k: v for k, v in params.items() if v is not None}
    return f"./{slug}" + (f"?{urlencode(clean, doseq=True)}" if clean else "")


def page_link(page: str, label: str, *, icon: str | None = None, **params: Any) -> None:
    """A link to another console page (`page` is its file stem) opening with `params` in its URL,
    in the same tab. Outside Home.py's router (a page run alone, as in AppTest) a plain link."""
    from observability.settings import PROJECT_ROOT

    clean = {k: v for k, v in params.items() if v not in (None, "", [], ())}
    clean = {k: [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v) for k, v in clean.items()}
    try:  # Streamlit draws the label as markdown, and labels carry names bots sent (an account's)
        st.page_link(
            str(PROJECT_ROOT / "pages" / f"{page}.py"),
            label=md_escape(label),
            icon=icon,
            query_params=clean or None,
        )
    except Exception:  # noqa: BLE001 - StreamlitPageNotFoundError: not in this run's navigation
        st.markdown(f"[{md_escape(label)}]({query_link(page, **clean)})")


# ---- caching ----------------------------------------------------------------------------------


def cached_query(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a query `fn(store, *args, **kw)` as a cached `(*args, **kw)` reading get_read_store().

    Results are cached for settings.console_cache_ttl_s (15 s) per read URL and arguments,
    so every page shares them and a refresh never hits the database more than once per TTL.
    Arguments must be hashable by Streamlit (str, numbers, tuples, lists, dates); results picklable.
    """

    def _run(_fn_name: str, database_url: str, *args: Any, **kwargs: Any) -> T:
        return fn(_reads_for(database_url), *args, **kwargs)

    _run.__module__ = fn.__module__
    _run.__qualname__ = f"cached_query.{fn.__module__}.{fn.__qualname__}"
    _run.__name__ = fn.__name__
    cached = st.cache_data(ttl=get_settings().console_cache_ttl_s, show_spinner=False)(_run)
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return cached(name, read_url(), *args, **kwargs)

    wrapper.clear = cached.clear  # type: ignore[attr-defined]
    wrapper.uncached = fn  # type: ignore[attr-defined]
    return wrapper


def clear_caches() -> None:
    """Forget every cached query result (not the store connection)."""
    st.cache_data.clear()


_worker_pulse = cached_query(heartbeats.current_pulse)  # every page's banner: one read per 15 s
