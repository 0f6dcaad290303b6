"""Several Prefect servers on one machine: `cluster_up`, `cluster_down`, `cluster_status`.

`fleet server up --replicas N` starts, under `<state>/server`: PostgreSQL (`postgres/`), Redis
(`redis/`), the database migration (once, `prefect server database upgrade`), N API replicas
without background services (`api-K/`), one process of background services (`services/`) and
HAProxy in front of the replicas (`balancer/`). Every process leads its own process group; their
pids, ports and logs are recorded in `cluster.json`, and `server.json` names the balancer, so
every client (`resolve_api`, agents, `fleet server status`) talks to the balancer's URL as it
would to a single server. Down stops them in the reverse order (clients of a process first).
`restart_stopped` starts again, each on its recorded port, the members of a running topology that
stopped (Redis, an API replica, the services process), leaving the others and every client alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from fleet.core.errors import ServerError
from fleet.core.server.auth import read_auth_file
from fleet.core.server.balancer import start_balancer
from fleet.core.server.postgres import database_url, postgres_ready, start_postgres
from fleet.core.server.process import (
    free_port,
    ha_settings,
    health,
    kill_group,
    server_env,
    start_server_process,
    wait_healthy,
)
from fleet.core.server.redis_server import redis_ping, start_redis
from fleet.core.server.state import (
    STATE_FILE,
    ServerInfo,
    mask_url,
    same_process_alive,
    write_json,
)

__all__ = [
    "CLUSTER_FILE",
    "ClusterInfo",
    "ClusterProcess",
    "Role",
    "cluster_status",
    "process_health",
    "restart_stopped",
    "start_cluster",
    "stop_cluster",
]

logger = logging.getLogger(__name__)

CLUSTER_FILE = "cluster.json"
Role = Literal["api", "services", "balancer", "postgres", "redis"]
Health = Literal["healthy", "unhealthy", "stopped"]

#: the order to stop in: clients of a process before it
STOP_ORDER: tuple[Role, ...] = ("balancer", "api", "services", "redis", "postgres")
#: the members `restart_stopped` starts again, in this order (what the others need first)
RESTARTABLE: tuple[Role, ...] = ("redis", "api", "services")


@dataclass(frozen=True)
class ClusterProcess:
    """One process of the topology.

    Attributes:
        role: `api`, `services`, `balancer`, `postgres` or `redis`.
        name: unique within the topology (`api-1`, `api-2`, `services`, ...).
        pid: the process (leader of its own process group).
        create_time: its start time (psutil), to recognise a reused pid.
        port: the loopback port it serves on (None for `services`).
        log_path: where its output goes.
    """

    role: Role
    name: str
    pid: int
    create_time: float
    port: int | None
    log_path: str

    def alive(self) -> bool:
        """True when the recorded process runs and is the same process (not a reused pid)."""
        return same_process_alive(self.pid, self.create_time)


@dataclass(frozen=True)
class ClusterInfo:
    """What `cluster.json` records: the replicas, the balancer's API URL, every process."""

    replicas: int
    api_url: str
    database: str
    processes: tuple[ClusterProcess, ...]
    started_at: float

    @classmethod
    def load(cls, path: Path) -> ClusterInfo | None:
        """Read a `cluster.json`; None when missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            procs = tuple(ClusterProcess(**p) for p in data["processes"])
            return cls(
                int(data["replicas"]),
                str(data["api_url"]),
                str(data["database"]),
                procs,
                float(data["started_at"]),
            )
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename)."""
        write_json(path, asdict(self))


def process_health(proc: ClusterProcess, api_url: str) -> Health:
    """`stopped` (gone), `unhealthy` (runs, does not answer) or `healthy`.

    API replicas and the balancer answer `/api/health`, PostgreSQL `pg_isready`, Redis PING; the
    services process serves nothing, so running is its health.
    """
    if not proc.alive():
        return "stopped"
    checks: dict[Role, Callable[[], bool]] = {
        "api": lambda: health(f"http://127.0.0.1:{proc.port}/api"),
        "balancer": lambda: health(api_url),
        "postgres": lambda: postgres_ready(int(proc.port or 0)),
        "redis": lambda: redis_ping(int(proc.port or 0)),
        "services": lambda: True,
    }
    return "healthy" if checks[proc.role]() else "unhealthy"


def cluster_status(info: ClusterInfo) -> list[dict[str, Any]]:
    """Every recorded process with its role, name, pid, port, health and log."""
    return [
        {
            "role": p.role,
            "name": p.name,
            "pid": p.pid,
            "port": p.port,
            "health": process_health(p, info.api_url),
            "log": p.log_path,
        }
        for p in info.processes
    ]


def _record(role: Role, name: str, pid: int, port: int | None, log: Path) -> ClusterProcess:
    import psutil

    return ClusterProcess(role, name, pid, psutil.Process(pid).create_time(), port, str(log))


def _signal(proc: ClusterProcess, sig: signal.Signals) -> None:
    if proc.role == "postgres" and sig != signal.SIGKILL:
        # To the postmaster alone: it shuts its children down itself.
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    else:
        kill_group(proc.pid, sig)


def _wait_stopped(procs: list[ClusterProcess], timeout: float) -> list[ClusterProcess]:
    """Wait until none of `procs` runs (a zombie counts as stopped: our processes are not
    children of the caller, and their reaper may take its time); return those still running."""
    deadline = time.monotonic() + timeout
    running = [p for p in procs if p.alive()]
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [p for p in running if p.alive()]
    return running


def stop_cluster(info: ClusterInfo, *, timeout: float = 15.0) -> None:
    """Stop every process of `info`, clients first (balancer, replicas and services, Redis,
    PostgreSQL): SIGTERM (PostgreSQL: SIGINT), SIGKILL to whatever still runs after `timeout`."""
    for role in STOP_ORDER:
        procs = [p for p in info.processes if p.role == role and p.alive()]
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        for proc in _wait_stopped(procs, timeout):
            logger.warning(
                "%s (pid %s) did not stop in %s s; killing it", proc.name, proc.pid, timeout
            )
            _signal(proc, signal.SIGKILL)
            _wait_stopped([proc], 5.0)


@dataclass(frozen=True)
class _Members:
    """What every API replica and the services process of one topology are started with."""

    directory: Path
    database_url: str
    redis_port: int
    auth_string: str | None
    ui: bool

    def env(
        self, name: str, port: int, *, replica: bool = False, register_blocks: bool = True
    ) -> dict[str, str]:
        """The environment of member `name` (`api-K` on `port`, or `services`, whose `port` is
        the balancer's, which its own clients use)."""
        # A home per process: the UI's build directory and block-registration memo are
        # written there at start-up, and the replicas start at once.
        home = self.directory / name / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = server_env(home, port, self.database_url, auth_string=self.auth_string, ui=self.ui)
        env.update(ha_settings(self.redis_port, webserver_only=replica))
        if not register_blocks:
            env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"
        return env


def _migrate(env: dict[str, str], log_path: Path, timeout: float) -> None:
    """Bring the database to Prefect's schema once, before any server process starts."""
    with log_path.open("ab") as log:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(
                f"database migration took over {timeout:g} s; see {log_path}"
            ) from exc
    if done.returncode != 0:
        raise ServerError(f"database migration failed ({done.returncode}); see {log_path}")


def start_cluster(
    directory: Path,
    replicas: int,
    *,
    port: int | None = None,
    ui: bool = False,
    auth_string: str | None = None,
    auth_file: str | None = None,
    timeout: float = 90.0,
) -> tuple[ClusterInfo, ServerInfo]:
    """Start the whole topology under `directory` (`<state>/server`); the caller holds its lock.

    Returns:
        The topology's record and the `server.json` record naming the balancer (both saved).

    Raises:
        ServerError: a part did not start (everything started is stopped again; the message
        names the log to read).
    """
    if replicas < 1:
        raise ServerError(f"--replicas {replicas}: must be at least 1")
    started: list[ClusterProcess] = []
    try:
        postgres = start_postgres(directory / "postgres")
        started.append(
            _record("postgres", "postgres", postgres.pid, postgres.port, postgres.log_path)
        )
        redis = start_redis(directory / "redis", free_port())
        started.append(_record("redis", "redis", redis.pid, redis.port, redis.log_path))

        lb_port = port or free_port()
        api_url = f"http://127.0.0.1:{lb_port}/api"
        members = _Members(directory, postgres.url, redis.port, auth_string, ui)
        services_env = members.env("services", lb_port)
        services_dir = directory / "services"
        services_dir.mkdir(parents=True, exist_ok=True)
        _migrate(services_env, services_dir / "migrate.log", max(timeout, 120.0))

        waiting: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        api_ports = [free_port() for _ in range(replicas)]
        for i, api_port in enumerate(api_ports, start=1):
            log = directory / f"api-{i}" / "server.log"
            # Block types are registered by api-1 alone: replicas that register at once
            # collide on the same rows, and the loser's start-up fails.
            env = members.env(f"api-{i}", api_port, replica=True, register_blocks=i == 1)
            proc = start_server_process(env, log)
            started.append(_record("api", f"api-{i}", proc.pid, api_port, log))
            waiting.append((f"http://127.0.0.1:{api_port}/api", proc, log))
        services_log = services_dir / "services.log"
        services = start_server_process(
            services_env, services_log, module="fleet.core._services_main"
        )
        started.append(_record("services", "services", services.pid, None, services_log))
        for url, proc, log in waiting:
            wait_healthy(url, proc, log, timeout)
        if services.poll() is not None:
            raise ServerError(f"the services process exited; see {services_log}")

        balancer, lb_log = start_balancer(directory / "balancer", lb_port, api_ports)
        started.append(_record("balancer", "balancer", balancer.pid, lb_port, lb_log))
        wait_healthy(api_url, balancer, lb_log, timeout)
    except BaseException:
        stop_cluster(ClusterInfo(replicas, "", "", tuple(started), 0.0), timeout=10.0)
        raise

    now = time.time()
    info = ClusterInfo(replicas, api_url, mask_url(postgres.url), tuple(started), now)
    info.save(directory / CLUSTER_FILE)
    record = ServerInfo(
        pid=balancer.pid,
        create_time=started[-1].create_time,
        api_url=api_url,
        ui_url=f"http://127.0.0.1:{lb_port}" if ui else None,
        port=lb_port,
        home=str(directory / "services" / "home"),
        log_path=str(lb_log),
        database=info.database,
        auth_file=auth_file,
        started_at=now,
    )
    record.save(directory / STATE_FILE)
    return info, record


def restart_stopped(
    directory: Path, info: ClusterInfo, record: ServerInfo, *, timeout: float = 90.0
) -> tuple[ClusterInfo, list[ClusterProcess]]:
    """Start again the members of a running topology that no longer run, each as it was.

    Redis comes back on its port with its append-only file, an API replica on its port (the
    balancer's health check takes it back within a second), the services process as before;
    `cluster.json` is saved after each. Clients, agents and the other members carry on: nothing
    else is restarted. The caller holds the state directory's lock.

    Returns:
        The updated record and the processes started (none when every member runs).

    Raises:
        ServerError: PostgreSQL or the balancer has stopped (every replica would need a new
        address: `fleet server down`, then `up`), or a member did not start (names its log).
    """
    stopped = [p for p in info.processes if not p.alive()]
    lost = [p.name for p in stopped if p.role not in RESTARTABLE]
    if lost:
        raise ServerError(
            f"{', '.join(lost)} stopped: restart the servers with `fleet server down` and "
            f"`fleet server up --replicas {info.replicas}`"
        )
    if not stopped:
        return info, []
    role = {p.role: p for p in info.processes}
    members = _Members(
        directory,
        database_url(directory / "postgres", int(role["postgres"].port or 0)),
        int(role["redis"].port or 0),
        read_auth_file(record.auth_file) if record.auth_file else None,
        record.ui_url is not None,
    )
    restarted: list[ClusterProcess] = []
    for proc in sorted(stopped, key=lambda p: RESTARTABLE.index(p.role)):
        port, log = int(proc.port or 0), Path(proc.log_path)
        if proc.role == "redis":
            pid = start_redis(directory / "redis", port).pid
        elif proc.role == "api":
            env = members.env(proc.name, port, replica=True, register_blocks=False)
            server = start_server_process(env, log)
            wait_healthy(f"http://127.0.0.1:{port}/api", server, log, timeout)
            pid = server.pid
        else:
            env = members.env(proc.name, int(role["balancer"].port or 0))
            pid = start_server_process(env, log, module="fleet.core._services_main").pid
        new = _record(proc.role, proc.name, pid, proc.port, log)
        restarted.append(new)
        info = replace(
            info, processes=tuple(new if p.name == new.name else p for p in info.processes)
        )
        info.save(directory / CLUSTER_FILE)
    return info, restarted
