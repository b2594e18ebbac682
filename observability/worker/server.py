"""The worker's HTTP server: uvicorn serving the Starlette app of `http_app` in a worker thread.

Served on `WORKER_HTTP_HOST:WORKER_HTTP_PORT` (default 127.0.0.1:4318, the standard OTLP/HTTP
port). uvicorn runs in a daemon thread with its own event loop, so the worker's main thread keeps
its tick loop and its signal handlers. The socket is bound here, before the thread starts, so a
taken port is an `OSError` the caller sees (uvicorn would exit the process instead).

Limits a public port needs: at most `WORKER_HTTP_MAX_CONNECTIONS` connections and requests at
once (uvicorn answers 503 beyond), request heads bounded by uvicorn's parser, idle keep-alive
connections closed after 5 s; body limits are the app's. uvicorn logs through the project's
logging (no configuration of its own, no access log): a dropped connection is not an error.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from observability.settings import Settings, get_settings
from observability.store import Store
from observability.worker.endpoints import Endpoints
from observability.worker.http_app import build_app
from observability.worker.ingest_token import ingest_token

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class RunningServer:
    """A uvicorn server running in a daemon thread until `stop()`."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket, app: Endpoints
    ) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.app = app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to STOP_TIMEOUT_S), close the endpoints."""
        self._server.should_exit = True
        self._thread.join(timeout=STOP_TIMEOUT_S + 2)
        self._sock.close()
        self.app.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


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
    """Serve /v1/traces, /metrics and /healthz in a daemon thread (port 0: any free port).

    The ingest token is `OTLP_INGEST_TOKEN`, else the one bootstrap kept in `OTLP_INGEST_TOKEN_FILE`.
    """
    settings = settings or get_settings()
    settings = settings.replace(otlp_ingest_token=ingest_token(settings))
    host = settings.worker_http_host if host is None else host
    port = settings.worker_http_port if port is None else port
    sock = _bind(host, port)
    endpoints = Endpoints(store, settings, redis=redis, worker_id=worker_id, consumer=consumer)
    config = uvicorn.Config(
        build_app(endpoints),
        log_config=None,  # the project's logging, not uvicorn's own handlers
        access_log=False,
        server_header=False,
        lifespan="off",
        limit_concurrency=settings.worker_http_max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=STOP_TIMEOUT_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="worker-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            endpoints.close()
            raise OSError(f"the worker's HTTP server did not start on {host}:{port}")
        time.sleep(0.01)
    running = RunningServer(server, thread, sock, endpoints)
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
