"""The load balancer in front of the API replicas: HAProxy, loopback, websockets passed through.

HAProxy in HTTP mode forwards a websocket upgrade as it is and then tunnels the connection
(`timeout tunnel`): Prefect's `/events/in`, `/events/out` and `/logs/out` need that (a proxy that
drops the upgrade makes `/events/in` answer 403). Each replica is checked on `/api/health` every
second and taken out after two failures; requests are spread round-robin. A replica whose host
name does not resolve when HAProxy starts starts as down instead of failing the start
(`init-addr`). HAProxy runs in the foreground (`-db`), leading its own process group; SIGTERM stops
it at once (a soft stop would wait for every websocket to close). `haproxy` from Debian's `haproxy`
package. `haproxy_config` also writes the control hosts' configuration
(`fleet.core.server.control_host`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from fleet.core.errors import ServerError

__all__ = ["CONFIG_FILE", "haproxy_config", "start_balancer"]

CONFIG_FILE = "haproxy.cfg"


def haproxy_config(
    port: int,
    backends: Sequence[int | tuple[str, int]],
    *,
    bind: str = "127.0.0.1",
    written_by: str = "`fleet server up --replicas N`; rewritten on every start",
) -> str:
    """HAProxy's configuration: listen on `bind`:`port`, spread over the `backends` (ports on
    127.0.0.1, or (host, port) pairs)."""
    servers = "\n".join(
        f"    server api-{i} {host}:{p} check inter 1s fall 2 rise 1"
        for i, (host, p) in enumerate(
            ((("127.0.0.1", b) if isinstance(b, int) else b) for b in backends), start=1
        )
    )
    return f"""\
# Written by {written_by}.
global
    maxconn 4096

defaults
    mode http
    option http-server-close
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
    timeout http-keep-alive 10s
    retries 2
    option redispatch

frontend prefect_api
    bind {bind}:{port}
    default_backend prefect_replicas

backend prefect_replicas
    balance roundrobin
    option httpchk GET /api/health
    http-check expect status 200
    default-server init-addr last,libc,none
{servers}
"""


def start_balancer(
    directory: Path, port: int, backends: Sequence[int]
) -> tuple[subprocess.Popen[bytes], Path]:
    """Write the configuration and start HAProxy in the foreground, output to `haproxy.log`.

    Returns:
        The process and its log file (the caller waits for health through it).

    Raises:
        ServerError: no `haproxy`, or the configuration does not check.
    """
    binary = shutil.which("haproxy")
    if binary is None:
        raise ServerError("no haproxy: install the haproxy package")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / CONFIG_FILE
    config.write_text(haproxy_config(port, backends))
    checked = subprocess.run(
        [binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        raise ServerError(f"haproxy refused {config}: {checked.stderr.strip()}")
    log_path = directory / "haproxy.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, log_path
