"""The OTLP ingest token: `OTLP_INGEST_TOKEN`, else the one bootstrap kept in a 0600 file.

Without a token any local process (or a web page on another local origin, through the browser)
could write rows through `/v1/traces`. So bootstrap creates one when none is configured, in
`OTLP_INGEST_TOKEN_FILE` (default `data/local/otlp_ingest.token`, 0600 in a 0700 directory), and
the worker reads it from there; bots and collectors send it as
`OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <token>"`.
"""

from __future__ import annotations

import os
import secrets

from observability.localfiles import private_dir
from observability.settings import Settings


def ingest_token(settings: Settings) -> str | None:
    """The token the receiver requires: the setting, else the kept file's, else None (open)."""
    if settings.otlp_ingest_token:
        return settings.otlp_ingest_token
    try:
        return settings.otlp_ingest_token_file.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_ingest_token(settings: Settings) -> tuple[str, bool]:
    """The ingest token, created in the 0600 file when there is none yet; (token, created)."""
    existing = ingest_token(settings)
    if existing:
        return existing, False
    path = settings.otlp_ingest_token_file
    private_dir(path.parent)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first (an empty file is not a token)
        kept = path.read_text().strip()
        if kept:
            return kept, False
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token, True
