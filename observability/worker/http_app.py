"""The worker's HTTP app (Starlette): routes `/v1/traces`, `/metrics` and `/healthz` to the endpoints.

The port is reachable by anything on the host (and beyond, with `WORKER_HTTP_HOST=0.0.0.0`), so
the app does the checks that cost nothing before those that cost something: the bearer token is
checked before a byte of the body is read (401), a declared `Content-Length` over the limit is
refused before reading (413), the body is then streamed and reading stops at the limit whatever
the transfer encoding (413, chunked included; decompression is bounded by the receiver), a body
that takes longer than `BODY_TIMEOUT_S` gets 408, and a client that goes away mid-body is
forgotten quietly (no traceback). Error answers to a request whose body was not read ask the
client to close the connection, so the server never reads on to drain it. JSON nested deeper than
the decoder can follow is a 400 like any other undecodable body. The endpoints do blocking store
I/O, so they run in Starlette's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response as HTTPResponse
from starlette.routing import Route

from observability.worker import metrics
from observability.worker.endpoints import Endpoints
from observability.worker.receiver import MAX_BODY_BYTES
from observability.worker.response import Response

BODY_TIMEOUT_S = 30.0  # longest time a client may take to send one body
TRACE_TYPES = ("application/x-protobuf", "application/protobuf", "application/json")


def _send(resp: Response, *, close: bool = False) -> HTTPResponse:
    headers = dict(resp.headers)
    if close:  # the body was not read: do not read on to drain it, end the connection
        headers["Connection"] = "close"
    return HTTPResponse(resp.body, resp.status, headers=headers, media_type=resp.content_type)


def _plain(status: int, text: str, *, close: bool = False) -> HTTPResponse:
    return _send(Response(status, f"{text}\n".encode()), close=close)


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` bytes (the rest is never read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def traces(request: Request) -> HTTPResponse:
    endpoints: Endpoints = request.app.state.endpoints
    receiver = endpoints.receiver
    h = request.headers
    ctype, encoding, authorization = h.get("content-type"), h.get("content-encoding"), h.get("authorization")
    if not receiver.authorized(authorization):  # before the body: an anonymous client sends nothing
        return _send(receiver.export(b"", ctype, None, authorization), close=True)
    if (ctype or "").split(";")[0].strip().lower() not in TRACE_TYPES:
        return _send(receiver.export(b"", ctype, None, authorization), close=True)  # the receiver's 415
    declared = h.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return _plain(400, "invalid Content-Length", close=True)
        if int(declared) > MAX_BODY_BYTES:
            return _plain(413, f"body exceeds {MAX_BODY_BYTES} bytes", close=True)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            body = await _read_bounded(request, MAX_BODY_BYTES)
    except TimeoutError:
        return _plain(408, f"body not received within {BODY_TIMEOUT_S:g} s", close=True)
    except ClientDisconnect:  # the client went away: nobody to answer, nothing to log
        return HTTPResponse(status_code=499)
    if body is None:
        return _plain(413, f"body exceeds {MAX_BODY_BYTES} bytes", close=True)
    try:
        resp = await run_in_threadpool(receiver.export, body, ctype, encoding, authorization)
    except RecursionError:  # JSON nested deeper than the decoder follows: undecodable, like garbage
        return _plain(400, "body is nested too deeply to decode")
    return _send(resp)


async def traces_other(request: Request) -> HTTPResponse:
    return _send(Response(405, b"POST OTLP trace data here\n", headers={"Allow": "POST"}))


async def metrics_page(request: Request) -> HTTPResponse:
    endpoints: Endpoints = request.app.state.endpoints
    h = request.headers
    resp = await run_in_threadpool(
        metrics.render, endpoints.registry, h.get("accept"), h.get("accept-encoding")
    )
    return _send(resp)


async def healthz(request: Request) -> HTTPResponse:
    endpoints: Endpoints = request.app.state.endpoints
    return _send(await run_in_threadpool(endpoints.health.response))


async def not_found(request: Request, exc: Exception) -> HTTPResponse:
    if isinstance(exc, HTTPException) and exc.status_code != 404:
        return _plain(exc.status_code, str(exc.detail))
    return _plain(404, "not found: /healthz, /metrics, /v1/traces")


def build_app(endpoints: Endpoints) -> Any:
    """The ASGI app serving one worker's endpoints."""
    app = Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            # Langfuse's SDK exports to its own path: a team switches by changing LANGFUSE_BASE_URL only
            Route("/api/public/otel/v1/traces", traces, methods=["POST"]),
            Route("/v1/traces", traces_other, methods=["GET", "PUT", "DELETE", "PATCH"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.endpoints = endpoints
    return app
