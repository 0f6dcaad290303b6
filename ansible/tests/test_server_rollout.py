"""The control-host role (`fleet_server`) on a fake host: check mode, a real run, idempotence.

One fake control host (fake Pi 3, 10.77.0.13: systemd as PID 1, offline) runs what the fleet
inventory's `server:` block says: two API replicas, the services process and HAProxy, against a
real PostgreSQL and Redis started on the controller (`fleet.core.server`) and relayed onto the
bridge. The play is site.yml's, limited to `fleet_servers`. Order matters: a `--check --diff` on
the fresh host, the first run (everything healthy through the balancer, with the vault's basic
auth), a second run with changed=0, then a change of the balancer's port that restarts the
services process and reloads HAProxy but leaves the replicas running.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from rollout_helpers import (
    ANSIBLE_DIR,
    BRIDGE_IP,
    FAKEPI,
    FAKEPI_RUN,
    VENV_BIN,
    ansible_env,
    run,
    write_ansible_inventory,
)
from server_helpers import TcpForward

pytestmark = [pytest.mark.ansible, pytest.mark.timeout(900)]

HOST_INDEX = 3  # fake Pi 3 is the control host (Pis 1 and 2 carry the agents' rollout)
HOST = f"10.77.0.{10 + HOST_INDEX}"
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


@dataclass
class ServerLab:
    """The fake control host, its database and Redis, the inventories and the vault."""

    work: Path
    fleet_inventory: Path
    ansible_inventory: Path
    vault_file: Path
    vault_password_file: Path
    wheelhouse: Path
    db_password: str
    auth_string: str
    database_port: int
    redis_port: int
    runs: int = 0

    def write_fleet_inventory(self, balancer_port: int) -> None:
        self.fleet_inventory.write_text(
            "# Control-host rollout test: one fake control host, two replicas.\n"
            "fleet:\n"
            "  name: serverroll\n"
            "  work_pool: serverroll-resorts\n"
            f"  api_url: http://{HOST}:{balancer_port}/api\n"
            "resorts:\n"
            "  - name: resort-s\n"
            "    host: 10.77.0.11\n"
            "    emulate: true\n"
            "    hotels: [A, B]\n"
            "    serial_port: tty-s\n"
            "server:\n"
            "  hosts:\n"
            "    - name: fake-control-1\n"
            f"      address: {HOST}\n"
            "  replicas: 2\n"
            f"  database_url: postgresql+asyncpg://fleet@{BRIDGE_IP}:{self.database_port}/prefect\n"
            f"  redis_url: redis://{BRIDGE_IP}:{self.redis_port}/0\n"
            f"  balancer_port: {balancer_port}\n"
            "  api_port: 4201\n"
        )

    def playbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(self.ansible_inventory),
            "site.yml",
            "--limit",
            "fleet_servers",
            "-e",
            f"@{self.vault_file}",
            "--vault-password-file",
            str(self.vault_password_file),
            "-e",
            f"fleet_server_wheelhouse_archive={self.wheelhouse}",
            "-e",
            "fleet_server_apt_update_cache=false",  # the fake hosts are offline
            "-e",
            '{"fleet_server_poll_interval": 1}',
            *args,
        ]
        result = run(cmd, env=ansible_env(), cwd=ANSIBLE_DIR, timeout=600)
        self.runs += 1
        log = self.work / f"server-playbook-{self.runs}.log"
        log.write_text(f"$ {' '.join(cmd)}\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    def host_exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return run(["bash", str(FAKEPI), "exec", str(HOST_INDEX), *cmd], timeout=60)

    def api(self, port: int, path: str, *, auth: bool = True) -> int:
        """Status of GET http://HOST:port/api`path` (with the vault's basic auth)."""
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + b64encode(self.auth_string.encode()).decode()
        req = urllib.request.Request(f"http://{HOST}:{port}/api{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def main_pids(self, *units: str) -> dict[str, str]:
        out = self.host_exec("systemctl", "show", "-p", "Id,MainPID", *units).stdout
        blocks = [dict(line.split("=", 1) for line in b.splitlines()) for b in out.split("\n\n")]
        return {b["Id"]: b["MainPID"] for b in blocks if "Id" in b}


def recap(output: str) -> dict[str, dict[str, int]]:
    return {
        host: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for host, ok, ch, un, fa in RECAP.findall(output)
    }


# Session scope, like `lab`: torn down at the end of the session (its `fakepi.sh down` powers off
# every fake host), never between the agents' tests.
@pytest.fixture(scope="session")
def server_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerLab]:
    """The fake control host booted, PostgreSQL and Redis reachable on the bridge, a vault."""
    if os.geteuid() != 0:
        pytest.skip("the fake hosts need root (network namespaces, overlayfs, systemd-nspawn)")
    from fleet.core.server.postgres import start_postgres
    from fleet.core.server.process import free_port, kill_group
    from fleet.core.server.redis_server import start_redis

    work = tmp_path_factory.mktemp("server-rollout")
    wheelhouse = work / "wheelhouse" / "plate-resort-fleet.tar.gz"
    result = run(["bash", str(FAKEPI), "wheelhouse", str(wheelhouse)], timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    # Boots Pi 3 (and Pis 1-2 when the agents' rollout has not already).
    result = run(["bash", str(FAKEPI), "up", str(HOST_INDEX)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    # PostgreSQL runs as `postgres`, which cannot enter pytest's 0700 temporary directories.
    data = FAKEPI_RUN / "server-db"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    postgres = start_postgres(data / "postgres")
    redis = start_redis(work / "redis", free_port())
    forwards = [TcpForward(BRIDGE_IP, postgres.port), TcpForward(BRIDGE_IP, redis.port)]
    try:
        db_password = urlsplit(postgres.url).password or ""
        auth_string = f"fleet:{secrets.token_urlsafe(16)}"
        password_file = work / ".vault-pass"
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
        vault = work / "vault.yml"
        vault.write_text(
            f'vault_fleet_db_password: "{db_password}"\n'
            f'fleet_server_api_auth_string: "{auth_string}"\n'
        )
        encrypted = run(
            [str(VENV_BIN / "ansible-vault"), "encrypt", str(vault), "--vault-password-file",
             str(password_file)],
            env=ansible_env(),
        )  # fmt: skip
        assert encrypted.returncode == 0, encrypted.stderr
        lab = ServerLab(
            work=work,
            fleet_inventory=work / "fleet.yaml",
            ansible_inventory=work / "fleet.yml",
            vault_file=vault,
            vault_password_file=password_file,
            wheelhouse=wheelhouse,
            db_password=db_password,
            auth_string=auth_string,
            database_port=forwards[0].port,
            redis_port=forwards[1].port,
        )
        lab.write_fleet_inventory(balancer_port=4200)
        write_ansible_inventory(lab.ansible_inventory, lab.fleet_inventory)
        yield lab
    finally:
        down = run(["bash", str(FAKEPI), "down"], timeout=120)
        for forward in forwards:
            forward.close()
        kill_group(redis.pid, signal.SIGTERM)
        os.kill(postgres.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        with contextlib.suppress(psutil.Error):
            psutil.Process(postgres.pid).wait(30)
        shutil.rmtree(data, ignore_errors=True)
        if down.returncode != 0:
            print(down.stdout + down.stderr)  # noqa: T201 (teardown diagnostics)
        shutil.rmtree(FAKEPI_RUN / "ansible-tmp", ignore_errors=True)


UNITS = ("fleet-server-api@1", "fleet-server-api@2", "fleet-server-services", "haproxy")


def test_check_mode_on_a_fresh_control_host(server_lab: ServerLab) -> None:
    result = server_lab.playbook("--check", "--diff")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    hosts = recap(result.stdout)
    assert set(hosts) == {"fake-control-1"}, out[-3000:]
    assert hosts["fake-control-1"]["failed"] == 0
    assert hosts["fake-control-1"]["changed"] > 0  # it would install and configure
    # Nothing was installed or started.
    assert server_lab.host_exec("test", "-e", "/etc/fleet-server").returncode != 0
    assert server_lab.db_password not in out
    assert server_lab.auth_string.split(":", 1)[1] not in out


def test_first_run_serves_the_api_through_the_balancer(server_lab: ServerLab) -> None:
    result = server_lab.playbook()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert recap(result.stdout)["fake-control-1"]["failed"] == 0
    assert server_lab.db_password not in out
    assert server_lab.auth_string.split(":", 1)[1] not in out
    state = server_lab.host_exec("systemctl", "is-active", *UNITS)
    assert state.stdout.split() == ["active"] * len(UNITS), state.stdout + state.stderr
    # The balancer answers with the vault's credentials (and refuses without them); /api/ready
    # reaches PostgreSQL.
    assert server_lab.api(4200, "/ready") == 200
    assert server_lab.api(4200, "/flows/filter", auth=False) == 401
    # The replicas run without background services; the migration ran once, on this host.
    api_env = server_lab.host_exec("cat", "/etc/fleet-server/api-2.env").stdout
    assert 'PREFECT__SERVER_WEBSERVER_ONLY="1"' in api_env
    assert 'PREFECT_SERVER_REGISTER_BLOCKS_ON_START="false"' in api_env
    assert 'PREFECT_SERVER_EVENTS_MESSAGING_BROKER="prefect_redis.messaging"' in api_env
    services_env = server_lab.host_exec("cat", "/etc/fleet-server/services.env").stdout
    assert "PREFECT__SERVER_WEBSERVER_ONLY" not in services_env
    modes = server_lab.host_exec(
        "stat", "-c", "%a %U", "/etc/fleet-server/api-1.env", "/etc/fleet-server/services.env"
    )
    assert modes.stdout.split("\n")[:2] == ["600 root", "600 root"], modes.stdout
    marker = server_lab.host_exec("ls", "/var/lib/fleet-server/migrate")
    assert marker.stdout.split() == ["done-prefect-3.9.1"], marker.stdout
    for unit in ("fleet-server-api@.service", "fleet-server-services.service"):
        verify = server_lab.host_exec("systemd-analyze", "verify", f"/etc/systemd/system/{unit}")
        assert verify.returncode == 0, verify.stderr
    versions = server_lab.host_exec(
        "/opt/fleet-server/venv-0.1.0/bin/python",
        "-c",
        "from importlib.metadata import version as v; print(v('prefect'), v('prefect-redis'))",
    )
    assert versions.stdout.split() == ["3.9.1", "0.3.0"], versions.stdout + versions.stderr


def test_second_run_changes_nothing(server_lab: ServerLab) -> None:
    result = server_lab.playbook()
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    host = recap(result.stdout)["fake-control-1"]
    assert host["changed"] == 0 and host["failed"] == 0, result.stdout[-6000:]


def test_a_new_balancer_port_restarts_only_what_changed(server_lab: ServerLab) -> None:
    before = server_lab.main_pids(*UNITS)
    server_lab.write_fleet_inventory(balancer_port=4210)
    result = server_lab.playbook()
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    after = server_lab.main_pids(*UNITS)
    # HAProxy's config and the services process's environment (its client's URL) changed; the
    # replicas' environments did not: they keep running.
    assert after["fleet-server-api@1.service"] == before["fleet-server-api@1.service"]
    assert after["fleet-server-api@2.service"] == before["fleet-server-api@2.service"]
    assert after["fleet-server-services.service"] != before["fleet-server-services.service"]
    assert "RUNNING HANDLER [fleet_server : Reload HAProxy]" in result.stdout
    assert server_lab.api(4210, "/ready") == 200
