"""The emulator process an emulated resort's agent runs beside itself (never imported: started).

`EmulatorChild.start` runs ``python -m device_agent.emulator`` (the program of `device-agent
emulate`, without Prefect's import time) with ``--owned-by-agent`` and waits until its control
socket answers. An emulator already serving the link is used instead: one left by a killed agent
(it says `owned_by_agent`) is adopted and stopped with this agent; one started on its own is the
motor and outlives every agent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from device_agent.errors import DeviceError
from device_agent.settings import DeviceConfig, EmulatorOptions

__all__ = ["EmulatorChild", "emulator_alive"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 15.0  # seconds for a new emulator to serve its link


def emulator_alive(link: str) -> dict[str, Any] | None:
    """The stats of the emulator answering on `link`'s control socket, or None."""
    path = f"{link}.ctl"
    if not os.path.exists(link) or not os.path.exists(path):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(path if len(os.fsencode(path)) < 100 else _short(path))
            sock.sendall(b'{"stats": true}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        answer = json.loads(buf)
        return answer if isinstance(answer, dict) else None
    except (OSError, ValueError):
        return None


def _short(path: str) -> str:
    # Unix socket paths are limited to ~107 bytes; go through a short symlink in /tmp.
    alias = f"/tmp/plate-resort-ctl-{abs(hash(path)) % 10**10}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(alias)
    os.symlink(path, alias)
    return alias


class EmulatorChild:
    """The emulator of one agent: started, adopted, or used (and then left alone)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.adopted_pid: int | None = None

    def start(self, device: DeviceConfig, options: EmulatorOptions) -> None:
        """Serve `device.serial_port` with an emulator; return once it answers.

        Raises:
            DeviceError: the emulator exited or did not come up within `START_TIMEOUT`.
        """
        running = emulator_alive(device.serial_port)
        if running is not None:
            if running.get("owned_by_agent"):  # left by an agent that was killed
                self.adopted_pid = running.get("pid")
            logger.info(
                "using the emulator (pid %s) serving %s", running.get("pid"), device.serial_port
            )
            return
        cmd = [
            sys.executable,
            "-m",
            "device_agent.emulator",
            "--link",
            device.serial_port,
            "--motor-id",
            str(device.motor_id),
            "--baud",
            str(device.baudrate),
            "--owned-by-agent",
        ]
        if options.instant:
            cmd.append("--instant")
        if options.log_file is not None:
            Path(options.log_file).parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--log", str(options.log_file)]
        Path(device.serial_port).parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting emulator: %s", " ".join(cmd))
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not emulator_alive(device.serial_port):
            if self.process.poll() is not None:
                raise DeviceError(
                    f"emulator for {device.name} exited with {self.process.returncode}"
                )
            if time.monotonic() > deadline:
                raise DeviceError(
                    f"emulator did not serve {device.serial_port} within {START_TIMEOUT:g} s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the emulator this agent started or adopted."""
        if self.adopted_pid:
            with contextlib.suppress(OSError):
                os.kill(int(self.adopted_pid), signal.SIGTERM)
            self.adopted_pid = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
