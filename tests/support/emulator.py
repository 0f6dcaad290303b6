"""Start the XM430 emulator on a pty in its own process, for tests (`start_emulator`).

The emulator runs as ``python -m device_agent.emulator`` (same as ``device-agent emulate``, without
importing Prefect), publishes a symlink at `link` and answers JSON lines on ``link + ".ctl"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_agent.emulator.pty_server import control_request

__all__ = ["EmulatorProcess", "control", "start_emulator", "write_log"]

_REPO = Path(__file__).resolve().parents[2]


def control(link: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One control request to the emulator serving `link` (stats, faults); its answer."""
    return control_request(link, request, timeout=timeout)


def write_log(path: Path) -> list[dict[str, Any]]:
    """An emulator's JSON-lines write log (`t`, `motor_id`, `addr`, `name`, `value`, `moving`),
    oldest first; empty before the first write."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@dataclass
class EmulatorProcess:
    """A running emulator process.

    Attributes:
        link: the symlink the SDK opens (``/dev/pts/N`` behind it).
        log_path: its JSON-lines write log.
        proc: the process.
        output_path: its stdout/stderr.
    """

    link: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    output_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        """The emulator's process id."""
        return self.proc.pid

    def request(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one control request; return the answer."""
        return control(self.link, request, timeout)

    def fault(self, kind: str) -> None:
        """Inject `kind` (overload, overheat, voltage, shock, encoder, stall, jam, power-cycle,
        mute, unmute, corrupt, late, unplug, replug, clear).

        Raises:
            RuntimeError: the emulator refused the request.
        """
        answer = self.request({"fault": kind})
        if not answer.get("ok"):
            raise RuntimeError(f"emulator refused fault {kind!r}: {answer.get('error')}")

    def stats(self) -> dict[str, Any]:
        """opens, packets, position, position_deg, moving, torque, hardware_error, faults, baud,
        host_baud, plugged, pts, writes (count), operating_mode, profile_velocity,
        profile_acceleration, goal_current, present_current, bus_watchdog, led, last_profile ..."""
        return self.request({"stats": True})

    def writes(self) -> list[dict[str, Any]]:
        """Every logged write so far, oldest first (`write_log`)."""
        return write_log(self.log_path)

    def output(self) -> str:
        """What the process printed so far."""
        try:
            return self.output_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; return the exit code. Idempotent."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


def start_emulator(
    link: Path,
    *,
    motor_id: int = 1,
    baud: int = 57600,
    instant: bool = False,
    log: Path | None = None,
    timeout: float = 15.0,
) -> EmulatorProcess:
    """Spawn an emulator serving `link`; return once the link exists and the socket answers.

    Args:
        link: symlink path to publish (its directory must exist).
        motor_id: servo ID.
        baud: the servo's baud rate (a host at another rate gets no reply).
        instant: moves complete at once.
        log: write-log path (default ``<link>.writes.jsonl``).
        timeout: how long to wait for start-up.

    Raises:
        RuntimeError: the process exited or did not come up in time (its output is included).
    """
    link = Path(link)
    log_path = Path(log) if log is not None else link.with_name(link.name + ".writes.jsonl")
    output_path = link.with_name(link.name + ".emulator.log")
    cmd = [
        sys.executable,
        "-m",
        "device_agent.emulator",
        "--link",
        os.fspath(link),
        "--motor-id",
        str(motor_id),
        "--baud",
        str(baud),
        "--log",
        os.fspath(log_path),
    ]
    if instant:
        cmd.append("--instant")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    with output_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=_REPO)
    emu = EmulatorProcess(link, log_path, proc, output_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}: {emu.output()}")
        if link.is_symlink():
            with contextlib.suppress(OSError, ValueError):
                if emu.stats().get("plugged"):
                    return emu
        if time.monotonic() > deadline:
            emu.stop()
            raise RuntimeError(f"emulator at {link} not ready after {timeout} s: {emu.output()}")
        time.sleep(0.02)
