"""Files this project keeps on the local disk (the SQLite store, the SDK spool, lock and secret
files) are private to the user running it: files 0600, directories created 0700.

They hold message text, account names and tokens, so another account on the same machine must not
read them (a default umask would make them 0644 / 0755). Directories the project creates are 0700,
parents included; a directory that exists already is left as the user made it. A file that exists
with wider permissions (an older version's store) is narrowed to 0600.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path` as a directory, creating it and any missing parents with mode 0700."""
    p = Path(path)
    missing = []
    for q in (p, *p.parents):
        if q.exists():
            break
        missing.append(q)
    for q in reversed(missing):
        try:
            os.mkdir(q, DIR_MODE)
        except FileExistsError:  # another process made it first
            pass
    return p


def open_private(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """`os.open` of a file that is created 0600 (its directory 0700) and narrowed to 0600 if wider."""
    private_dir(Path(path).parent)
    fd = os.open(path, flags, FILE_MODE)
    _narrow(lambda: os.fstat(fd).st_mode, lambda: os.fchmod(fd, FILE_MODE))
    return fd


def _narrow(mode: Callable[[], int], chmod: Callable[[], None]) -> None:
    """Narrow a file found wider than 0600; a file that is not ours to change is left as it is."""
    with contextlib.suppress(OSError):
        if mode() & 0o077:
            chmod()


def ensure_private_file(path: str | os.PathLike[str]) -> Path:
    """Create `path` empty with mode 0600 if missing (so a program that later opens it, such as
    SQLite, keeps that mode), or narrow an existing one to 0600.

    A file that exists is never opened, only stat-ed and chmod-ed by its path: SQLite holds POSIX
    (fcntl) locks on its database, and closing any descriptor of a file drops every such lock the
    process holds on it. Opening and closing the store's file for each new Store (the console opens
    three) let the worker believe nobody else had it open, checkpoint and reset the WAL under the
    console's feet, and corrupt the embedded store ("database disk image is malformed")."""
    p = Path(path)
    private_dir(p.parent)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _narrow(lambda: os.stat(p).st_mode, lambda: os.chmod(p, FILE_MODE))
        return p
    os.close(fd)  # just made: no connection can hold a lock on it
    return p
