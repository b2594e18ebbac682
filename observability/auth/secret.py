"""The console's secret key: signs session cookies and keys the sign-in throttle's digests.

`SESSION_SECRET`, else a random key created once in a 0600 file (`SESSION_SECRET_FILE`), so every
console process on the machine shares it and a restart keeps sessions valid.
"""

from __future__ import annotations

import os
import secrets

from observability.localfiles import private_dir
from observability.settings import Settings, get_settings


def secret_key(settings: Settings | None = None) -> str:
    """The cookie-signing key: SESSION_SECRET, else a random key created once in a 0600 file."""
    s = settings or get_settings()
    if s.session_secret:
        return s.session_secret
    path = s.session_secret_file
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        private_dir(path.parent)
        key = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process wrote it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
