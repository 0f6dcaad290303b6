"""Helpers for agent tests: a one-file inventory, provisioning, agent subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AgentProcess",
    "control",
    "provision_minimal",
    "start_agent",
    "wait_for",
    "write_inventory",
]

_REPO = Path(__file__).resolve().parents[2]
_DEVICE_AGENT = Path(sys.executable).with_name("device-agent")


def write_inventory(
    directory: Path, api_url: str, resorts: list[str], *, fleet: str = "t", speed: float = 90.0
) -> Path:
    """An inventory with emulated resorts (links `tty-<name>` beside the file)."""
    lines = [
        "fleet:",
        f"  name: {fleet}",
        f"  work_pool: {fleet}-resorts",
        f"  api_url: {api_url}",
        "defaults:",
        "  emulate: true",
        "  hotels: [A, B, C, D]",
        f"  speed: {speed}",
        "  acceleration: 0",
        "  move_timeout: 60",
        "resorts:",
    ]
    for name in resorts:
        lines += [f"  - name: {name}", "    host: 127.0.0.1", f"    serial_port: tty-{name}"]
    path = directory / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def provision_minimal(inv: Any) -> None:
    """Provision `inv` with `fleet provision` (pool, queues, locks, deployments; idempotent)."""
    from fleet.core.provision import provision

    provision(inv)


@dataclass
class AgentProcess:
    """A `device-agent run` subprocess."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    link: Path

    def output(self) -> str:
        """What the agent logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (the emulator child survives: it has its own session)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_agent(
    inventory: Path, device: str, log_path: Path, extra_env: dict[str, str] | None = None
) -> AgentProcess:
    """Start `device-agent run --inventory ... --device ...` in its own process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [str(_DEVICE_AGENT), "run", "--inventory", str(inventory), "--device", device],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=str(_REPO),
    )
    return AgentProcess(proc, log_path, inventory.parent / f"tty-{device}")


def control(link: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request to the emulator serving `link` (stats, faults)."""
    from device_agent.emulator.pty_server import control_request

    return control_request(link, request, timeout=timeout)


def emulator_writes(log_path: Path) -> list[dict[str, Any]]:
    """The emulator's write log (JSON lines)."""
    if not log_path.exists():
        return []
    return [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    """Poll `predicate` until it returns a truthy value; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}: {last!r}")
