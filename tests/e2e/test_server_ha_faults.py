"""Faults of `fleet server up --replicas 2`: a replica killed mid-batch, the services process
restarted mid-batch, Redis killed and restarted while idle (a lock held across it).

One topology for the module (PostgreSQL, Redis, two API replicas, the services process, HAProxy)
and a fleet of two emulated resorts whose agents, parents and this process all talk to the load
balancer's URL. A batch's operations are checked as the chaos suite checks them: every one ends
in a final state, each created exactly one device run, and the motors moved exactly once per
operation (their write logs: one armed bus watchdog per move). The agents are never restarted:
they must carry on through the balancer on their own. A killed member is brought back with
`fleet server up`, which restarts the missing members of a running topology.
`make test-ha` runs them (markers `ha`, `orchestration`).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.core import server as fleet_server
from resort_common import names
from tests.support.chaos import FINAL, in_background, lock_slots, measured, queue_runs
from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.ha import Topology, event_across, fleet_cli, lease_keys, topology_up
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.ha, pytest.mark.orchestration, pytest.mark.timeout(300)]

HOTELS = "BCDA"
#: operations per resort in a batch
STEPS = 6


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    topo = topology_up(2)
    try:
        yield topo
    finally:
        topo.down()


@pytest.fixture(scope="module")
def fleet(topology: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two resorts provisioned through the balancer; their agents (inheriting this process's
    environment) talk to it too."""
    tmp = Path(tmp_path_factory.mktemp("ha-faults"))
    updates = {"PREFECT_API_URL": topology.api_url, "PREFECT_HOME": str(tmp / "client")}
    with fleet_server.prefect_environment(updates):
        started = start_fleet(tmp / "fleet", "hf", 2)
        try:
            yield started
        finally:
            fleet_server.flush_prefect_clients()
            started.stop()


def agent_doc(fleet: Fleet, resort: str) -> dict[str, Any]:
    """The status document the resort's agent publishes (pid, events_connected, counters)."""
    from prefect.variables import Variable

    doc = Variable.get(names.status_variable_name(fleet.inventory.resort(resort)), default=None)
    return dict(doc) if isinstance(doc, dict) else {}


def moves_since(fleet: Fleet, resort: str, since: float) -> int:
    """Moves the resort's motor made since `since`: each move arms the bus watchdog once."""
    return sum(
        1
        for w in fleet.emulators[resort].writes()
        if w["t"] >= since and w["name"] == "bus_watchdog" and w["value"] != 0
    )


def plan(fleet: Fleet, offset: int) -> list[dict[str, Any]]:
    """`STEPS` activations per resort, each to another hotel than the one before (every one
    moves)."""
    return [
        {"resort": r, "action": "activate_hotel", "hotel": HOTELS[(offset + step + i) % 4]}
        for step in range(STEPS)
        for i, r in enumerate(fleet.names)
    ]


def batch_with_fault(fleet: Fleet, offset: int, fault: Any) -> tuple[Any, float, float, float]:
    """Run `plan(offset)` as one batch; once a third of it is done, call `fault()`.

    Returns the batch report, the seconds from the fault to the batch's return, and the Unix
    times before the batch (for `queue_runs`) and of the fault.
    """
    from fleet.client import FleetClient

    operations = plan(fleet, offset)
    client = FleetClient(fleet.inventory_path, lock_timeout=120)
    done: list[int] = []
    since = time.time()
    thread, outcome = in_background(
        lambda: client.batch(
            operations,
            max_concurrency=len(fleet.names),
            on_progress=lambda r: done.append(r.index) if r.state in FINAL else None,
        )
    )
    wait_for(lambda: len(done) >= len(operations) // 3, 60, 0.02, "batch under way")
    fault_time = time.time()
    fault()
    faulted = time.monotonic()
    thread.join(180)
    assert not thread.is_alive(), "batch not returned 180 s after the fault"
    assert "error" not in outcome, repr(outcome.get("error"))
    return outcome["result"], outcome["ended"] - faulted, since, fault_time


def print_pickups(fleet: Fleet, since: float, fault_time: float, what: str) -> None:
    """Print, per resort, when its agent first started a run created after the fault, and the
    slowest pickup (created -> started) of those runs: a lost event subscription would show as
    pickups at the fallback poll's pace (5 s)."""
    runs = [r for r in queue_runs(fleet, fleet.names, since) if r.start_time is not None]
    for resort in fleet.names:
        queue = names.work_queue_name(fleet.inventory.resort(resort))
        after = [
            r
            for r in runs
            if r.work_queue_name == queue and r.created and r.created.timestamp() > fault_time
        ]
        if not after:
            print(f"chaos-measure: {resort}: no run created after the {what}")
            continue
        first = min(r.start_time.timestamp() for r in after) - fault_time
        slowest = max((r.start_time - r.created).total_seconds() for r in after)
        measured(f"{what} -> {resort}'s agent started a new run", first, 180)
        measured(f"{resort}: slowest pickup of {len(after)} runs after the {what}", slowest, 5)


def check_every_operation_once(fleet: Fleet, report: Any, since: float) -> None:
    """Every operation Completed, run once by a Completed device run (a lane's `move-sequence`
    runs report a row per move), one move each on the motor, locks free."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    from flows.results import aread_sequence_result

    operations = plan(fleet, 0)
    assert len(report.results) == len(operations)
    assert [r.state for r in report.results] == ["Completed"] * len(operations), report.failed
    runs = queue_runs(fleet, fleet.names, since)
    by_resort: Counter[str] = Counter()
    for run in runs:
        done = 1
        if "moves" in (run.parameters or {}):
            rows: list[dict[str, Any]] = run_coro_as_sync(aread_sequence_result(run.id))
            done = sum(row["state"] == "Completed" for row in rows)
        by_resort[str(run.work_queue_name)] += done
    expected = {names.work_queue_name(fleet.inventory.resort(r)): STEPS for r in fleet.names}
    assert dict(by_resort) == expected, [(r.name, r.work_queue_name, r.state) for r in runs]
    assert all(r.state is not None and r.state.is_completed() for r in runs), [
        (r.name, r.state) for r in runs
    ]
    assert {r: moves_since(fleet, r, since) for r in fleet.names} == dict.fromkeys(
        fleet.names, STEPS
    )
    wait_for(
        lambda: lock_slots(fleet.names) == dict.fromkeys(fleet.names, 0), 30, 0.5, "locks free"
    )


def check_agents_carry_on(fleet: Fleet, pids: dict[str, int]) -> None:
    """The same agent processes, still event-driven: one more activation each, claimed from its
    Scheduled event."""
    from fleet.client import FleetClient

    for resort in fleet.names:
        assert fleet.agents[resort].poll() is None, fleet.agent_output(resort)
    assert {r: p.pid for r, p in fleet.agents.items()} == pids
    before = {r: agent_doc(fleet, r).get("runs_claimed_from_events", 0) for r in fleet.names}
    client = FleetClient(fleet.inventory_path, lock_timeout=60)
    for resort in fleet.names:
        assert client.go_home(resort)["resort"] == resort
    wait_for(
        lambda: all(
            agent_doc(fleet, r).get("runs_claimed_from_events", 0) > before[r] for r in fleet.names
        ),
        30,
        0.2,
        "runs claimed from their Scheduled events",
    )


def stored_events(api_url: str, name: str) -> int:
    """How many events named `name` the database holds (`POST /events/filter`)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{api_url}/events/filter",
        data=json.dumps({"filter": {"event": {"name": [name]}}, "limit": 10}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return len(json.load(answer)["events"])


def kill(pid: int) -> None:
    """SIGKILL the process group `pid` leads (every topology member leads its own)."""
    os.killpg(pid, signal.SIGKILL)


def test_a_replica_killed_mid_batch(topology: Topology, fleet: Fleet) -> None:
    agents = {r: p.pid for r, p in fleet.agents.items()}
    victim = topology.processes()["api-2"]

    report, returned_after, since, killed = batch_with_fault(fleet, 0, lambda: kill(victim["pid"]))
    check_every_operation_once(fleet, report, since)
    measured("replica killed -> batch returned", returned_after, 180)
    print_pickups(fleet, since, killed, "replica kill")

    health = topology.health()
    assert health["api-2"] == "stopped"
    assert {h for n, h in health.items() if n != "api-2"} == {"healthy"}
    said = fleet_cli(topology.state, "status")
    assert said.returncode == 0, said.stderr  # the balancer answers: the servers are up
    assert "  not healthy: api-2; `fleet server up` starts stopped ones again" in said.stdout
    t0 = time.monotonic()
    check_agents_carry_on(fleet, agents)
    measured("after the kill: one activation per resort, from events", time.monotonic() - t0, 30)

    up = fleet_cli(topology.state, "up", "--replicas", "2", "--no-ui")
    assert up.returncode == 0, up.stderr
    assert "restarted api-2" in up.stdout
    after = topology.processes()
    assert after["api-2"]["health"] == "healthy"
    assert after["api-2"]["port"] == victim["port"]
    assert after["api-2"]["pid"] != victim["pid"]


def test_the_services_process_restarted_mid_batch(topology: Topology, fleet: Fleet) -> None:
    agents = {r: p.pid for r, p in fleet.agents.items()}
    victim = topology.processes()["services"]
    restarted: list[str] = []

    def restart() -> None:
        kill(victim["pid"])
        up = fleet_cli(topology.state, "up", "--replicas", "2", "--no-ui")
        assert up.returncode == 0, up.stderr
        restarted.append(up.stdout)

    report, returned_after, since, killed = batch_with_fault(fleet, 1, restart)
    assert "restarted services" in restarted[0], restarted[0]
    check_every_operation_once(fleet, report, since)
    measured("services killed -> batch returned", returned_after, 180)
    print_pickups(fleet, since, killed, "services kill")
    after = topology.processes()
    assert after["services"]["pid"] != victim["pid"]
    assert set(topology.health().values()) == {"healthy"}
    check_agents_carry_on(fleet, agents)


def test_redis_restarted_while_idle_and_a_lock_held_across_it(
    topology: Topology, fleet: Fleet
) -> None:
    from fleet.client import FleetClient

    agents = {r: p.pid for r, p in fleet.agents.items()}
    procs = topology.processes()
    redis = procs["redis"]
    api_1, api_2 = (f"http://127.0.0.1:{procs[n]['port']}/api" for n in ("api-1", "api-2"))
    wait_for(lambda: lock_slots(fleet.names) == dict.fromkeys(fleet.names, 0), 30, 0.5, "idle")
    assert lease_keys(redis["port"]) == []
    client = FleetClient(fleet.inventory_path, lock_timeout=60)
    holder, other = fleet.names

    with client.reserve(holder) as across:
        lease = f"prefect:concurrency:lease:{across.lease_id}"
        assert lease_keys(redis["port"]) == [lease]
        down = time.monotonic()
        kill(redis["pid"])  # what was acknowledged is in its append-only file already
        wait_for(lambda: topology.health()["redis"] == "stopped", 30, 0.2, "redis stopped")
        up = fleet_cli(topology.state, "up", "--replicas", "2", "--no-ui")
        assert up.returncode == 0, up.stderr
        assert "restarted redis" in up.stdout
        measured("redis down (kill, fleet server up)", time.monotonic() - down, 60)
        assert topology.processes()["redis"]["port"] == redis["port"]
        assert set(topology.health().values()) == {"healthy"}
        # the lock held across the restart: its lease is back, and it still moves the resort
        assert lease_keys(redis["port"]) == [lease]
        assert across.activate_hotel("D")["hotel"] == "D"
    wait_for(lambda: lease_keys(redis["port"]) == [], 10, 0.2, "lease removed from Redis")
    assert lock_slots(fleet.names) == dict.fromkeys(fleet.names, 0)

    # messaging: an event posted to one replica reaches a subscriber of the other, both ways,
    # and the services process's event persister (a Redis consumer) stores it
    assert event_across(api_1, api_2).startswith("fleet.test.ha.")
    name = event_across(api_2, api_1)
    wait_for(lambda: stored_events(topology.api_url, name) == 1, 30, 0.5, "event stored")
    # a new lock: its lease lives in Redis, and goes when released
    with client.reserve(other) as held:
        assert lease_keys(redis["port"]) == [f"prefect:concurrency:lease:{held.lease_id}"]
        assert held.activate_hotel("C")["hotel"] == "C"
    wait_for(lambda: lease_keys(redis["port"]) == [], 10, 0.2, "lease removed from Redis")
    assert lock_slots(fleet.names) == dict.fromkeys(fleet.names, 0)
    # what the servers said about the restart (prefect-redis's consumers reconnect)
    for member in ("services", "api-1", "api-2"):
        log = Path(procs[member]["log"]).read_text(errors="replace").splitlines()
        said = [line[:160] for line in log if "| ERROR" in line or "| WARNING" in line]
        print(f"ha-redis-restart: {member}: {len(said)} warnings", *said[-3:], sep="\n  ")
    # event-driven pickup by the same agents
    t0 = time.monotonic()
    check_agents_carry_on(fleet, agents)
    measured(
        "after the redis restart: one activation per resort, from events", time.monotonic() - t0, 30
    )
