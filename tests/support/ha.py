"""The multi-server topology for HA tests: `ha_topology()` runs `fleet server up --replicas N`.

It yields an `HaTopology` (the balancer's URL, each replica's own URL, Redis's port, the status
document) and always runs `fleet server down` on exit. The CLI runs in subprocesses, as a user
would run it, never pointed at another server.
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

__all__ = ["HaTopology", "fleet_server_cli", "ha_topology", "redis_keys"]

FLEET = str(Path(sys.executable).with_name("fleet"))


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "FLEET_AUTH_FILE", "FLEET_STATE_DIR"):
        env.pop(key, None)
    return env


def fleet_server_cli(
    state: Path, *argv: str, timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run `fleet server ... --state-dir state` in a subprocess (not pointed at any server)."""
    return subprocess.run(
        [FLEET, "server", *argv, "--state-dir", str(state)],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class HaTopology:
    """A running `fleet server up --replicas N`."""

    state: Path
    api_url: str  # the balancer's
    replicas: tuple[str, ...]  # each API replica's own URL, api-1 first
    redis_port: int
    status: dict[str, Any]
    up_seconds: float

    def process(self, name: str) -> dict[str, Any]:
        """One process of `fleet server status --json` by name (`services`, `api-1`, ...)."""
        return next(p for p in self.status["processes"] if p["name"] == name)


@contextlib.contextmanager
def ha_topology(replicas: int = 2) -> Iterator[HaTopology]:
    """`fleet server up --replicas N --no-ui` in a fresh state directory; down on exit."""
    # PostgreSQL's `postgres` user must reach the state directory (pytest's tmp dirs are 0700)
    state = Path(tempfile.mkdtemp(prefix="fleet-ha-", dir="/tmp"))
    state.chmod(0o755)
    try:
        started = time.monotonic()
        up = fleet_server_cli(state, "up", "--replicas", str(replicas), "--no-ui")
        up_seconds = time.monotonic() - started
        assert up.returncode == 0, up.stderr
        status = fleet_server_cli(state, "status", "--json")
        assert status.returncode == 0, status.stderr
        doc: dict[str, Any] = json.loads(status.stdout)
        procs = doc["processes"]
        yield HaTopology(
            state=state,
            api_url=doc["api_url"],
            replicas=tuple(
                f"http://127.0.0.1:{p['port']}/api"
                for p in sorted(procs, key=lambda p: str(p["name"]))
                if p["role"] == "api"
            ),
            redis_port=next(int(p["port"]) for p in procs if p["role"] == "redis"),
            status=doc,
            up_seconds=up_seconds,
        )
    finally:
        if (state / "server" / "cluster.json").exists():
            fleet_server_cli(state, "down")
        shutil.rmtree(state, ignore_errors=True)


def redis_keys(port: int, pattern: str) -> list[str]:
    """Keys of Redis database 0 matching `pattern` (sorted)."""
    import redis

    with redis.Redis(host="127.0.0.1", port=port, db=0, decode_responses=True) as r:
        return sorted(str(k) for k in r.scan_iter(pattern))
