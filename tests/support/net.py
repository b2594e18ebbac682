"""Network helpers: a free local port, and one TCP proxy that a test can cut and restore."""

from __future__ import annotations

import socket
import threading

import sqlalchemy as sa


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`.

    `stop()` (alias `cut()`) refuses new connections and cuts the open ones, as a server or network
    outage would; `start()` (alias `restore()`) listens again on the same port, so clients configured
    with the proxy's address reconnect. `TcpProxy.for_url(url)` builds one in front of the server of
    a database or Redis URL; `proxy.url` is then that URL pointed through the proxy. Usable as a
    context manager (started on entry, stopped on exit).
    """

    def __init__(self, target_host: str, target_port: int, *, port: int = 0, url: str | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._url = url
        self._listener: socket.socket | None = None
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_url(cls, url: str, default_port: int | None = None) -> TcpProxy:
        """A proxy in front of the host and port of `url` (PostgreSQL, Redis, any SQLAlchemy-style URL)."""
        u = sa.make_url(url)
        default = default_port or {"redis": 6379, "rediss": 6379}.get(u.drivername, 5432)
        return cls(u.host or "127.0.0.1", u.port or default, url=url)

    @property
    def url(self) -> str:
        """The URL given to `for_url`, pointed at the proxy."""
        if self._url is None:
            raise ValueError("TcpProxy.url needs a proxy made with TcpProxy.for_url")
        u = sa.make_url(self._url).set(host="127.0.0.1", port=self.port)
        return u.render_as_string(hide_password=False)

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpProxy:
        if self._listener is not None:
            return self
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def stop(self) -> None:
        ls, self._listener = self._listener, None
        if ls is not None:
            _close(ls)  # shutdown wakes the thread blocked in accept()
        with self._lock:
            socks, self._socks = self._socks, set()
        for s in socks:
            _close(s)

    cut = stop
    restore = start

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not ls:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._socks.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
