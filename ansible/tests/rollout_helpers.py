"""Helpers of the rollout tests: paths, ansible environment, the `Lab` under test and its files."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANSIBLE_DIR = Path(__file__).resolve().parents[1]
REPO = ANSIBLE_DIR.parent
VENV_BIN = Path(os.environ.get("FLEET_VENV_BIN", REPO / ".venv" / "bin"))
FAKEPI = ANSIBLE_DIR / "tests" / "fakepi.sh"
BRIDGE_IP = "10.77.0.1"
PI_COUNT = 2
RESORTS = ("resort-a", "resort-b")
FAKEPI_RUN = Path(os.environ.get("FAKEPI_RUN", "/var/tmp/plate-resort-fakepi"))


def ansible_env(**extra: str) -> dict[str, str]:
    """Environment for ansible-* commands: this project's config, no colours, no retry files."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": str(FAKEPI_RUN / "ansible-tmp"),
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, capture text output (never raises on a non-zero exit)."""
    return subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A rolled-out-to lab: fake Pis, a Prefect server, the inventories and credentials."""

    work: Path
    api_url: str
    auth_string: str
    fleet_inventory: Path
    ansible_inventory: Path
    vault_file: Path
    vault_password_file: Path
    wheelhouse: Path
    pis: dict[str, str] = field(default_factory=dict)  # resort -> Pi address
    runs: int = 0

    def client_env(self) -> dict[str, str]:
        """Environment for `fleet`/Prefect clients talking to the lab's server."""
        env = dict(os.environ)
        env.update(
            {
                "PREFECT_API_URL": self.api_url,
                "PREFECT_API_AUTH_STRING": self.auth_string,
                "PREFECT_HOME": str(self.work / "client-home"),
                "FLEET_STATE_DIR": str(self.work / "fleet-state"),
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
        )
        return env

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the lab's Prefect API (with its basic auth); JSON answer or None."""
        data = None if body is None else json.dumps(body).encode()
        token = b64encode(self.auth_string.encode()).decode()
        req = urllib.request.Request(
            f"{self.api_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def playbook(self, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
        """`ansible-playbook site.yml` against the fake Pis with the lab's vault."""
        cmd = [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(self.ansible_inventory),
            "site.yml",
            "-e",
            f"@{self.vault_file}",
            "--vault-password-file",
            str(self.vault_password_file),
            "-e",
            f"device_agent_wheelhouse_archive={self.wheelhouse}",
            "-e",
            "device_agent_apt_update_cache=false",  # the Pis are offline
            "-e",
            '{"device_agent_poll_interval": 2}',
            *args,
        ]
        result = run(cmd, env=ansible_env(), cwd=ANSIBLE_DIR, timeout=timeout)
        self.runs += 1
        log = self.work / f"playbook-{self.runs}.log"
        log.write_text(f"$ {' '.join(cmd)}\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    def pi_exec(self, index: int, *cmd: str) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside fake Pi `index` (1-based)."""
        return run(["bash", str(FAKEPI), "exec", str(index), *cmd], timeout=60)


def write_fleet_inventory(path: Path, api_url: str) -> None:
    lines = [
        "# Rollout test fleet: two emulated resorts, each on its own fake Pi.",
        "fleet:",
        "  name: rollout",
        "  work_pool: rollout-resorts",
        f"  api_url: {api_url}",
        "defaults:",
        "  emulate: true",
        "  hotels: [A, B, C, D]",
        "  speed: 90.0",
        "  acceleration: 360.0",
        "  move_timeout: 90.0",
        "resorts:",
    ]
    for i, name in enumerate(RESORTS, start=1):
        lines += [
            f"  - name: {name}",
            f"    host: 10.77.0.{10 + i}",
            f"    serial_port: /dev/ttyUSB{i}",
        ]
    path.write_text("\n".join(lines) + "\n")


def write_ansible_inventory(path: Path, fleet_inventory: Path) -> None:
    key = FAKEPI_RUN / "id_ed25519"
    ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    path.write_text(
        "plugin: plate_resort_fleet\n"
        f"fleet_inventory: {fleet_inventory.name}\n"
        "compose:\n"
        "  ansible_user: \"'pi'\"\n"
        f"  ansible_ssh_private_key_file: \"'{key}'\"\n"
        f"  ansible_ssh_common_args: \"'{ssh_args}'\"\n"
    )


def write_vault(work: Path, auth_string: str) -> tuple[Path, Path]:
    password = work / ".vault-pass"
    password.write_text(secrets.token_urlsafe(24) + "\n")
    password.chmod(0o600)
    vault = work / "vault.yml"
    vault.write_text(f'device_agent_api_auth_string: "{auth_string}"\n')
    result = run(
        [
            str(VENV_BIN / "ansible-vault"),
            "encrypt",
            str(vault),
            "--vault-password-file",
            str(password),
        ],
        env=ansible_env(),
    )
    assert result.returncode == 0, result.stderr
    return vault, password
