"""The worker's HTTP server: routes `/v1/traces`, `/metrics` and `/healthz` to their endpoints.

Served on `WORKER_HTTP_HOST:WORKER_HTTP_PORT` (default 127.0.0.1:4318, the standard OTLP/HTTP
port) by a `ThreadingHTTPServer` in a daemon thread of the worker process. This module is the only
one that speaks HTTP: the endpoints (`receiver`, `metrics`, `health`) take plain values and return a
`Response`, so replacing this server (uvicorn is planned) touches nothing else.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from observability.settings import Settings, get_settings
from observability.store import Store
from observability.worker import metrics
from observability.worker.endpoints import Endpoints
from observability.worker.receiver import MAX_BODY_BYTES
from observability.worker.response import BadRequest, Response

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "observability-worker"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, resp: Response) -> None:
        body = resp.body
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += n
                if size > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes", 413)
                chunks.append(self.rfile.read(n))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            self.close_connection = True
            raise BadRequest("invalid Content-Length") from exc
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes", 413)
        return self.rfile.read(length) if length > 0 else b""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if self._path() != "/v1/traces":
            self._send(Response(404, b"not found\n"))
            return
        try:
            body = self._read_body()
        except (BadRequest, ValueError) as exc:
            status = exc.status if isinstance(exc, BadRequest) else 400
            self._send(Response(status, f"{exc}\n".encode()))
            return
        h = self.headers
        resp = self.server.app.receiver.export(
            body, h.get("Content-Type"), h.get("Content-Encoding"), h.get("Authorization")
        )
        self._send(resp)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        app = self.server.app
        path = self._path()
        if path == "/metrics":
            self._send(
                metrics.render(app.registry, self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
            )
        elif path == "/healthz":
            self._send(app.health.response())
        elif path == "/v1/traces":
            self._send(Response(405, b"POST OTLP trace data here\n", headers={"Allow": "POST"}))
        else:
            self._send(Response(404, b"not found: /healthz, /metrics, /v1/traces\n"))

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: Endpoints


class RunningServer:
    """A server running in a daemon thread until `stop()`."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = server.server_address[:2]
        self.app = server.app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.app.close()


def serve(
    store: Store,
    settings: Settings | None = None,
    *,
    redis: Any = None,
    worker_id: str | None = None,
    consumer: Any = None,
    host: str | None = None,
    port: int | None = None,
) -> RunningServer:
    """Serve /v1/traces, /metrics and /healthz in a daemon thread (port 0: any free port)."""
    settings = settings or get_settings()
    host = settings.worker_http_host if host is None else host
    port = settings.worker_http_port if port is None else port
    server = _Server((host, port), _Handler)
    server.app = Endpoints(store, settings, redis=redis, worker_id=worker_id, consumer=consumer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="worker-http", daemon=True)  # fmt: skip
    thread.start()
    running = RunningServer(server, thread)
    log.info("worker HTTP on %s (/v1/traces, /metrics, /healthz)", running.url)
    return running


def start(worker: Any) -> RunningServer | None:
    """Serve the endpoints of a running `observability.worker.runner.Worker` on the configured port.

    When the port is taken (another worker on this host) the worker runs on without it.
    """
    try:
        return serve(worker.store, worker.settings, redis=worker.redis, worker_id=worker.worker_id,
                     consumer=worker.consumer)  # fmt: skip
    except OSError as exc:
        s = worker.settings
        log.error("cannot serve HTTP on %s:%s (%s); /healthz, /metrics and /v1/traces are off in this worker",
                  s.worker_http_host, s.worker_http_port, exc)  # fmt: skip
        return None
