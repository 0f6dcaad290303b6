"""The processes of a control host (the inventory's `server:` block): environments and HAProxy.

The Ansible role `fleet_server` runs on every control host what `fleet server up --replicas N`
runs on one machine, minus PostgreSQL and Redis (given by URL): API replicas
(`fleet.core._server_main`, webserver only, on ``api_port``, ``api_port + 1``, ...), HAProxy in
front of every replica of every control host, and, on the first host only, the background services
(`fleet.core._services_main`) and the database migration. Their environments come from the same
functions as the local topology's (`server_env`, `shared_state_settings`), so a setting added there
reaches both; the passwords are spliced into the URLs here, on the controller, from the vault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from fleet.core.inventory import ServerSettings
from fleet.core.server.balancer import haproxy_config
from fleet.core.server.process import server_env, shared_state_settings

__all__ = ["ProcessRole", "control_host_env", "control_host_haproxy", "with_password"]

ProcessRole = Literal["api", "services"]


def with_password(url: str, password: str | None) -> str:
    """`url` with `password` (URL-quoted) after its user name; unchanged when there is none."""
    if not password:
        return url
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def control_host_env(
    server: ServerSettings,
    role: ProcessRole,
    *,
    port: int,
    home: str,
    database_password: str,
    redis_password: str | None = None,
    auth_string: str | None = None,
    listen: str = "0.0.0.0",
    register_blocks: bool = True,
) -> dict[str, str]:
    """The environment of one Prefect process of a control host.

    Args:
        server: the inventory's `server:` block.
        role: `api` (one replica, on `port`) or `services` (the background services; `port` is
            the local balancer's, for its client).
        port: the replica's port, or the balancer's for `services`.
        home: the process's own `PREFECT_HOME`.
        database_password: PostgreSQL's password (from the vault).
        redis_password: Redis's password, if it has one.
        auth_string: the API's basic-auth ``user:password``, if any.
        listen: the address a replica binds.
        register_blocks: whether this replica registers the block types at start (one does:
            replicas that register at once collide on the same rows).
    """
    database_url = with_password(server.database_url, database_password)
    env = server_env(Path(home), port, database_url, auth_string=auth_string, base_env={})
    redis_url = server.redis_url
    if redis_password:
        parts = urlsplit(redis_url)
        redis_url = urlunsplit(
            parts._replace(netloc=f":{quote(redis_password, safe='')}@{parts.netloc}")
        )
    env.update(shared_state_settings(redis_url, webserver_only=role == "api"))
    if role == "api":
        env["PREFECT_SERVER_API_HOST"] = listen
    if not register_blocks:
        env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"
    return env


def control_host_haproxy(server: ServerSettings, *, bind: str = "0.0.0.0") -> str:
    """HAProxy's configuration on a control host: every replica of every control host."""
    backends = [
        (host.address or host.name, server.api_port + k)
        for host in server.hosts
        for k in range(server.replicas_of(host))
    ]
    return haproxy_config(
        server.balancer_port,
        backends,
        bind=bind,
        written_by="the Ansible role fleet_server, from the fleet inventory's server: block",
    )
