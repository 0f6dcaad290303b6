"""The embedded local server's lifecycle: `server_up`, `server_down`, `server_status`.

`fleet server up` starts Prefect's server detached, on a free loopback port, with SQLite and its
own `PREFECT_HOME` under the project state directory (`.fleet-state/server`, or
`$FLEET_STATE_DIR/server`, or `--state-dir DIR/server`), waits until `/api/health` answers and
records pid, URL and log file in `server.json` next to it. With `--replicas N` it starts the
multi-server topology of `fleet.core.server.cluster` instead, and `server.json` names its balancer;
`restart_members` starts again the members of a running topology that stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from fleet.core import prefect_adapter
from fleet.core.errors import ServerError
from fleet.core.server.auth import read_auth_file
from fleet.core.server.cluster import (
    CLUSTER_FILE,
    ClusterInfo,
    ClusterProcess,
    restart_stopped,
    start_cluster,
    stop_cluster,
)
from fleet.core.server.process import (
    free_port,
    health,
    kill_group,
    server_env,
    start_server_process,
    wait_healthy,
)
from fleet.core.server.state import (
    STATE_FILE,
    ServerInfo,
    locked,
    mask_url,
    server_dir,
    server_home,
)

__all__ = [
    "cluster_record",
    "flush_prefect_clients",
    "restart_members",
    "server_down",
    "server_status",
    "server_up",
]

logger = logging.getLogger(__name__)

LOG_FILE = "server.log"


def server_status(state: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """The recorded local server if its process runs and `/api/health` answers, else None."""
    info = ServerInfo.load(server_dir(state) / STATE_FILE)
    if info is None or not info.process_alive() or not health(info.api_url):
        return None
    return info


def cluster_record(state: str | os.PathLike[str] | None = None) -> ClusterInfo | None:
    """The recorded multi-server topology (`cluster.json`), running or not; None without one."""
    return ClusterInfo.load(server_dir(state) / CLUSTER_FILE)


def server_up(
    state: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    ui: bool = True,
    auth_file: str | os.PathLike[str] | None = None,
    database_url: str | None = None,
    replicas: int | None = None,
    timeout: float = 90.0,
) -> tuple[ServerInfo, bool]:
    """Start the local server unless it already runs.

    With `replicas`, the multi-server topology instead (`fleet.core.server.cluster`): its own
    PostgreSQL and Redis, `replicas` API processes, one services process and a load balancer,
    whose URL the returned record names.

    Args:
        state: project state directory (default: see `state_dir`).
        port: loopback port (default: a free one).
        ui: serve the Prefect UI too.
        auth_file: file (mode 0600) holding an auth string the server will require.
        database_url: PostgreSQL URL (`postgresql+asyncpg://...`) instead of SQLite.
        replicas: start this many API replicas behind a load balancer (see above).
        timeout: seconds to wait for `/api/health`.

    Returns:
        The server's record and whether this call started it (False: it was already running).

    Raises:
        ServerError: it did not start (the message names the log file), or a server of the
        other kind (single process / several replicas) already runs.
    """
    directory = server_dir(state)
    with locked(directory):
        running = server_status(state)
        cluster = ClusterInfo.load(directory / CLUSTER_FILE)
        if running is not None:
            running_replicas = cluster.replicas if cluster is not None else None
            if replicas is not None and running_replicas != replicas:
                what = f"{running_replicas} replicas" if running_replicas else "a single server"
                raise ServerError(
                    f"a Prefect server already runs here ({what}, {running.api_url}); "
                    "stop it first with `fleet server down`"
                )
            return running, False
        if cluster is not None:
            # Left over (a part died or the machine rebooted): stop what still runs.
            logger.warning("the recorded servers do not answer; stopping what is left of them")
            stop_cluster(cluster)
            (directory / CLUSTER_FILE).unlink(missing_ok=True)
        old = ServerInfo.load(directory / STATE_FILE)
        if old is not None and old.process_alive():
            # Alive but not answering: a hung server. Replace it.
            logger.warning("server pid %s does not answer; stopping it", old.pid)
            _stop(old, 10.0)
        auth_path = Path(auth_file).expanduser().resolve() if auth_file else None
        auth_string = read_auth_file(auth_path) if auth_path else None
        if replicas is not None:
            if database_url:
                raise ServerError("--database-url with --replicas: not supported (own PostgreSQL)")
            _, record = start_cluster(
                directory,
                replicas,
                port=port,
                ui=ui,
                auth_string=auth_string,
                auth_file=str(auth_path) if auth_path else None,
                timeout=timeout,
            )
            return record, True
        port = port or free_port()
        home = server_home(state)
        home.mkdir(parents=True, exist_ok=True)
        log_path = directory / LOG_FILE
        env = server_env(home, port, database_url, auth_string=auth_string, ui=ui)
        logger.info("starting prefect server on port %s (log %s)", port, log_path)
        proc = start_server_process(env, log_path)
        try:
            wait_healthy(env["PREFECT_API_URL"], proc, log_path, timeout)
        except ServerError:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
            raise
        import psutil

        info = ServerInfo(
            pid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            api_url=env["PREFECT_API_URL"],
            ui_url=f"http://127.0.0.1:{port}" if ui else None,
            port=port,
            home=str(home),
            log_path=str(log_path),
            database=mask_url(database_url) if database_url else "sqlite",
            auth_file=str(auth_path) if auth_path else None,
            started_at=time.time(),
        )
        info.save(directory / STATE_FILE)
        return info, True


def restart_members(
    state: str | os.PathLike[str] | None = None, *, timeout: float = 90.0
) -> list[ClusterProcess]:
    """Start again the stopped members (Redis, API replicas, services) of the running
    multi-server topology, each on its recorded port (`cluster.restart_stopped`).

    Returns:
        The processes started: none when every member runs or no topology is recorded.

    Raises:
        ServerError: PostgreSQL or the balancer has stopped, or a member did not start.
    """
    directory = server_dir(state)
    with locked(directory):
        cluster = ClusterInfo.load(directory / CLUSTER_FILE)
        record = ServerInfo.load(directory / STATE_FILE)
        if cluster is None or record is None:
            return []
        return restart_stopped(directory, cluster, record, timeout=timeout)[1]


def _stop(info: ServerInfo, timeout: float) -> None:
    import psutil

    if not info.process_alive():
        return
    kill_group(info.pid, signal.SIGTERM)
    try:
        psutil.Process(info.pid).wait(timeout)
    except psutil.TimeoutExpired:
        kill_group(info.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            psutil.Process(info.pid).wait(5)
    except psutil.Error:
        pass


def flush_prefect_clients(timeout: float = 10.0) -> None:
    """Send this process's queued Prefect logs and events now, while the server still answers.

    Call before stopping a server this process talked to (flows run in-process ship their logs
    in the background): otherwise the interpreter's exit waits on those sends, each retried
    against the dead server for about a minute ("Error logging to API").
    """
    import sys

    if "prefect" not in sys.modules:
        return
    prefect_adapter.drain_queued_logs_and_events(timeout)


def server_down(
    state: str | os.PathLike[str] | None = None, *, timeout: float = 15.0
) -> ServerInfo | None:
    """Stop the recorded local server (SIGTERM to its group, SIGKILL after `timeout`).

    Queued logs and events of this process are flushed to it first.

    The multi-server topology is stopped as a whole, clients of a process first.

    Returns:
        The record of the server that was stopped, or None when none was running.
    """
    flush_prefect_clients()
    directory = server_dir(state)
    with locked(directory):
        info = ServerInfo.load(directory / STATE_FILE)
        cluster = ClusterInfo.load(directory / CLUSTER_FILE)
        if cluster is not None:
            alive = any(p.alive() for p in cluster.processes)
            stop_cluster(cluster, timeout=timeout)
            (directory / CLUSTER_FILE).unlink(missing_ok=True)
            (directory / STATE_FILE).unlink(missing_ok=True)
            return info if alive else None
        if info is None:
            return None
        alive = info.process_alive()
        _stop(info, timeout)
        (directory / STATE_FILE).unlink(missing_ok=True)
        return info if alive else None
