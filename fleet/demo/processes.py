"""Process supervision of the demo: its agents and their emulators, and the record `--down` reads.

`start_agents` starts one `device-agent run` per active resort (each starts its own pty
emulator), `wait_online` waits until every agent reports online, `stop_demo` stops what a demo
left running (agents, orphaned emulators, the server it started), following `DemoState`
(`<state>/demo/demo.json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleet.core.errors import FleetError
from fleet.demo.scenario import Console

__all__ = [
    "DEMO_DIR",
    "STATE_FILE",
    "DemoState",
    "is_live",
    "relative",
    "start_agents",
    "stop_demo",
    "wait_online",
]

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = "demo"
STATE_FILE = "demo.json"
AGENT_STOP_TIMEOUT = 45.0  # an agent drains up to shutdown_grace (30 s) before it exits


# --------------------------------------------------------------------------- state on disk


@dataclass
class DemoState:
    """What a running demo left on disk (`<state>/demo/demo.json`) so `--down` can stop it.

    Attributes:
        inventory: absolute inventory path.
        server_started: True when this demo started the server (so it stops it too).
        agents: resort name -> {"pid", "create_time", "log"}.
        emulators: pids of the agents' emulator children, as {"pid", "create_time"}.
        links: the emulators' serial links (to find orphaned emulators).
    """

    inventory: str
    server_started: bool = False
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    emulators: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> DemoState | None:
        """Read the state file; None when missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def save(self, path: Path) -> None:
        """Write atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def _proc_record(pid: int) -> dict[str, Any]:
    import psutil

    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "create_time": 0.0}


def is_live(record: dict[str, Any]) -> Any:
    """The psutil process of `record` if it still runs and is the same process, else None."""
    import psutil

    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record.get("create_time") or 0)) > 1.0:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (psutil.Error, KeyError, ValueError):
        return None


def _emulators_on(links: Sequence[str]) -> list[Any]:
    """Emulator processes serving one of `links` (`device_agent.emulator --link PATH`)."""
    import psutil

    wanted = set(links)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "--link" in cmd and "device_agent.emulator" in " ".join(cmd):
            index = cmd.index("--link")
            if index + 1 < len(cmd) and cmd[index + 1] in wanted:
                found.append(proc)
    return found


def _terminate(procs: Sequence[Any], timeout: float) -> list[int]:
    """SIGTERM `procs`, SIGKILL what is left after `timeout`; the pids that needed SIGKILL."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(list(procs), timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in alive]


def stop_demo(
    state_dir: Path, console: Console | None = None, *, stop_server: bool | None = None
) -> bool:
    """Stop what a demo left running: agents (SIGTERM, they drain), emulators, the server.

    Args:
        state_dir: the project state directory.
        console: where to report what was stopped.
        stop_server: stop the local server (default: when the demo started it, or no demo record
            says otherwise).

    Returns:
        True when anything was running.
    """
    from fleet.core.server import server_down

    say = console.line if console else (lambda _text: None)
    path = state_dir / DEMO_DIR / STATE_FILE
    state = DemoState.load(path)
    anything = False
    if state is not None:
        agents = {name: is_live(rec) for name, rec in state.agents.items()}
        running = {name: proc for name, proc in agents.items() if proc is not None}
        if running:
            anything = True
            say(f"stopping agents {', '.join(running)} (SIGTERM: they finish or halt their move)")
            killed = _terminate(list(running.values()), AGENT_STOP_TIMEOUT)
            if killed:
                say(f"agents {killed} did not exit within {AGENT_STOP_TIMEOUT:g} s: killed")
        leftovers = [p for p in (is_live(r) for r in state.emulators) if p is not None]
        leftovers += [p for p in _emulators_on(state.links) if p not in leftovers]
        if leftovers:
            anything = True
            say(f"stopping {len(leftovers)} emulator process(es) left without their agent")
            _terminate(leftovers, 5.0)
        if stop_server is None:
            stop_server = state.server_started
        state.agents, state.emulators = {}, []
        state.save(path)
    if stop_server is None or stop_server:
        info = server_down(state_dir)
        if info is not None:
            anything = True
            say(f"stopped the Prefect server (pid {info.pid}, {info.api_url})")
        if state is not None:
            state.server_started = False
            state.save(path)
    return anything


# --------------------------------------------------------------------------- fleet start-up


def _agent_command(inventory: Path, resort: str) -> list[str]:
    script = Path(sys.executable).with_name("device-agent")
    args = ["run", "--inventory", str(inventory), "--device", resort, "--poll-interval", "5"]
    if script.exists():
        return [str(script), *args]
    code = "import sys; from flows.agent_main import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def _agent_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_agents(inv: Any, state: DemoState, demo_dir: Path, console: Console) -> dict[str, Any]:
    """One `device-agent run` per active resort, in its own session; logs in `demo_dir`."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = _agent_env()
    for resort in inv.resorts:
        if not resort.active:
            console.line(f"{resort.name}: inactive in the inventory, no agent")
            continue
        log_path = demo_dir / f"agent-{resort.name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                _agent_command(Path(inv.path).resolve(), resort.name),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
                start_new_session=True,  # Ctrl-C goes to the demo, which stops agents in order
            )
        procs[resort.name] = proc
        state.agents[resort.name] = {**_proc_record(proc.pid), "log": str(log_path)}
        if resort.emulate:
            state.links.append(str(resort.serial_port))
        console.line(
            f"agent {resort.name}: pid {proc.pid}, emulator on {relative(resort.serial_port)}, "
            f"log {relative(log_path)}"
        )
    state.save(demo_dir / STATE_FILE)
    return procs


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def wait_online(
    inv: Any, procs: dict[str, Any], state: DemoState, console: Console, timeout: float
) -> None:
    """Wait until every started agent reports online; print each as it comes up.

    Raises:
        FleetError: an agent exited, or not all came online within `timeout` seconds.
    """
    from fleet.core.status import aread_status

    deadline = time.monotonic() + timeout
    pending = set(procs)
    while pending:
        try:
            statuses = {s.name: s for s in await aread_status(inv)}
        except Exception as exc:  # the server is busy starting: ask again
            statuses = {}
            console.line(f"(status not readable yet: {type(exc).__name__})")
        for name in sorted(pending):
            status = statuses.get(name)
            if status is not None and status.online:
                pending.discard(name)
                where = f"{status.position:.1f} deg" if status.position is not None else "?"
                hotel = f"hotel {status.active_hotel}" if status.active_hotel else "between hotels"
                estop = ", E-STOPPED (latched)" if status.estopped else ""
                console.line(f"agent {name}: online, carousel at {where} ({hotel}){estop}")
            elif procs[name].poll() is not None:
                log = Path(state.agents[name]["log"])
                raise FleetError(
                    f"agent {name} exited with {procs[name].returncode}; see {relative(log)}:\n"
                    + _log_tail(log)
                )
        if pending and time.monotonic() > deadline:
            raise FleetError(
                f"agents {', '.join(sorted(pending))} not online after {timeout:g} s; "
                f"see their logs in {relative(Path(state.agents[min(pending)]['log']).parent)}"
            )
        if pending:
            await asyncio.sleep(0.5)
    import psutil

    for proc in procs.values():  # the emulators the agents started (for --down)
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                state.emulators.append(_proc_record(child.pid))


def relative(path: str | os.PathLike[str]) -> str:
    """`path` relative to the working directory when under it (for messages)."""
    p = Path(path)
    with contextlib.suppress(ValueError):
        return str(p.resolve().relative_to(Path.cwd()))
    return str(p)
