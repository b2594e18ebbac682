"""A local spool: batches that could not be delivered wait on disk and are replayed later.

One file per batch (`<time_ns>-<pid>-<random>.json`), written to a temporary name and renamed, so a
reader never sees half a file. A replayer claims a file by renaming it, so two processes sharing the
directory never replay the same file at once (and ids make a double replay harmless anyway).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from observability.localfiles import open_private, private_dir

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def _ensure(self) -> None:
        private_dir(self.dir)

    def spill(self, batch: list) -> Path:
        self._ensure()
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}.json"
        tmp = self.dir / (name + ".tmp")
        with os.fdopen(open_private(tmp), "w") as fh:  # 0600: spooled text is personal data
            json.dump(batch, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        final = self.dir / name
        os.replace(tmp, final)
        return final

    def pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return []

    def has_pending(self) -> bool:
        """True while a batch is on disk, waiting or claimed by a replay still sending it.

        A claimed file counts: between a flush's look at what is in flight and its look here, a
        replay may claim (rename) the last file, which is then not delivered yet."""
        try:
            with os.scandir(self.dir) as it:
                return any(e.name.endswith(".json") or ".json.claim-" in e.name for e in it)
        except FileNotFoundError:
            return False

    def replay(self, send: Callable[[list], None], limit: int | None = None) -> int:
        """Send spooled batches oldest first; stops at the first failure (which it re-raises).

        Returns the number of events replayed.
        """
        replayed = 0
        for i, path in enumerate(self.pending()):
            if limit is not None and i >= limit:
                break
            claimed = path.with_name(path.name + f".claim-{os.getpid()}")
            try:
                os.replace(path, claimed)
            except FileNotFoundError:
                continue  # another process took it
            try:
                batch = json.loads(claimed.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.error("unreadable spool file %s moved aside: %s", claimed, exc)
                os.replace(claimed, claimed.with_name(path.name + ".bad"))
                continue
            try:
                send(batch)
            except BaseException:
                os.replace(claimed, path)
                raise
            claimed.unlink(missing_ok=True)
            replayed += len(batch)
        return replayed

    def recover_claims(self) -> None:
        """Files claimed by a process that has died mid-replay go back to the queue."""
        try:
            entries = list(self.dir.iterdir())
        except FileNotFoundError:
            return
        for p in entries:
            if ".json.claim-" not in p.name:
                continue
            pid = int(p.name.rsplit("-", 1)[1])
            try:
                os.kill(pid, 0)
                continue  # alive: still replaying
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                os.replace(p, p.with_name(p.name.split(".claim-")[0]))
            except FileNotFoundError:
                pass
