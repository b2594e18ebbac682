"""The FastAPI app served under `/api/v1` by the console's ASGI app (`app.py`, `st.App` routes).

Errors are mapped once, here, so every endpoint answers the same way: a refused role 403, bad input
422, an unknown conversation or alert 404, a state that does not allow the action 409, a missing
typed confirmation 400, a service-side rate limit 429 with Retry-After. Every message is the
service's own, which is written to be safe to show.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from observability.alerting import AlertNotFound, ConditionStillHolds, InvalidTransition, SilenceNotFound
from observability.api import inbound, ws
from observability.api.context import make_context
from observability.api.deps import require
from observability.api.docs_page import docs_page
from observability.api.models import ERRORS, Whoami
from observability.api.routes import alerts, emergency, intervention, monitoring
from observability.auth.api_tokens import Principal
from observability.auth.roles import PermissionDenied
from observability.control import ConfirmationRequired, ControlConflict, ConversationNotFound, RateLimited
from observability.settings import Settings, get_settings
from observability.store import Store

PREFIX = "/api/v1"
DESCRIPTION = """The bot operations console's API (source document 004): live metrics, the activity feed,
intervention, alerts and emergency controls, and live push over WebSocket (`/api/v1/ws`).

Authenticate with a per-user API token (`Authorization: Bearer <token>`), created in Admin → API tokens
or with `python -m observability.users token create`. A token acts as its user, within its scope."""


# service exceptions -> HTTP status, answered with the service's own message (the most specific class wins)
ERROR_STATUS: dict[type[Exception], int] = {
    PermissionDenied: 403, ConversationNotFound: 404, AlertNotFound: 404, SilenceNotFound: 404, ControlConflict: 409,
    InvalidTransition: 409, ConditionStillHolds: 409, ConfirmationRequired: 400, RateLimited: 429, ValueError: 422,
}  # fmt: skip


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


# a service's name for an input -> the request's (the silence form's field is in minutes, as the API's)
API_FIELDS = {"duration_min": "duration_minutes"}


def _invalid(request: Request, exc: ValueError) -> JSONResponse:
    """A 422 in the shape of FastAPI's own (`loc`, `msg`, `type`), for what a service found wrong
    after the body's shape passed: per field where the service names them (`errors`), else where
    the input came from. Never the input itself."""
    where = "query" if request.method in ("GET", "HEAD") else "body"
    errors = getattr(exc, "errors", None)
    if isinstance(errors, Mapping) and errors:
        detail = [{"loc": [where, API_FIELDS.get(k, k)], "msg": str(v), "type": "value_error"}
                  for k, v in errors.items()]  # fmt: skip
    else:
        detail = [{"loc": [where], "msg": str(exc), "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


def _mapped(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The handler answering an exception with `status` and its message (429: with Retry-After;
    422: per field, as FastAPI's own)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        if status == 422 and isinstance(exc, ValueError):
            return _invalid(request, exc)
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))}
        return _error(status, str(exc), headers)

    return handler


MAX_BODY_BYTES = 1_000_000  # the largest request body (an operator's reply is at most 64 kB)


class BodyLimit:
    """ASGI middleware: a request body over MAX_BODY_BYTES is answered 413 before it is read whole
    (a 20 MB body was read, parsed and echoed back in its 422): by its Content-Length, or, sent
    chunked, by reading it here up to the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse({"detail": f"the request body is larger than {self.limit:,} bytes"}, 413)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await too_big(scope, receive, send)
            return
        if length is not None or scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read it here, up to the limit, then hand it on whole
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await too_big(scope, receive, send)
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with where and what, never the input itself: errors echoed whole bodies (20 MB) and
    values sent (an extra field's secret) back."""
    errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API app; `settings`/`store` default to the process's (tests pass their own)."""
    app = FastAPI(title="Bot operations console API", version="1", description=DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")  # fmt: skip
    # Swagger UI at a pinned version with integrity hashes, not FastAPI's floating CDN default
    app.add_route("/docs", lambda request: docs_page(f"{request.scope.get('root_path', '')}/openapi.json",
                                                     app.title), include_in_schema=False)  # fmt: skip
    app.state.ctx = make_context(settings or get_settings(), store)
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)  # a page of the feed: ~5x smaller
    app.add_middleware(BodyLimit)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for router in (monitoring.router, intervention.router, alerts.router, emergency.router, inbound.router):
        app.include_router(router)
    app.include_router(ws.router)

    @app.get("/auth/whoami", response_model=Whoami, tags=["auth"], summary="Who this token acts for",
             responses={k: v for k, v in ERRORS.items() if k in (401, 403, 429)})  # fmt: skip
    async def whoami(p: Annotated[Principal, Depends(require("dashboards.view"))]) -> dict:
        return {"user": p.user, "role": p.role, "scope": p.scope}

    for exc_type, status in ERROR_STATUS.items():
        app.add_exception_handler(exc_type, _mapped(status))
    return app


class Shortcut:
    """ASGI middleware for `st.App`: requests and WebSockets under `/api/v1` go straight to the API app
    (as the `Mount` would route them), past Streamlit's own middleware: its cookie session, its
    static-path checks and its gzip at level 9 serve the pages, and cost an API call more than
    its own work. Every other path goes on to Streamlit unchanged."""

    def __init__(self, app: ASGIApp, api: ASGIApp) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and (path == PREFIX or path.startswith(PREFIX + "/")):
            root = scope.get("root_path", "")
            scope = {**scope, "app_root_path": scope.get("app_root_path", root), "root_path": root + PREFIX}
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def mount(settings: Settings | None = None) -> Mount:
    """The `/api/v1` route for `st.App(routes=[...])`."""
    mount = Mount(PREFIX, app=create_app(settings))
    # Starlette's `{path:path}` is `.*`, which stops at a newline: a path parameter holding an encoded
    # control character (`%0A`) would miss the mount and get Streamlit's plain-text 404. Match every
    # /api/v1 path here, so the API answers it with its own JSON error.
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount
