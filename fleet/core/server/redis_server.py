"""A Redis server of the fleet's own, under the state directory (the multi-server topology).

Redis carries the servers' event messaging, causal ordering, Docket and the concurrency leases.
It keeps an append-only file (`<directory>/appendonlydir`, fsync once a second) and no RDB
snapshots: the leases live only there, and a Redis restarted empty would forget which concurrency
slots are held (the database would keep them taken, nothing left to expire them). Loopback only,
a free port; `redis-server` from Debian's `redis-server` package.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from fleet.core.errors import ServerError
from fleet.core.server.process import start_until_ready

__all__ = ["Redis", "redis_ping", "start_redis"]


@dataclass(frozen=True)
class Redis:
    """A started Redis server: pid, port and its URL (database 0)."""

    pid: int
    port: int
    log_path: Path

    def url(self, db: int = 0) -> str:
        """`redis://127.0.0.1:PORT/db`."""
        return f"redis://127.0.0.1:{self.port}/{db}"


def redis_ping(port: int, timeout: float = 2.0) -> bool:
    """Whether Redis on 127.0.0.1:`port` answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(directory: Path, port: int, *, timeout: float = 30.0) -> Redis:
    """Start `redis-server` on 127.0.0.1:`port` with its data (AOF) in `directory`.

    Raises:
        ServerError: no `redis-server`, or it did not answer PING in `timeout`.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError("no redis-server: install the redis-server package")
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    args = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--logfile",
        "",
    ]
    proc = start_until_ready(
        "redis-server", args, log_path, lambda: redis_ping(port), timeout=timeout, cwd=directory
    )
    return Redis(proc.pid, port, log_path)
