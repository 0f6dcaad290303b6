"""A control host's process environments and HAProxy config (`fleet.core.server.control_host`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.core.inventory import parse_inventory
from fleet.core.server.control_host import control_host_env, control_host_haproxy, with_password
from fleet.core.server.process import ha_settings
from tests.fleet.inventory_cases import BASE, SERVER


def _server(extra: str = ""):  # type: ignore[no-untyped-def]
    server = parse_inventory(BASE + SERVER.replace("6379/0", "6379/4") + extra, "x.yaml").server
    assert server is not None
    return server


def test_a_replica_serves_without_services_with_every_shared_state_in_redis() -> None:
    env = control_host_env(
        _server(), "api", port=4202, home="/var/lib/fleet-server/api-2",
        database_password="p@ss/word", register_blocks=False,
    )  # fmt: skip
    assert env["PREFECT__SERVER_WEBSERVER_ONLY"] == "1"
    assert env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] == "false"
    assert env["PREFECT_SERVER_API_HOST"] == "0.0.0.0"
    assert env["PREFECT_SERVER_API_PORT"] == "4202"
    assert env["PREFECT_HOME"] == "/var/lib/fleet-server/api-2"
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://prefect:p%40ss%2Fword@db.lab:5432/prefect"
    )
    # Database N of the inventory's Redis carries messaging, leases, ordering; N+1 Docket.
    assert env["PREFECT_REDIS_MESSAGING_URL"] == "redis://redis.lab:6379/4"
    assert env["PREFECT_SERVER_DOCKET_URL"] == "redis://redis.lab:6379/5"
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    # The same shared-state settings as `fleet server up --replicas N` on one machine.
    local = ha_settings(6379, webserver_only=True)
    assert {k for k in local} <= set(env)
    assert "PREFECT_API_AUTH_STRING" not in env


def test_the_services_process_runs_services_and_gets_the_passwords() -> None:
    env = control_host_env(
        _server(), "services", port=4200, home="/h", database_password="pw",
        redis_password="r:pw", auth_string="fleet:secret",
    )  # fmt: skip
    assert "PREFECT__SERVER_WEBSERVER_ONLY" not in env
    assert "PREFECT_SERVER_REGISTER_BLOCKS_ON_START" not in env
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert env["PREFECT_REDIS_MESSAGING_URL"] == "redis://:r%3Apw@redis.lab:6379/4"
    assert env["PREFECT_SERVER_DOCKET_URL"] == "redis://:r%3Apw@redis.lab:6379/5"
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == "fleet:secret"


def test_with_password_leaves_a_url_without_one_alone() -> None:
    assert with_password("postgresql+asyncpg://u@h:1/d", "") == "postgresql+asyncpg://u@h:1/d"
    assert with_password("postgresql+asyncpg://u@h:1/d", "x") == "postgresql+asyncpg://u:x@h:1/d"


def test_haproxy_on_a_control_host_balances_every_replica_of_every_host(tmp_path: Path) -> None:
    text = control_host_haproxy(_server())
    assert "bind 0.0.0.0:4200" in text
    servers = [line.split()[2] for line in text.splitlines() if line.strip().startswith("server")]
    # ctl-1 at its address with the default 2 replicas, ctl-2 by name with 3.
    assert servers == [
        "10.0.0.5:4201", "10.0.0.5:4202", "ctl-2:4201", "ctl-2:4202", "ctl-2:4203",
    ]  # fmt: skip
    assert "timeout tunnel 1h" in text
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    checked = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
