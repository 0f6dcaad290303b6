"""`fleet server up --replicas 2`: PostgreSQL, Redis, two API replicas, services, HAProxy.

One test walks the topology's life through the real CLI in subprocesses: up, `status --json`
(every role present and healthy), an event posted to one replica and received by a subscriber of
the other, a real emulated resort provisioned and driven through the load balancer (an activation,
and a reservation whose concurrency lease lives in Redis), then down, after which none of the
processes (nor PostgreSQL's children) runs. Another starts with a timeout too short and checks
that nothing is left running. `make test-ha` runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fleet.core import server as fleet_server
from tests.support.fleet_harness import start_fleet
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.ha, pytest.mark.orchestration, pytest.mark.timeout(300)]

FLEET = str(Path(sys.executable).with_name("fleet"))
LEASE_KEYS = "prefect:concurrency:lease:*"


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "FLEET_AUTH_FILE", "FLEET_STATE_DIR"):
        env.pop(key, None)
    return env


def fleet_cli(state: Path, *argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run `fleet server ... --state-dir state` in a subprocess (not pointed at any server)."""
    return subprocess.run(
        [FLEET, "server", *argv, "--state-dir", str(state)],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory PostgreSQL's `postgres` user can reach (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fleet-ha-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if (path / "server" / "cluster.json").exists():
            fleet_cli(path, "down")
        shutil.rmtree(path, ignore_errors=True)


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def running_under(state: Path) -> list[str]:
    """Processes (not zombies) whose command line, working directory or PREFECT_HOME lies in
    `state`: every process of the topology has one of them there."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            home = proc.environ().get("PREFECT_HOME", "")
        except psutil.Error:
            continue
        places = [" ".join(proc.info["cmdline"] or []), proc.info["cwd"] or "", home]
        if any(str(state) in place for place in places):
            found.append(f"{proc.info['pid']} {' '.join(proc.info['cmdline'] or [])}")
    return found


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


def lease_keys(port: int) -> list[str]:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, db=0, decode_responses=True) as r:
        return sorted(str(k) for k in r.scan_iter(LEASE_KEYS))


def test_two_replicas_up_status_a_real_activation_a_lease_in_redis_and_down(
    state: Path, tmp_path: Path
) -> None:
    from fleet.client import FleetClient

    started = time.monotonic()
    up = fleet_cli(state, "up", "--replicas", "2", "--no-ui")
    up_seconds = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    assert "Prefect servers (2 replicas) started" in up.stdout
    api_url = up.stdout.strip().splitlines()[-1].removeprefix("export PREFECT_API_URL=")

    status = fleet_cli(state, "status", "--json")
    assert status.returncode == 0, status.stderr
    doc: dict[str, Any] = json.loads(status.stdout)
    assert doc["running"] is True
    assert doc["api_url"] == api_url
    assert doc["replicas"] == 2
    procs = doc["processes"]
    assert Counter(p["role"] for p in procs) == {
        "api": 2,
        "services": 1,
        "balancer": 1,
        "postgres": 1,
        "redis": 1,
    }
    assert {p["name"]: p["health"] for p in procs} == {
        "api-1": "healthy",
        "api-2": "healthy",
        "services": "healthy",
        "balancer": "healthy",
        "postgres": "healthy",
        "redis": "healthy",
    }
    balancer = next(p for p in procs if p["role"] == "balancer")
    assert api_url == f"http://127.0.0.1:{balancer['port']}/api"
    redis_port = next(p["port"] for p in procs if p["role"] == "redis")
    api_1, api_2 = (f"http://127.0.0.1:{p['port']}/api" for p in procs if p["role"] == "api")
    # Redis messaging: an event posted to one replica reaches a subscriber of the other.
    assert event_across(api_1, api_2).startswith("fleet.test.ha.")
    assert len(running_under(state)) >= len(procs)
    pids = [p["pid"] for p in procs]
    pids += [c.pid for p in procs for c in psutil.Process(p["pid"]).children(recursive=True)]

    updates = {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path / "client")}
    with fleet_server.prefect_environment(updates):
        fleet = start_fleet(tmp_path / "fleet", "ha", 1)
        try:
            client = FleetClient(fleet.inventory_path, lock_timeout=60)
            t0 = time.monotonic()
            result = client.activate_hotel("ha-a", "B")
            activation_seconds = time.monotonic() - t0
            assert result["hotel"] == "B"
            assert result["resort"] == "ha-a"

            assert lease_keys(redis_port) == []
            with client.reserve("ha-a") as held:
                assert lease_keys(redis_port) == [f"prefect:concurrency:lease:{held.lease_id}"]
            wait_for(lambda: lease_keys(redis_port) == [], 10, what="lease removed from Redis")
        finally:
            fleet_server.flush_prefect_clients()
            fleet.stop()

    started = time.monotonic()
    down = fleet_cli(state, "down")
    down_seconds = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert "Prefect servers stopped (6 processes, 2 replicas)" in down.stdout
    left = [pid for pid in pids if not gone(pid)]
    assert left == [], [psutil.Process(pid).cmdline() for pid in left]
    assert running_under(state) == []
    assert not (state / "server" / "cluster.json").exists()
    assert fleet_cli(state, "status", "--json").returncode == 3
    print(
        f"\nha timings: up {up_seconds:.1f} s, activation through the balancer "
        f"{activation_seconds:.2f} s, down {down_seconds:.1f} s"
    )


def test_a_start_that_fails_midway_leaves_nothing_running(state: Path) -> None:
    up = fleet_cli(state, "up", "--replicas", "1", "--no-ui", "--timeout", "1")
    assert up.returncode == 1
    assert up.stderr.startswith("fleet: error: prefect server did not become healthy in 1 s; see ")
    assert "api-1/server.log" in up.stderr
    assert len(up.stderr.strip().splitlines()) == 1
    assert running_under(state) == []
    assert not (state / "server" / "cluster.json").exists()
    assert not (state / "server" / "server.json").exists()
