"""Start a real Prefect server on a free loopback port with its own PREFECT_HOME (for tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PrefectServer", "free_port", "start_prefect_server"]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrefectServer:
    """A running server: its API URL, home directory, process and log file."""

    api_url: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def server_env(home: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    """Environment for a test server (and its clients): own home, filesystem lease storage."""
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
                "prefect.server.concurrency.lease_storage.filesystem"
            ),
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


def start_prefect_server(
    home: Path, *, database_url: str | None = None, timeout: float = 90.0
) -> PrefectServer:
    """Start `prefect server start` and wait until `/api/health` answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(home, port, database_url)
    log_path = home / "server.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    api_url = env["PREFECT_API_URL"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return PrefectServer(api_url, home, proc, log_path, env)
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"prefect server did not become healthy in {timeout} s; see {log_path}")
