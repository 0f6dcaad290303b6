"""Several Prefect servers for the `ha` tests: `fleet server ...` in a subprocess, a topology's
processes as `fleet server status --json` lists them, and one topology brought up and down.

`topology_up()` runs `fleet server up --replicas N --no-ui` on a state directory of its own under
/tmp (PostgreSQL runs as `postgres` when the tests run as root, and pytest's tmp dirs are 0700);
`Topology.down()` stops it and removes the directory; `ha_topology()` is both, as a context
manager. The CLI runs as a user would run it, never pointed at another server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FLEET",
    "LEASE_KEYS",
    "Topology",
    "cli_env",
    "event_across",
    "fleet_cli",
    "ha_topology",
    "lease_keys",
    "redis_keys",
    "topology_up",
]

FLEET = str(Path(sys.executable).with_name("fleet"))
#: prefect-redis's key of one concurrency lease
LEASE_KEYS = "prefect:concurrency:lease:*"


def cli_env() -> dict[str, str]:
    """This process's environment, pointed at no server and no state directory."""
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "FLEET_AUTH_FILE", "FLEET_STATE_DIR"):
        env.pop(key, None)
    return env


def fleet_cli(state: Path, *argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run `fleet server ... --state-dir state` in a subprocess (not pointed at any server)."""
    return subprocess.run(
        [FLEET, "server", *argv, "--state-dir", str(state)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Topology:
    """A running `fleet server up --replicas N` under `state`; `api_url` is the balancer's."""

    state: Path
    api_url: str
    up_seconds: float = 0.0

    def status(self) -> dict[str, Any]:
        """`fleet server status --json` (exit 0 or 3), parsed."""
        done = fleet_cli(self.state, "status", "--json")
        assert done.returncode in (0, 3), done.stderr
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def processes(self) -> dict[str, dict[str, Any]]:
        """Every process of the topology by name (`api-1`, `services`, ...): role, pid, port,
        health, log."""
        return {p["name"]: p for p in self.status()["processes"]}

    def health(self) -> dict[str, str]:
        """Each process's health by name."""
        return {name: p["health"] for name, p in self.processes().items()}

    @property
    def replicas(self) -> tuple[str, ...]:
        """Each API replica's own URL, api-1 first."""
        procs = sorted(self.processes().values(), key=lambda p: str(p["name"]))
        return tuple(f"http://127.0.0.1:{p['port']}/api" for p in procs if p["role"] == "api")

    @property
    def redis_port(self) -> int:
        """The port of the topology's Redis."""
        return int(self.processes()["redis"]["port"])

    def down(self) -> None:
        """Stop every process and remove the state directory."""
        try:
            if (self.state / "server" / "cluster.json").exists():
                fleet_cli(self.state, "down")
        finally:
            shutil.rmtree(self.state, ignore_errors=True)


def topology_up(replicas: int = 2) -> Topology:
    """`fleet server up --replicas N --no-ui` on a fresh state directory.

    Raises:
        AssertionError: it did not start (nothing is left running then).
    """
    state = Path(tempfile.mkdtemp(prefix="fleet-ha-", dir="/tmp"))
    state.chmod(0o755)
    started = time.monotonic()
    up = fleet_cli(state, "up", "--replicas", str(replicas), "--no-ui")
    if up.returncode != 0:
        Topology(state, "").down()
        raise AssertionError(f"fleet server up --replicas {replicas}: {up.stderr}")
    api_url = up.stdout.strip().splitlines()[-1].removeprefix("export PREFECT_API_URL=")
    return Topology(state, api_url, time.monotonic() - started)


@contextlib.contextmanager
def ha_topology(replicas: int = 2) -> Iterator[Topology]:
    """`topology_up(replicas)`, brought down on exit."""
    topology = topology_up(replicas)
    try:
        yield topology
    finally:
        topology.down()


def event_across(subscribe_to: str, post_to: str, timeout: float = 10.0) -> str:
    """Post an event to one replica (`POST /events`) while subscribed on another
    (`/events/out`); return its name once the subscriber has it."""
    import asyncio
    import urllib.request
    import uuid
    from datetime import UTC, datetime

    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.settings import temporary_settings

    from fleet.core.prefect_adapter import events_subscriber

    name = f"fleet.test.ha.{uuid.uuid4().hex[:8]}"
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": "fleet.test.ha"},
    }
    request = urllib.request.Request(
        f"{post_to}/events",
        data=json.dumps([event]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    async def run() -> str:
        with temporary_settings(updates={"api.url": subscribe_to}):
            flt = EventFilter(event=EventNameFilter(name=[name]))
            async with events_subscriber(flt) as subscriber:
                with urllib.request.urlopen(request, timeout=timeout):
                    pass
                received = await asyncio.wait_for(anext(subscriber), timeout)
                return str(received.event)

    return asyncio.run(run())


def redis_keys(port: int, pattern: str) -> list[str]:
    """Keys of Redis database 0 on `port` matching `pattern` (sorted)."""
    import redis

    with redis.Redis(host="127.0.0.1", port=port, db=0, decode_responses=True) as r:
        return sorted(str(k) for k in r.scan_iter(pattern))


def lease_keys(port: int) -> list[str]:
    """The concurrency leases held in the Redis on `port` (database 0)."""
    return redis_keys(port, LEASE_KEYS)
