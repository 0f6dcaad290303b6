"""The fleet's Prefect server: the embedded local one (up/down/status) and which API to talk to.

Modules: `lifecycle` (`server_up`, `server_down`, `server_status`), `state` (the state directory
and the `server.json` record), `cluster` (several servers: PostgreSQL from `postgres`, Redis from
`redis_server`, API replicas, a services process, HAProxy from `balancer`; `cluster.json`),
`control_host` (the same processes on the control hosts of an inventory's `server:` block: their
environments and HAProxy's configuration, for the Ansible role `fleet_server`),
`process` (a server process's environment, start and health),
`auth` (the basic-auth string), `api` (`resolve_api`, `check_api`, `api_settings`) and
`environment` (`prefect_environment`, Prefect's environment for a block, process-wide). The server
process itself is `fleet.core._server_main`; `fleet.core.server_db` reads its database revision.
"""

from __future__ import annotations

from fleet.core.server.api import ApiTarget, api_settings, check_api, resolve_api
from fleet.core.server.auth import ENV_AUTH_FILE, read_auth_file
from fleet.core.server.cluster import ClusterInfo, ClusterProcess, cluster_status
from fleet.core.server.environment import prefect_environment
from fleet.core.server.lifecycle import (
    cluster_record,
    flush_prefect_clients,
    restart_members,
    server_down,
    server_status,
    server_up,
)
from fleet.core.server.process import (
    free_port,
    server_env,
    start_server_process,
    wait_healthy,
)
from fleet.core.server.state import (
    ENV_STATE_DIR,
    STATE_FILE,
    ServerInfo,
    server_dir,
    server_home,
    state_dir,
)

__all__ = [
    "ENV_AUTH_FILE",
    "ENV_STATE_DIR",
    "STATE_FILE",
    "ApiTarget",
    "ClusterInfo",
    "ClusterProcess",
    "ServerInfo",
    "api_settings",
    "check_api",
    "cluster_record",
    "cluster_status",
    "flush_prefect_clients",
    "free_port",
    "prefect_environment",
    "read_auth_file",
    "resolve_api",
    "restart_members",
    "server_dir",
    "server_down",
    "server_env",
    "server_home",
    "server_status",
    "server_up",
    "start_server_process",
    "state_dir",
    "wait_healthy",
]
