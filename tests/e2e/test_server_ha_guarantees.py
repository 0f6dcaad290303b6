"""The fleet's guarantees across API replicas (`fleet server up --replicas 2`).

One topology for the module (PostgreSQL, Redis, two API replicas, one services process, HAProxy)
and one fleet of five emulated resorts: `hg-a`..`hg-d` instant, `hg-e` timed (90 deg/s, so a
179 deg move takes ~2 s). The agents are pointed at api-1's own URL (the inventory's
`fleet.api_url`), this process and its schedulers at api-2's (`PREFECT_API_URL`): neither goes
through the balancer, so nothing works unless events, leases and automations cross replicas
through Redis and PostgreSQL.

* pickup: an activation submitted via api-2 is claimed from its Scheduled event by the agent on
  api-1 (the agent's `runs_claimed_from_events` counter; its fallback poll is 5 s);
* lock exclusivity: parents in two processes, one per replica, race over four resorts (two per
  resort in flight); no goal position is written while the motor moves (the emulators' write
  logs). The issue's 200 parents (`PARENTS`; `FLEET_HA_PARENTS=48` for a quicker inner loop);
* leases in Redis: a parent on api-1 killed -9 mid-move holding `hg-e`'s lock (at module start,
  so its 60 s lease runs out while the other tests run): its lease key leaves Redis, and a
  scheduler on api-2 then gets the resort;
* e-stop through api-2 halts a move executed by the agent on api-1 and latches;
* the parent watchdog automation (run by the one services process) marks the killed parent's
  run Crashed once: one action, one Crashed state.

Each test prints what it measured (`ha-measure: ...`, shown with `pytest -s`); none asserts speed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fleet.core import server as fleet_server
from tests.support.chaos import (
    LEASE,
    REPOSSESSOR,
    in_background,
    kill_parent_holding_lock,
    lock_slots,
    queue_runs,
)
from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.ha import Topology, ha_topology, redis_keys
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
RACERS = ["hg-a", "hg-b", "hg-c", "hg-d"]
TIMED = "hg-e"
SPEED = 90.0  # deg/s of TIMED
HEARTBEAT = 10.0  # s between parent heartbeats: the watchdog fires 40 s after the last one
#: racing parents: the issue's 200 (3-7 min on a 2-core box through PostgreSQL); set
#: `FLEET_HA_PARENTS` lower (e.g. 48, about a minute) for a quicker inner loop
PARENTS = int(os.environ.get("FLEET_HA_PARENTS", "200"))
#: a hang guard for the race's processes (not a speed bound)
RACE_TIMEOUT = 60 + 3 * PARENTS

# the module's fixtures (topology and fleet up: ~1 min here) are timed with its first test
pytestmark = [pytest.mark.ha, pytest.mark.orchestration, pytest.mark.timeout(240 + RACE_TIMEOUT)]

LEASE_KEY = "prefect:concurrency:lease:{}"


def measured(what: str, value: float, unit: str = "s") -> None:
    print(f"ha-measure: {what} = {value:.2f} {unit}")


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with ha_topology(2) as topo:
        measured("fleet server up --replicas 2", topo.up_seconds)
        yield topo


@pytest.fixture(scope="module")
def fleet(topology: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Agents on api-1 (inventory `fleet.api_url`); this process on api-2."""
    api_1, api_2 = topology.replicas
    directory = Path(tmp_path_factory.mktemp("ha-guarantees"))
    updates = {"PREFECT_API_URL": api_2, "PREFECT_HOME": str(directory / "client")}
    with fleet_server.prefect_environment(updates):
        started = time.monotonic()
        ha = start_fleet(
            directory / "fleet",
            "hg",
            5,
            timed={TIMED: SPEED},
            parent_heartbeat=HEARTBEAT,
            fleet_options={"api_url": api_1},
        )
        measured("fleet of 5 provisioned, agents online", time.monotonic() - started)
        try:
            yield ha
        finally:
            fleet_server.flush_prefect_clients()
            ha.stop()


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _subprocess_env(api_url: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": api_url}


# A parent flow in a process of its own, on one replica, with Prefect's minimum lease (60 s).
HOLDER = textwrap.dedent(
    f"""
    import functools, sys
    from fleet.core import locks
    locks.resort_lock = functools.partial(locks.resort_lock, lease_duration={LEASE})
    from fleet.client import FleetClient
    FleetClient(sys.argv[1]).move_to_angle(sys.argv[2], 179.0)
    """
)


@pytest.fixture(scope="module")
def killed_parent(
    fleet: Fleet, topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A parent on api-1 killed -9 mid-move on TIMED while it holds the lock (at module start,
    so the lease runs out while the other tests run)."""

    def lease_in_redis(holder: Any) -> dict[str, Any]:
        key = LEASE_KEY.format(holder.lease_id)
        return {
            "lease_key": key,
            "lease_key_in_redis": key in redis_keys(topology.redis_port, LEASE_KEY.format("*")),
        }

    killed = kill_parent_holding_lock(
        fleet,
        TIMED,
        HOLDER,
        Path(tmp_path_factory.mktemp("killed-parent")),
        _subprocess_env(topology.replicas[0]),
        before_kill=lease_in_redis,
    )
    key = killed["lease_key"]
    killed["lease_expires_at"] = lease_expiration(topology.redis_port, killed["holder"].lease_id)
    # when the key leaves Redis (nobody else takes TIMED's lock meanwhile)
    killed["lease_watcher"], killed["lease_gone"] = in_background(
        lambda: wait_for(
            lambda: key not in redis_keys(topology.redis_port, LEASE_KEY.format("*")),
            LEASE + REPOSSESSOR + 30,
            0.2,
            "the dead parent's lease key gone from Redis",
        )
    )
    return killed


def lease_expiration(port: int, lease_id: Any) -> float:
    """When a lease expires (epoch s), from prefect-redis's expiration index."""
    import redis

    with redis.Redis(host="127.0.0.1", port=port, db=0) as r:
        score = r.zscore("prefect:concurrency:expirations", str(lease_id))
    assert score is not None, f"lease {lease_id} not in the expiration index"
    return float(score)


def status_doc(fleet: Fleet, name: str) -> dict[str, Any]:
    """The agent's status document (its own variable)."""
    from prefect.variables import Variable

    from resort_common import names

    doc = Variable.get(names.status_variable_name(fleet.inventory.resort(name)), default=None)
    return dict(doc) if isinstance(doc, dict) else {}


def settled_doc(fleet: Fleet, name: str, runs_at_least: int) -> dict[str, Any]:
    """The status document once `runs_executed` reached `runs_at_least` and the agent is idle
    with two equal readings (it publishes asynchronously)."""
    docs: list[dict[str, Any]] = []

    def settled() -> bool:
        doc = status_doc(fleet, name)
        docs.append(doc)
        if doc.get("current_run") is not None or doc.get("runs_executed", 0) < runs_at_least:
            return False
        return len(docs) >= 2 and docs[-2].get("runs_executed") == doc.get("runs_executed")

    wait_for(settled, 20, 0.3, f"{name} idle after {runs_at_least} runs")
    return docs[-1]


@pytest.mark.usefixtures("killed_parent")
def test_runs_submitted_via_api_2_are_claimed_from_their_events_by_an_agent_on_api_1(
    fleet: Fleet, topology: Topology
) -> None:
    from fleet.client import FleetClient

    api_1, api_2 = topology.replicas
    name = "hg-a"
    agent = psutil.Process(fleet.agents[name].pid)
    # the agent talks to api-1 only (its events websocket among them), not api-2 or the balancer
    remote = {c.raddr.port for c in agent.net_connections("tcp") if c.raddr}
    assert remote == {_port(api_1)}, (remote, api_1, api_2, topology.api_url)
    before = settled_doc(fleet, name, 0)
    assert before["events_connected"] is True
    client = FleetClient(fleet.inventory_path, lock_timeout=60)
    seconds = []
    for hotel in "BCDA":
        t0 = time.monotonic()
        assert client.activate_hotel(name, hotel)["hotel"] == hotel
        seconds.append(time.monotonic() - t0)
    after = settled_doc(fleet, name, before.get("runs_executed", 0) + 4)
    # every run came from its Scheduled event (posted by api-2, delivered by api-1 through
    # Redis); the agent's fallback poll (5 s) claimed none
    claimed = after["runs_claimed_from_events"] - before.get("runs_claimed_from_events", 0)
    assert claimed == 4, (before, after)
    measured("activation via api-2, agent on api-1: median", statistics.median(seconds))
    measured("activation via api-2, agent on api-1: max", max(seconds))


# 100 parents in one process, on one replica; writes their results as JSON.
RACER = textwrap.dedent(
    """
    import asyncio, json, sys
    from fleet.client import AsyncFleetClient

    inventory, part, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    resorts = json.loads(sys.argv[4])
    total = int(sys.argv[5])
    client = AsyncFleetClient(inventory, lock_timeout=600)
    hotels = "BCDA"

    async def one(i, gate):
        async with gate:
            return await client.activate_hotel(resorts[i % 4], hotels[(i // 4) % 4])

    async def race():
        gate = asyncio.Semaphore(4)  # with the other process: two parents per resort in flight
        return await asyncio.gather(*(one(i, gate) for i in range(part, total, 2)))

    results = asyncio.run(race())
    with open(out, "w") as f:
        json.dump(results, f)
    """
)


def test_parents_over_two_replicas_racing_over_4_resorts_never_overlap(
    fleet: Fleet, topology: Topology, tmp_path: Path
) -> None:
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    start = time.time()
    began = time.monotonic()
    procs = []
    for part, api in enumerate(topology.replicas):
        out = tmp_path / f"results-{part}.json"
        cmd = [sys.executable, str(script), str(fleet.inventory_path), str(part), str(out)]
        proc = subprocess.Popen(
            [*cmd, json.dumps(RACERS), str(PARENTS)],
            stdout=(tmp_path / f"racer-{part}.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=_subprocess_env(api),
            start_new_session=True,
        )
        procs.append((proc, out))
    try:
        for proc, _ in procs:
            proc.wait(max(RACE_TIMEOUT - (time.monotonic() - began), 1.0))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    elapsed = time.monotonic() - began
    logs = [(tmp_path / f"racer-{part}.log").read_text(errors="replace") for part in (0, 1)]
    assert [proc.returncode for proc, _ in procs] == [0, 0], [log[-3000:] for log in logs]
    results: list[dict[str, Any]] = []
    for _, out in procs:
        results.extend(json.loads(out.read_text()))
    measured(f"{PARENTS} parents (2 processes, one per replica) over 4 resorts", elapsed)
    measured("racing parents completed per second", PARENTS / elapsed, "/s")
    assert len(results) == PARENTS
    assert all(r["hotel"] == r["hotel_requested"] for r in results)
    for resort in RACERS:
        mine = sorted((r for r in results if r["resort"] == resort), key=lambda r: r["started_at"])
        assert len(mine) == PARENTS // 4, [r["resort"] for r in results]
        for before, after in itertools.pairwise(mine):
            assert after["started_at"] >= before["finished_at"], (before, after)
        writes = [
            w
            for w in fleet.emulators[resort].writes()
            if w["t"] >= start and w["name"] == "goal_position"
        ]
        assert len(writes) >= PARENTS // 4, f"{resort}: {len(writes)} goal writes"
        overlapping = [w for w in writes if w["moving"]]
        assert overlapping == [], f"{resort}: goal written while moving: {overlapping[:3]}"
    assert lock_slots(RACERS) == dict.fromkeys(RACERS, 0)


def test_a_parent_killed_on_api_1_holding_a_lock_frees_it_within_its_lease(
    fleet: Fleet, topology: Topology, killed_parent: dict[str, Any]
) -> None:
    import re

    from fleet.client import FleetClient
    from fleet.core import locks

    # while the parent lived, its lease was a key in Redis; right after the kill the resort
    # was busy for a scheduler on api-2, naming the dead parent's run
    assert killed_parent["lease_key_in_redis"] is True
    assert re.match(rf"resort busy: {TIMED} held by run \S+ \(", str(killed_parent["busy"]))
    # the lease ran at most its duration past the kill (renewed up to the end)
    assert killed_parent["lease_expires_at"] - killed_parent["killed_at"] <= LEASE
    bound = LEASE + REPOSSESSOR + 30
    watcher, gone = killed_parent["lease_watcher"], killed_parent["lease_gone"]
    watcher.join(max(bound - (time.monotonic() - killed_parent["killed"]), 1.0))
    assert not watcher.is_alive() and "error" not in gone, gone.get("error")
    measured(
        "parent kill -9 -> its lease expires",
        killed_parent["lease_expires_at"] - killed_parent["killed_at"],
    )
    measured("parent kill -9 -> lease key gone from Redis", gone["ended"] - killed_parent["killed"])
    left = bound - (time.monotonic() - killed_parent["killed"])
    patient = FleetClient(fleet.inventory_path, lock_timeout=max(left, 1.0))
    assert patient.activate_hotel(TIMED, "B")["hotel"] == "B"
    measured(
        "parent kill -9 -> a scheduler on api-2 holds the lock",
        time.monotonic() - killed_parent["killed"],
    )
    # nothing lost: the killed parent's move finished on the agent, the next one ran after it
    device = queue_runs(fleet, [TIMED], killed_parent["since"])
    assert sorted(r.state_name for r in device) == ["Completed", "Completed"], device
    assert lock_slots([TIMED]) == {TIMED: 0}
    assert asyncio.run(locks.read_holder(TIMED)) is None


def test_estop_via_api_2_halts_a_move_by_the_agent_on_api_1_and_latches(
    fleet: Fleet, killed_parent: dict[str, Any]
) -> None:
    from fleet.client import FleetClient
    from fleet.core.errors import DeviceSelectionError
    from fleet.core.estop import clear_estop, estop
    from tests.support.chaos import status

    emu = fleet.emulators[TIMED]
    client = FleetClient(fleet.inventory_path, lock_timeout=120)  # the dead parent's lease first
    client.go_home(TIMED)
    thread, outcome = in_background(lambda: client.move_to_angle(TIMED, 179.0))
    wait_for(lambda: emu.stats()["moving"], 30, 0.02, "move started")
    started = time.time()
    acks = estop(fleet.inventory, [TIMED], "ha test stop")
    acked = time.time() - started
    assert [(a.resort, a.confirmed) for a in acks] == [(TIMED, True)]
    offs = [
        w
        for w in emu.writes()
        if w["name"] == "torque_enable" and w["value"] == 0 and w["t"] >= started - 0.5
    ]
    assert offs, "no torque-off write in the emulator log"
    assert offs[0]["t"] < started + 179.0 / SPEED  # before the move would have ended
    assert emu.stats()["torque"] is False
    thread.join(60)
    assert not thread.is_alive()
    assert "EmergencyStopError" in str(outcome.get("error")), outcome
    wait_for(lambda: status(fleet, TIMED).estopped, 10, 0.1, "estopped status")
    with pytest.raises(DeviceSelectionError, match=f"resort {TIMED} is not available: e-stopped"):
        client.go_home(TIMED)
    cleared = clear_estop(fleet.inventory, [TIMED])
    assert client.go_home(TIMED)["position"] == pytest.approx(0.0, abs=1.0)
    wait_for(lambda: not status(fleet, TIMED).estopped, 10, 0.1, "estop cleared in status")
    measured("estop via api-2 -> torque off at the agent on api-1", offs[0]["t"] - started)
    measured("estop via api-2 -> acknowledged", acked)
    measured("estop-clear via api-2 -> acknowledged", cleared[0].latency)


def _automation_events(run_id: str, since: float) -> Counter[str]:
    """Names of the automation events about flow run `run_id` since `since` (epoch s)."""
    from datetime import UTC, datetime

    from prefect import get_client

    query = {
        "filter": {
            "any_resource": {"id": [f"prefect.flow-run.{run_id}"]},
            "event": {"prefix": ["prefect.automation."]},
            "occurred": {"since": datetime.fromtimestamp(since, UTC).isoformat()},
        },
        "limit": 50,
    }
    with get_client(sync_client=True) as c:
        events = c.request("POST", "/events/filter", json=query).json()["events"]
    return Counter(e["event"] for e in events)


def test_the_watchdog_marks_the_killed_parent_crashed_once(
    fleet: Fleet, topology: Topology, killed_parent: dict[str, Any]
) -> None:
    from prefect import get_client

    from fleet.core import watchdog
    from tests.support.chaos import read_run

    assert [p["name"] for p in topology.status()["processes"] if p["role"] == "services"] == [
        "services"
    ]
    run_id = killed_parent["run_id"]
    bound = watchdog.window(HEARTBEAT) + 5 + 30
    crashed = wait_for(
        lambda: (run := read_run(run_id)).state_name == "Crashed" and run,
        max(bound - (time.monotonic() - killed_parent["killed"]), 1.0),
        0.5,
        "the killed parent's run Crashed by the watchdog",
    )
    assert crashed.state.message == watchdog.CRASH_MESSAGE
    fired = crashed.state.timestamp.timestamp()
    measured("parent kill -9 -> its run Crashed (watchdog)", fired - killed_parent["killed_at"])

    def executed() -> Counter[str]:  # empty (falsy) until the action has run
        found = _automation_events(run_id, killed_parent["killed_at"])
        return found if found["prefect.automation.action.executed"] else Counter()

    events = wait_for(executed, 30, 0.5, "the watchdog's action event")
    with get_client(sync_client=True) as c:
        states = c.read_flow_run_states(run_id)
    measured("watchdog fired -> its events counted", time.time() - fired)
    print(f"ha-measure: automation events about the killed parent's run: {dict(events)}")
    assert [s.name for s in states].count("Crashed") == 1, [s.name for s in states]
    assert events["prefect.automation.action.triggered"] == 1, events
    assert events["prefect.automation.action.executed"] == 1, events
    assert events["prefect.automation.action.failed"] == 0, events
