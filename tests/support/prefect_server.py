"""Start a real Prefect server on a free loopback port with its own PREFECT_HOME (for tests).

A thin wrapper over `fleet.core.server` (the same environment `fleet server up` uses: filesystem
lease storage, 1 s slot-wait cap, analytics off, the UI off unless asked for), without the state
file: the session fixture owns the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleet.core import server as fleet_server
from fleet.core.server import free_port

__all__ = [
    "PrefectServer",
    "free_port",
    "prefect_pointed_at",
    "server_env",
    "start_prefect_server",
]


@dataclass
class PrefectServer:
    """A running server: its API URL, home directory, process and log file."""

    api_url: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def stop(self) -> None:
        """Flush this process's queued logs/events, SIGTERM the group, SIGKILL after 15 s."""
        if self.process.poll() is None:
            fleet_server.flush_prefect_clients()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def server_env(
    home: Path, port: int, database_url: str | None = None, *, ui: bool = False
) -> dict[str, str]:
    """Environment for a test server (and its clients): own home, filesystem lease storage."""
    return fleet_server.server_env(home, port, database_url, ui=ui)


def start_prefect_server(
    home: Path, *, database_url: str | None = None, ui: bool = False, timeout: float = 90.0
) -> PrefectServer:
    """Start `prefect server start` and wait until `/api/health` answers.

    `ui=True` also serves the Prefect UI (at the API URL without `/api`).

    Raises:
        fleet.core.errors.ServerError: (a RuntimeError) it exited or did not become healthy.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = server_env(home, free_port(), database_url, ui=ui)
    log_path = home / "server.log"
    proc = fleet_server.start_server_process(env, log_path)
    fleet_server.wait_healthy(env["PREFECT_API_URL"], proc, log_path, timeout)
    return PrefectServer(env["PREFECT_API_URL"], home, proc, log_path, env)


@contextlib.contextmanager
def prefect_pointed_at(server: PrefectServer) -> Iterator[PrefectServer]:
    """Point this process's Prefect settings (and `os.environ`) at `server`, then restore.

    Prefect snapshots the environment into its global settings when first imported, so setting
    `PREFECT_API_URL` alone is not enough: clients would start an ephemeral server or talk to a
    server started earlier in the same process.
    """
    updates = {"PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(server.home / "client")}
    with fleet_server.prefect_environment(updates):
        yield server
