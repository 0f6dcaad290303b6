"""A small real fleet for orchestration tests: inventory, provisioning, emulators and agents.

`start_fleet(tmp, prefix, n)` writes an inventory with `n` emulated resorts named
`<prefix>-a`, `<prefix>-b`, ... (`<prefix>-01`, `<prefix>-02`, ... beyond 26; names are unique per
test module: locks and variables on the shared test server are named after resorts), provisions it
on the server `PREFECT_API_URL` points at, starts one pty emulator per resort (its write log is
what overlap checks read) and one real agent subprocess per resort (`device-agent run --inventory
... --device ...`, which reuses the already running emulator), then waits until every agent
reports online.
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.agents import start_agent
from tests.support.emulator import EmulatorProcess, start_emulator
from tests.support.inventories import write_inventory

__all__ = ["Fleet", "resort_names", "start_fleet"]


@dataclass
class Fleet:
    """A running test fleet."""

    inventory_path: Path
    inventory: Any
    emulators: dict[str, EmulatorProcess]
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agent_logs: dict[str, Path] = field(default_factory=dict)
    #: called at the end of `stop` (e.g. dropping the fleet's registry database)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    #: the agents' fallback poll (s): 5 in tests, so a lost event costs little; None: the
    #: agent's own default (15 s, as deployed)
    poll_interval: float | None = 5.0

    @property
    def names(self) -> list[str]:
        """Resort names in inventory order."""
        return [r.name for r in self.inventory.resorts]

    def agent_output(self, name: str) -> str:
        """Tail of one agent's log (for failure messages)."""
        path = self.agent_logs.get(name)
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def spawn_agent(self, name: str, *, append: bool = True) -> subprocess.Popen[bytes]:
        """Start `device-agent run` for resort `name` (its log appended to, or new)."""
        agent = start_agent(
            self.inventory_path,
            name,
            self.agent_logs[name],
            args=["--poll-interval", f"{self.poll_interval:g}"] if self.poll_interval else [],
            append=append,
            new_session=True,
        )
        self.agents[name] = agent.proc
        return agent.proc

    def restart_agent(self, name: str, *, timeout: float = 90.0) -> subprocess.Popen[bytes]:
        """Start `name`'s agent again; wait until the new process has published its own status
        (a killed agent's document still says online)."""
        from prefect.variables import Variable

        from resort_common import names

        proc = self.spawn_agent(name)
        variable = names.status_variable_name(self.inventory.resort(name))
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"agent {name} exited: {self.agent_output(name)}")
            doc = Variable.get(variable, default=None)
            if isinstance(doc, dict) and doc.get("pid") == proc.pid and doc.get("online"):
                return proc
            if time.monotonic() > deadline:
                raise RuntimeError(f"restarted agent {name} not online after {timeout} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM every agent (SIGKILL after 20 s), then stop the emulators."""
        for proc in self.agents.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for emu in self.emulators.values():
            emu.stop()
        while self.on_stop:
            self.on_stop.pop()()


def _wait_online(fleet: Fleet, names: Sequence[str], timeout: float) -> None:
    from fleet.core.status import read_status

    deadline = time.monotonic() + timeout
    while True:
        try:
            statuses = {s.name: s for s in read_status(fleet.inventory)}
        except httpx.TransportError:  # a server busy with many agents starting: read again
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
            continue
        missing = [n for n in names if not (statuses.get(n) and statuses[n].online)]
        if not missing:
            return
        for name in missing:
            proc = fleet.agents[name]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"agent {name} exited {proc.returncode}: {fleet.agent_output(name)}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"agents {missing} not online after {timeout} s: "
                + " | ".join(fleet.agent_output(n)[-800:] for n in missing)
            )
        time.sleep(0.3)


def resort_names(prefix: str, count: int) -> list[str]:
    """`<prefix>-a` ... `<prefix>-z` for up to 26 resorts, else `<prefix>-01`, `<prefix>-02`, ..."""
    if count <= len(string.ascii_lowercase):
        return [f"{prefix}-{letter}" for letter in string.ascii_lowercase[:count]]
    return [f"{prefix}-{i:02d}" for i in range(1, count + 1)]


def start_fleet(
    tmp: Path,
    prefix: str,
    count: int = 3,
    *,
    instant: bool = True,
    speed: float = 270.0,
    timed: Mapping[str, float] | None = None,
    inactive: Sequence[str] = (),
    labels: dict[str, list[str]] | None = None,
    max_concurrent_moves: int | None = None,
    parent_heartbeat: float | None = None,
    fleet_options: dict[str, Any] | None = None,
    timeout: float = 90.0,
    poll_interval: float | None = 5.0,
) -> Fleet:
    """Write the inventory, provision it, start emulators and agents; wait until online.

    `fleet_options` adds keys to the inventory's `fleet:` block (e.g. `alerts`). `timed` maps
    resorts to a speed of their own (deg/s) with a timed emulator, in a fleet otherwise `instant`.
    `poll_interval`: the agents' fallback poll (None: the agent's default, as deployed).
    """
    from fleet.core.inventory import load_inventory
    from fleet.core.provision import provision

    tmp.mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "name": name,
            **({"active": False} if name in inactive else {}),
            **({"labels": (labels or {})[name]} if (labels or {}).get(name) else {}),
            **({"speed": (timed or {})[name]} if name in (timed or {}) else {}),
        }
        for name in resort_names(prefix, count)
    ]
    options = dict(fleet_options or {})
    if max_concurrent_moves:
        options["max_concurrent_moves"] = max_concurrent_moves
    if parent_heartbeat is not None:
        options["parent_heartbeat"] = parent_heartbeat
    path = write_inventory(
        tmp / "inventory.yaml",
        prefix,
        entries,
        defaults={"speed": speed, "acceleration": 0, "move_timeout": 15},
        control_pool=f"{prefix}-control",
        **options,
    )
    inv = load_inventory(path)
    provision(inv)
    emulators: dict[str, EmulatorProcess] = {}
    fleet = Fleet(path, inv, emulators, poll_interval=poll_interval)
    try:
        for resort in inv.resorts:
            emulators[resort.name] = start_emulator(
                Path(resort.serial_port),
                instant=instant and resort.name not in (timed or {}),
                log=tmp / f"{resort.name}.writes.jsonl",
            )
        started = []
        for resort in inv.resorts:
            if not resort.active:
                continue
            fleet.agent_logs[resort.name] = tmp / f"agent-{resort.name}.log"
            fleet.spawn_agent(resort.name, append=False)
            started.append(resort.name)
        _wait_online(fleet, started, timeout)
    except BaseException:
        fleet.stop()
        raise
    return fleet
