"""Starting a Prefect server process: its environment, a free port, the wait until it is healthy.

The server runs with filesystem lease storage (the default in-memory storage leaks concurrency
slots for good on a restart) and a 1 s cap on the slot-wait hint (waiters are not woken when a
slot frees).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fleet.core import prefect_adapter
from fleet.core.errors import ServerError

__all__ = [
    "LEASE_STORAGE",
    "free_port",
    "ha_settings",
    "health",
    "kill_group",
    "server_env",
    "shared_state_settings",
    "start_server_process",
    "start_until_ready",
    "wait_healthy",
]

LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(
    home: Path,
    port: int,
    database_url: str | None = None,
    *,
    auth_string: str | None = None,
    ui: bool = False,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a fleet Prefect server process (and for clients in the same env).

    Own `PREFECT_HOME`, loopback only, filesystem lease storage, 1 s slot-wait cap, analytics off.
    """
    env = dict(os.environ if base_env is None else base_env)
    for key in (
        "PREFECT_API_AUTH_STRING",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PREFECT_PROFILE",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",  # quiet CLI console; the server log is wanted
    ):
        env.pop(key, None)
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        env["PREFECT_API_AUTH_STRING"] = auth_string
    return env


def ha_settings(redis_port: int, *, webserver_only: bool) -> dict[str, str]:
    """Settings of an API replica (`webserver_only`) or the services process of several servers,
    with Redis on 127.0.0.1:`redis_port` (`shared_state_settings` with its database 0)."""
    return shared_state_settings(f"redis://127.0.0.1:{redis_port}/0", webserver_only=webserver_only)


def shared_state_settings(redis_url: str, *, webserver_only: bool) -> dict[str, str]:
    """Settings of an API replica (`webserver_only`) or the services process of several servers.

    Everything shared lives in Redis (`redis_url` = ``redis://[:password@]host:port/N``; database
    N: messaging, causal ordering, leases, the worker cleanup queue; database N+1: Docket), so
    that an event posted through one replica reaches a subscriber on another and a limit holds
    across processes. The database is migrated once, before they start (`prefect server database
    upgrade`), never by each of them.
    """
    base, _, db = redis_url.rpartition("/")
    settings = {
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_EVENTS_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "prefect_redis.cleanup_queue",
        "PREFECT_REDIS_MESSAGING_URL": f"{base}/{int(db)}",
        "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_URL": f"{base}/{int(db)}",
        "PREFECT_SERVER_DOCKET_URL": f"{base}/{int(db) + 1}",
    }
    if webserver_only:
        settings[prefect_adapter.WEBSERVER_ONLY_ENV] = "1"
    return settings


def start_server_process(
    env: Mapping[str, str], log_path: Path, *, module: str = "fleet.core._server_main"
) -> subprocess.Popen[bytes]:
    """Start Prefect's server (`module`: `fleet.core._server_main`, or `_services_main` for the
    background services alone) detached, output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def start_until_ready(
    name: str,
    args: list[str],
    log_path: Path,
    ready: Callable[[], bool],
    *,
    timeout: float,
    poll: float = 0.1,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start `args` in a session of its own, output appended to `log_path`, and wait until
    `ready()`.

    Raises:
        ServerError: it exited, or was not ready within `timeout` s (then it is killed).
    """
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **popen,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise ServerError(f"{name} exited with {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            proc.kill()
            raise ServerError(f"{name} did not answer in {timeout:g} s; see {log_path}")
        time.sleep(poll)
    return proc


def health(api_url: str, timeout: float = 2.0) -> bool:
    """Whether `api_url/health` answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


def _log_tail(log_path: Path, lines: int = 5) -> str:
    try:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail if line.strip())


def wait_healthy(
    api_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 90.0
) -> None:
    """Wait until `api_url/health` answers 200.

    Raises:
        ServerError: the process exited first or the timeout passed (the process is killed).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"prefect server exited with {process.returncode}; see {log_path}: "
                f"{_log_tail(log_path)}"
            )
        if health(api_url):
            return
        time.sleep(0.3)
    kill_group(process.pid, signal.SIGKILL)
    raise ServerError(f"prefect server did not become healthy in {timeout:g} s; see {log_path}")


def kill_group(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to the process group led by `pid` (gone or foreign: nothing)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
