"""What a worker endpoint answers, independent of the HTTP server that sends it.

The endpoints (`receiver`, `metrics`, `health`) return a `Response` or raise `BadRequest`; only
`http_app.py` (Starlette, served by uvicorn in `server.py`) speaks HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    """The request as a whole cannot be processed; `status` says how to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status
