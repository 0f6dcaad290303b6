"""Fixtures of the rollout tests: fake Pis, a Prefect server on their bridge, a lab to roll out.

Run by `ansible/tests/run.sh` (`make test-ansible`), as root: the fake Pis are systemd-nspawn
containers in network namespaces (see `fakepi.sh`). Not collected by `make test`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest
from rollout_helpers import (
    BRIDGE_IP,
    FAKEPI,
    FAKEPI_RUN,
    PI_COUNT,
    RESORTS,
    VENV_BIN,
    Lab,
    free_port,
    run,
    write_ansible_inventory,
    write_fleet_inventory,
    write_vault,
)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Two fake Pis booted, a Prefect server (basic auth) on their bridge, the fleet provisioned.

    Nothing is rolled out yet; the tests run the playbook.
    """
    if os.geteuid() != 0:
        pytest.skip("the fake Pis need root (network namespaces, overlayfs, systemd-nspawn)")
    from fleet.core.server import server_env, start_server_process, wait_healthy

    work = tmp_path_factory.mktemp("rollout")
    wheelhouse = work / "wheelhouse" / "plate-resort-fleet.tar.gz"
    result = run(["bash", str(FAKEPI), "wheelhouse", str(wheelhouse)], timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    result = run(["bash", str(FAKEPI), "up", str(PI_COUNT)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    auth_string = f"fleet:{secrets.token_urlsafe(16)}"
    port = free_port(BRIDGE_IP)
    api_url = f"http://{BRIDGE_IP}:{port}/api"
    env = server_env(work / "server-home", port, auth_string=auth_string)
    env.update({"PREFECT_SERVER_API_HOST": BRIDGE_IP, "PREFECT_API_URL": api_url})
    log = work / "server.log"
    server = start_server_process(env, log)
    try:
        wait_healthy(api_url, server, log, timeout=120)
        fleet_inventory = work / "fleet.yaml"
        write_fleet_inventory(fleet_inventory, api_url)
        ansible_inventory = work / "fleet.yml"
        write_ansible_inventory(ansible_inventory, fleet_inventory)
        vault, password = write_vault(work, auth_string)
        lab = Lab(
            work=work,
            api_url=api_url,
            auth_string=auth_string,
            fleet_inventory=fleet_inventory,
            ansible_inventory=ansible_inventory,
            vault_file=vault,
            vault_password_file=password,
            wheelhouse=wheelhouse,
            pis={name: f"10.77.0.{10 + i}" for i, name in enumerate(RESORTS, start=1)},
        )
        fleet = str(VENV_BIN / "fleet")
        result = run(
            [fleet, "provision", "--inventory", str(fleet_inventory)], env=lab.client_env()
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield lab
    finally:
        down = run(["bash", str(FAKEPI), "down"], timeout=120)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server runs in its own session
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
        if down.returncode != 0:
            print(down.stdout + down.stderr)  # noqa: T201 (teardown diagnostics)
        shutil.rmtree(FAKEPI_RUN / "ansible-tmp", ignore_errors=True)
