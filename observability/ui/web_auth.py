"""The console's own sign-in and sign-out routes and session middleware (Starlette, for `app.py`).

    GET  /auth/sign-in?next=/page   the sign-in form (CSRF token in a hidden field and a cookie)
    POST /auth/sign-in              check the password (`auth.authenticate`, throttled by address),
                                    open a session, set the signed HttpOnly SameSite=Lax cookie
                                    (Secure over https), redirect to `next`
    GET  /auth/sign-out             a one-button form (a link cannot sign anyone out: CSRF)
    POST /auth/sign-out             revoke the session, drop the cookie (and Streamlit's SSO identity)
    GET  /auth/sso?next=/page       single sign-on (OIDC_ENABLED): keep `next`, open the `sso` page,
                                    whose run calls `st.login` (Streamlit's /auth/login, the
                                    provider, /oauth2callback, then back to `/`)
    GET  /auth/oidc/complete        the page run that saw `st.user` sends the browser here with a
                                    ticket (`auth.oidc`); opens the same console session as a password

`SessionGate` sends a browser that asks for a console page without a live session to the sign-in
form, with the page kept in `next` and the reason (expired, revoked) on the form. Streamlit's own
paths (`/_stcore`, `/static`, `/media`, `/component`) pass through: the page run itself resolves
the cookie again (`ui.common.current_user`), so a revoked session stops a tab already open.
With single sign-on on, `/sso` and a page load that carries Streamlit's identity cookie also pass:
that page run finishes the sign-on. No Streamlit import here.

The client address (throttle, audit) is the peer's, or the `X-Forwarded-For` hop named by
`auth.client_ip` when the peer is one of `TRUSTED_PROXIES`.
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
import sys
from functools import lru_cache
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from observability import auth
from observability.auth import oidc, sessions
from observability.auth.client_ip import client_address
from observability.auth.users import PASSWORD_OFF
from observability.settings import get_settings
from observability.store import Store
from observability.ui import assets

log = logging.getLogger(__name__)

SIGN_IN_PATH = "/auth/sign-in"
SIGN_OUT_PATH = "/auth/sign-out"
SSO_PATH = "/auth/sso"
SSO_COMPLETE_PATH = "/auth/oidc/complete"
SSO_PAGE = "/sso"  # the console page whose run calls st.login (Home.py)
SSO_NEXT_COOKIE = "obs_sso_next"
IDENTITY_COOKIES = (oidc.IDENTITY_COOKIE, "_streamlit_user_tokens")  # Streamlit's st.login cookies
GATE_HEADER = "x-obs-session-gate"
PASS_THROUGH = ("/_stcore", "/static", "/media", "/component", "/auth/", "/favicon", "/app/static",
                "/oauth2callback", "/api/")  # fmt: skip


@lru_cache(maxsize=4)
def _store_for(url: str) -> Store:
    store = Store.from_url(url)
    store.ensure_migrated()
    return store


def store() -> Store:
    return _store_for(get_settings().database_url)


def safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`): an open redirect is refused."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def client(request: Request) -> str:
    """The client's address for the throttle and the audit trail (see `auth.client_ip`)."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"))


def keep_peer_address() -> bool:
    """Stop the uvicorn server that is loading app.py from rewriting the client address.

    `streamlit run app.py` serves on uvicorn, whose proxy-headers middleware replaces the peer with
    the `X-Forwarded-For` entry whenever the peer is in `FORWARDED_ALLOW_IPS` (127.0.0.1 by
    default): any client on the console's machine could then name its own address and dodge the
    sign-in throttle. Which peer is a proxy is the console's decision (`TRUSTED_PROXIES`, see
    `client`). Uvicorn reads its setting before it imports app.py and wraps the app right after,
    so app.py turns it off on the loading `uvicorn.Config` (found on the import's call stack).
    Returns False when app.py is not being loaded by uvicorn (tests, other servers)."""
    frame = sys._getframe(1)
    while frame is not None:
        cfg = frame.f_locals.get("self")
        if type(cfg).__name__ == "Config" and type(cfg).__module__ == "uvicorn.config":
            cfg.proxy_headers = False
            return True
        frame = frame.f_back
    return False


def sso_on() -> bool:
    return get_settings().oidc_enabled


def password_on() -> bool:
    s = get_settings()
    return s.password_sign_in or not s.oidc_enabled


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _page(title: str, body: str, status: int = 200, head: str = "") -> HTMLResponse:
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">{head}
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.5rem;box-sizing:border-box}}
button{{margin-top:1rem;padding:.5rem 1.2rem}}.msg{{background:#fde8e8;padding:.6rem;border-radius:4px}}
.note{{background:#eef4fd;padding:.6rem;border-radius:4px}}</style></head>
<body><h1>Bot operations console</h1>{body}</body></html>"""
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _with_csrf(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(
        sessions.CSRF_COOKIE_NAME, sessions.sign(token, salt="csrf"), httponly=True, samesite="strict",
        secure=_secure(request), path="/auth",
    )  # fmt: skip
    return response


def _csrf_ok(request: Request, form_token: object) -> bool:
    expected = sessions.unsign(request.cookies.get(sessions.CSRF_COOKIE_NAME), salt="csrf")
    return bool(expected) and isinstance(form_token, str) and hmac.compare_digest(expected, form_token)


def _sign_in_form(request: Request, *, message: str | None = None, note: str | None = None,
                  status: int = 200, name: str = "") -> Response:  # fmt: skip
    token = secrets.token_urlsafe(24)
    nxt = safe_next(request.query_params.get("next") or None)
    parts = []
    if note:
        parts.append(f'<p class="note" role="status">{html.escape(note)}</p>')
    if message:
        parts.append(f'<p class="msg" role="alert">Sign-in failed: {html.escape(message)}.</p>')
    if sso_on():
        href = html.escape(f"{SSO_PATH}?{urlencode({'next': nxt})}")
        parts.append(
            f'<p><a id="sso" href="{href}"><button type="button">Sign in with single sign-on</button></a></p>'
        )
    if not password_on():
        return _with_csrf(_page("Sign in", "\n".join(parts), status), request, token)
    parts.append(f"""<form method="post" action="{SIGN_IN_PATH}?{html.escape(urlencode({"next": nxt}))}">
<input type="hidden" name="csrf" value="{token}">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required value="{html.escape(name)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>""")
    # the browser fetches the console's own files while the user types: the page after sign-in
    # then loads from its cache (observability.ui.assets)
    return _with_csrf(
        _page("Sign in", "\n".join(parts), status, head=assets.prefetch_links()), request, token
    )


async def sign_in(request: Request) -> Response:
    if request.method == "GET":
        return _sign_in_form(request, note=request.query_params.get("reason"))
    if not password_on():
        return _sign_in_form(request, message=PASSWORD_OFF, status=403)
    form = await request.form()
    if not _csrf_ok(request, form.get("csrf")):
        return _sign_in_form(request, message="the form had expired; please try again", status=403)
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    address = client(request)
    try:
        user = await run_in_threadpool(auth.authenticate, store(), name.strip(), password, client=address)
    except auth.AuthError as exc:
        return _sign_in_form(request, message=str(exc), status=401, name=name[:100])
    return await _open_session(request, user, address, safe_next(request.query_params.get("next")))


async def _open_session(request: Request, user: auth.User, address: str, nxt: str) -> Response:
    """Start a console session and set its cookie (password and single sign-on alike)."""
    token = await run_in_threadpool(sessions.start, store(), user, client=address)
    s = get_settings()
    response = RedirectResponse(nxt, status_code=303)
    response.set_cookie(
        sessions.COOKIE_NAME, sessions.sign(token), max_age=int(s.session_lifetime_s), httponly=True,
        samesite="lax", secure=_secure(request), path="/",
    )  # fmt: skip
    response.delete_cookie(sessions.CSRF_COOKIE_NAME, path="/auth")
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def sso_start(request: Request) -> Response:
    """Keep the page asked for (a cookie: the provider's round trip loses the query) and open the
    console's `sso` page, whose run calls `st.login`."""
    if not sso_on():
        return _sign_in_form(request, message="single sign-on is not configured", status=404)
    response = RedirectResponse(SSO_PAGE, status_code=303)
    response.set_cookie(
        SSO_NEXT_COOKIE, safe_next(request.query_params.get("next")), max_age=600, httponly=True,
        samesite="lax", secure=_secure(request), path="/auth",
    )  # fmt: skip
    return response


async def sso_complete(request: Request) -> Response:
    """Redeem the ticket of a page run that saw `st.user`: the console session starts here."""
    identity = request.cookies.get(oidc.IDENTITY_COOKIE)
    name = oidc.redeem_ticket(request.query_params.get("ticket"), identity) if sso_on() else None
    user = await run_in_threadpool(auth.get_user, store(), name) if name else None
    if user is None or user.disabled:
        log.info("single sign-on not completed: no valid ticket for this browser")
        response = _sign_in_form(
            request, message="single sign-on did not complete; please try again", status=401
        )
        _drop_identity(response, request)
        return response
    nxt = safe_next(request.cookies.get(SSO_NEXT_COOKIE))
    response = await _open_session(request, user, client(request), nxt)
    response.delete_cookie(SSO_NEXT_COOKIE, path="/auth")
    return response


def _drop_identity(response: Response, request: Request) -> None:
    """Delete Streamlit's st.login identity cookies (and their chunks): signing out of the console
    must not sign the browser straight back in through single sign-on."""
    for name in request.cookies:
        if any(
            name == c or (name.startswith(c + "_") and name[len(c) + 1 :].isdigit()) for c in IDENTITY_COOKIES
        ):
            response.delete_cookie(name, path="/")


async def sign_out(request: Request) -> Response:
    if request.method == "GET":
        token = secrets.token_urlsafe(24)
        body = f"""<form method="post" action="{SIGN_OUT_PATH}">
<input type="hidden" name="csrf" value="{token}"><p>Sign out of the console in every tab?</p>
<button type="submit">Sign out</button></form>"""
        return _with_csrf(_page("Sign out", body), request, token)
    form = await request.form()
    if not _csrf_ok(request, form.get("csrf")):
        return _page("Sign out", '<p class="msg">The form had expired; please try again.</p>', 403)
    token = sessions.unsign(request.cookies.get(sessions.COOKIE_NAME))
    await run_in_threadpool(sessions.end, store(), token)
    response = RedirectResponse(f"{SIGN_IN_PATH}?{urlencode({'reason': 'You signed out.'})}", 303)
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    _drop_identity(response, request)
    response.delete_cookie(sessions.CSRF_COOKIE_NAME, path="/auth")
    return response


ROUTES = [
    Route(SIGN_IN_PATH, sign_in, methods=["GET", "POST"]),
    Route(SIGN_OUT_PATH, sign_out, methods=["GET", "POST"]),
    Route(SSO_PATH, sso_start, methods=["GET"]),
    Route(SSO_COMPLETE_PATH, sso_complete, methods=["GET"]),
]


class SessionGate:
    """ASGI middleware: a page request without a live session goes to the sign-in form."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # page runs see it in st.context.headers: cookie sessions
            scope = {**scope, "headers": [*scope.get("headers", []), (GATE_HEADER.encode(), b"1")]}
        if scope["type"] != "http" or scope.get("method") != "GET" or get_settings().auth_mode == "none":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        if (
            any(path.startswith(p) for p in PASS_THROUGH)
            or "/_stcore/" in path  # the frontend probes `<page>/_stcore/health` to find the base path
            or "." in path.rsplit("/", 1)[-1]
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if sso_on() and (path == SSO_PAGE or oidc.IDENTITY_COOKIE in request.cookies):
            await self.app(scope, receive, send)  # the page run finishes single sign-on
            return
        token = sessions.unsign(request.cookies.get(sessions.COOKIE_NAME))
        resolved = await run_in_threadpool(sessions.resolve, store(), token)
        if resolved.user is not None:
            await self.app(scope, receive, send)
            return
        nxt = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
        query = {"next": safe_next(nxt)}
        if resolved.reason:
            query["reason"] = resolved.reason[0].upper() + resolved.reason[1:] + "."
        response = RedirectResponse(f"{SIGN_IN_PATH}?{urlencode(query)}", status_code=303)
        if token:
            response.delete_cookie(sessions.COOKIE_NAME, path="/")
        await response(scope, receive, send)
