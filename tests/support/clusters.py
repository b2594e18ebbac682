"""Private servers for the "beyond one machine" tests and benchmarks, made from the system binaries
in a temporary directory on free 127.0.0.1 ports and removed afterwards:

- `pg_primary_and_standby()`: a PostgreSQL primary (initdb) and a hot standby of it made with
  `pg_basebackup -R`, streaming;
- `redis_cluster(masters=3)`: a Redis Cluster of `masters` nodes (`redis-server --cluster-enabled
  yes`, `redis-cli --cluster create`), no replicas, no persistence.

Each is a context manager: everything it started is stopped (by its own process id) and its
directory deleted on exit, also when the body fails. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support.net import free_port

START_TIMEOUT_S = 30.0


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the `postgres` OS user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], timeout: float = START_TIMEOUT_S) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


@dataclass(frozen=True)
class PgPair:
    primary_url: str
    standby_url: str
    primary_port: int
    standby_port: int


def _pg_start(data: Path, port: int, sockets: Path) -> None:
    opts = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB "
        "-c max_connections=40 -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on "
        "-c wal_receiver_status_interval=1s"
    )
    _run(
        _as_postgres(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(data) + ".log",
                "-w",
                "-t",
                "30",
                "start",
            ]
        )
    )


def _pg_stop(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        with contextlib.suppress(Exception):
            _run(
                _as_postgres(
                    [_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "20", "stop"]
                )
            )


@contextlib.contextmanager
def pg_primary_and_standby() -> Iterator[PgPair]:
    """A primary and a streaming hot standby of it; URLs use psycopg 3 and the `postgres` user."""
    root = Path(tempfile.mkdtemp(prefix="obs-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    primary, standby = root / "primary", root / "standby"
    p1, p2 = free_port(), free_port()
    started: list[Path] = []
    try:
        _run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8"]
            )
        )
        with open(primary / "pg_hba.conf", "a") as fh:
            fh.write("host replication postgres 127.0.0.1/32 trust\n")
        _pg_start(primary, p1, root)
        started.append(primary)
        _run(
            _as_postgres(
                [_pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(p1), "-U", "postgres", "-D", str(standby),
                 "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]
            )
        )  # fmt: skip
        _pg_start(standby, p2, root)
        started.append(standby)
        url = "postgresql+psycopg://postgres@127.0.0.1:{}/postgres"
        yield PgPair(url.format(p1), url.format(p2), p1, p2)
    finally:
        for data in reversed(started):
            _pg_stop(data)
        shutil.rmtree(root, ignore_errors=True)


# ---- Redis Cluster ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisClusterInfo:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """REDIS_URL of one node: a cluster client discovers the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid port and free too."""
    for _ in range(1000):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _cluster_ok(port: int) -> bool:
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout
    return "cluster_state:ok" in out


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[RedisClusterInfo]:
    """A Redis Cluster of `masters` masters on free ports, no persistence; stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="obs-redis-cluster-", dir="/tmp"))
    ports = tuple(_cluster_port() for _ in range(masters))
    procs: list[subprocess.Popen] = []
    try:
        for port in ports:
            d = root / str(port)
            d.mkdir()
            procs.append(
                subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", str(d / "nodes.conf"), "--dir", str(d), "--save", "", "--appendonly",
                     "no", "--daemonize", "no", "--cluster-node-timeout", "5000"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in ports:
            while (
                subprocess.run(
                    ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                != "PONG"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start")
                time.sleep(0.05)
        _run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"])
        while not all(_cluster_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield RedisClusterInfo(ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
