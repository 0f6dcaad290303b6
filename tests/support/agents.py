"""Start `device-agent run` for one resort of an inventory, as on a Pi (`start_agent`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AgentProcess", "run_agent", "start_agent"]

_REPO = Path(__file__).resolve().parents[2]
_DEVICE_AGENT = Path(sys.executable).with_name("device-agent")


@dataclass
class AgentProcess:
    """A `device-agent run` subprocess and where it logs."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    link: Path

    @property
    def pid(self) -> int:
        """The agent's process id."""
        return self.proc.pid

    def output(self) -> str:
        """What the agent logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (an emulator the agent started survives: it has its own session)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_agent(
    inventory: Path,
    device: str,
    log_path: Path,
    *,
    args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
    append: bool = True,
    new_session: bool = False,
) -> AgentProcess:
    """Start `device-agent run --inventory INVENTORY --device DEVICE [ARGS]` (see `run_agent`)."""
    return run_agent(
        ["--inventory", str(inventory), "--device", device, *args],
        log_path,
        inventory.parent / f"tty-{device}",
        extra_env=extra_env,
        append=append,
        new_session=new_session,
    )


def run_agent(
    run_args: Sequence[str],
    log_path: Path,
    link: Path,
    *,
    extra_env: dict[str, str] | None = None,
    append: bool = True,
    new_session: bool = False,
) -> AgentProcess:
    """Start `device-agent run RUN_ARGS` in its own process.

    Args:
        log_path: its stdout and stderr (appended to, or started afresh).
        link: the serial device it drives (its emulator's control socket is `link.ctl`).
        extra_env: added to this process's environment.
        new_session: put it in a process group of its own (killed as a group).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    with log_path.open("ab" if append else "wb") as log:
        proc = subprocess.Popen(
            [str(_DEVICE_AGENT), "run", *run_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(_REPO),
            start_new_session=new_session,
        )
    return AgentProcess(proc, log_path, link)
