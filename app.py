"""The console as an ASGI app: `streamlit run app.py` (or any ASGI server: `uvicorn app:app`).

Streamlit serves Home.py (the router and its pages); around it this app adds the console's own
sign-in and sign-out routes and the session gate (`observability.ui.web_auth`), so a session lives
in a signed HttpOnly cookie and survives reloads and new tabs, and the HTTP API with its WebSocket
under /api/v1 (`observability.api`, token-authenticated).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from observability import api  # noqa: E402
from observability.ui import assets, nav, web_auth  # noqa: E402
from observability.ui import common as ui  # noqa: E402
from observability.ui.warmup import warm_up  # noqa: E402

ui.enable_cookie_sessions()
ui.route_from_the_start()  # the first visit after a start runs its page once, not three times
web_auth.keep_peer_address()  # TRUSTED_PROXIES, not uvicorn's default, decides who may forward addresses

# in the background from the start: imports the pages load lazily and the store's schema check, so
# the first visitor after a start does not wait for them (bench/pages.py, browser_first_s); the
# server answers at once, and a page run that needs a module still being imported waits for it
threading.Thread(target=warm_up, name="console-warm-up", daemon=True).start()

# /api/v1: the HTTP API and its WebSocket for the tools around the console (observability.api); the
# Shortcut hands its requests to it before Streamlit's own middleware (sessions, gzip) sees them
api_mount = api.mount()
app = st.App(
    str(ROOT / "Home.py"),
    routes=[*web_auth.ROUTES, api_mount],
    middleware=[
        Middleware(api.Shortcut, api=api_mount.app),
        Middleware(web_auth.SessionGate),
        Middleware(assets.EarlyChartCode, pages=nav.chart_page_paths()),
        Middleware(assets.DirectConnection, pages=nav.page_paths()),
    ],
)
