"""`fleet server up --replicas 2`: PostgreSQL, Redis, two API replicas, services, HAProxy.

One test walks the topology's life through the real CLI in subprocesses: up, `status --json`
(every role present and healthy), an event posted to one replica and received by a subscriber of
the other, a real emulated resort provisioned and driven through the load balancer (an activation,
and a reservation whose concurrency lease lives in Redis), then down, after which none of the
processes (nor PostgreSQL's children) runs. Another starts with a timeout too short and checks
that nothing is left running. `make test-ha` runs them."""

from __future__ import annotations

import json
import shutil
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
from tests.support.ha import event_across, fleet_cli, lease_keys
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.ha, pytest.mark.orchestration, pytest.mark.timeout(300)]


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
