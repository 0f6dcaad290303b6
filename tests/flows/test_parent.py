"""Parent flows on a real server with real agents: dispatch, results, locks, races, crashes.

Fleet `pp`: pp-a, pp-b (timed emulators, 270 deg/s, so a move really takes time and an overlap
would show up in the write log as a goal written while moving), pp-c (label `spare`) and pp-d
(label `spare`, inactive: no agent).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main as fleet_main
from fleet.client import AsyncFleetClient, FleetClient
from fleet.core import locks
from fleet.core.errors import DeviceBusyError, DeviceSelectionError, PlanError
from resort_common import names
from tests.support.controller import running_controller
from tests.support.fleet_harness import start_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet(prefect_server, tmp_path_factory):
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("parent")),
        "pp",
        4,
        instant=False,
        speed=270.0,
        inactive=["pp-d"],
        labels={"pp-c": ["spare"], "pp-d": ["spare"]},
        parent_heartbeat=5.0,  # the watchdog marks a silent parent Crashed after 20 s
    )
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def client(fleet) -> FleetClient:
    return FleetClient(fleet.inventory_path, lock_timeout=120)


def count_flow_runs() -> int:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.count_flow_runs()


def wait_status(client: FleetClient, resort: str, **expected) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = {s.name: s for s in client.status()}[resort]
        if all(getattr(status, k) == v for k, v in expected.items()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{resort} status never reached {expected}: {status}")


def test_motions_return_the_device_result(client) -> None:
    assert client.activate_hotel("pp-a", "B")["hotel"] == "B"
    moved = client.move_to_angle("pp-a", 45.0)
    assert moved["position"] == pytest.approx(45.0, abs=1.0)
    home = client.go_home("pp-a")
    assert home["position"] == pytest.approx(0.0, abs=1.0)
    assert home["resort"] == "pp-a"


def test_invalid_requests_fail_before_anything_is_queued(client, fleet, capsys) -> None:
    before = count_flow_runs()
    with pytest.raises(PlanError, match="unknown resort 'pp-z'"):
        client.activate_hotel("pp-z", "B")
    with pytest.raises(PlanError, match="'Q' is not a hotel of pp-a; allowed: A, B, C, D"):
        client.activate_hotel("pp-a", "Q")
    with pytest.raises(PlanError, match="angle 400 is out of range"):
        client.move_to_angle("pp-a", 400)
    with pytest.raises(PlanError, match="angle -5 is out of range"):
        client.move_to_angle("pp-a", -5)
    inv = str(fleet.inventory_path)
    assert fleet_main(["activate", "pp-a", "Q", "--inventory", inv]) == 2
    assert fleet_main(["move", "pp-a", "360", "--inventory", inv]) == 2
    assert fleet_main(["home", "nope", "--inventory", inv]) == 2
    err = capsys.readouterr().err
    assert "fleet: error: hotel: 'Q' is not a hotel of pp-a" in err
    assert "Traceback" not in err
    assert count_flow_runs() == before


def test_cli_verbs_run_a_tracked_parent_flow(fleet, capsys) -> None:
    before = count_flow_runs()
    code = fleet_main(["activate", "pp-b", "D", "--json", "--inventory", str(fleet.inventory_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["result"]["hotel"] == "D"
    assert count_flow_runs() == before + 2  # the parent and its device subflow


def test_fifty_parents_racing_for_two_resorts_never_overlap(fleet) -> None:
    client = AsyncFleetClient(fleet.inventory_path, lock_timeout=240)
    start = time.time()
    hotels = "BCDA"

    async def one(i: int, gate: asyncio.Semaphore) -> dict:
        async with gate:  # ten parents in flight at a time, five per resort contending
            return await client.activate_hotel("pp-a" if i % 2 else "pp-b", hotels[(i // 2) % 4])

    async def race() -> list[dict]:
        gate = asyncio.Semaphore(10)
        return await asyncio.gather(*(one(i, gate) for i in range(50)))

    results = asyncio.run(race())
    assert len(results) == 50
    assert all(r["hotel"] == r["hotel_requested"] for r in results)
    for resort in ("pp-a", "pp-b"):
        writes = [
            w
            for w in fleet.emulators[resort].writes()
            if w["t"] >= start and w["name"] == "goal_position"
        ]
        assert len(writes) >= 10, writes  # the resort really moved during the race
        overlapping = [w for w in writes if w["moving"]]
        assert overlapping == [], f"{resort}: goal written while moving: {overlapping[:3]}"


def test_selection_skips_inactive_and_estopped_resorts(client) -> None:
    chosen = client.activate_hotel(None, "C", selector={"labels": ["spare"]})
    assert chosen["resort"] == "pp-c"  # pp-d is inactive
    client.estop(["pp-c"], reason="test")
    try:
        wait_status(client, "pp-c", estopped=True)
        with pytest.raises(DeviceSelectionError) as info:
            client.activate_hotel(None, "B", selector={"labels": ["spare"]})
        message = str(info.value)
        assert "pp-c: e-stopped" in message
        assert "pp-d: inactive" in message
        assert "pp-a: lacks label(s) spare" in message
    finally:
        client.estop_clear(["pp-c"])
    wait_status(client, "pp-c", estopped=False)
    assert client.go_home(None, selector={"labels": ["spare"]})["resort"] == "pp-c"


def test_a_named_unavailable_resort_is_refused_and_its_lock_left_free(client) -> None:
    """A named resort's status is read while its lock is taken: the refusal gives back a lock
    granted meanwhile, and a lock held by somebody else does not delay it."""

    def slots(resort: str) -> int:
        from prefect import get_client

        with get_client(sync_client=True) as prefect:
            limit = prefect.read_global_concurrency_limit_by_name(names.lock_name(resort))
            return int(limit.active_slots)

    with client.reserve("pp-c"):
        client.estop(["pp-c"], reason="test")
        try:
            wait_status(client, "pp-c", estopped=True)
            began = time.monotonic()  # held by the reservation and e-stopped: refused at once
            with pytest.raises(DeviceSelectionError, match="e-stopped"):
                client.activate_hotel("pp-c", "B")
            assert time.monotonic() - began < 30  # the lock timeout is 300 s
        finally:
            client.estop_clear(["pp-c"])
        assert slots("pp-c") == 1  # the reservation's
    client.estop(["pp-c"], reason="test")
    try:
        wait_status(client, "pp-c", estopped=True)
        for _ in range(3):  # free lock and e-stopped: whichever answers first
            with pytest.raises(DeviceSelectionError, match="e-stopped"):
                client.activate_hotel("pp-c", "B")
        assert slots("pp-c") == 0
        assert asyncio.run(locks.read_holder("pp-c")) is None
    finally:
        client.estop_clear(["pp-c"])
    wait_status(client, "pp-c", estopped=False)


def test_reserve_holds_the_resort_across_steps(client, fleet) -> None:
    other = FleetClient(fleet.inventory_path, lock_timeout=1.5)
    with client.reserve("pp-b") as reservation:
        assert reservation.activate_hotel("C")["hotel"] == "C"
        with pytest.raises(DeviceBusyError, match=r"resort busy: pp-b held by process \d+ on "):
            other.activate_hotel("pp-b", "A")
        assert reservation.go_home()["position"] == pytest.approx(0.0, abs=1.0)
    # released: the other scheduler gets it now
    assert other.activate_hotel("pp-b", "A")["hotel"] == "A"


def test_reserve_flow_runs_steps_under_one_lock(fleet) -> None:
    from flows.parent import reserve

    out = reserve(
        steps=[{"action": "activate_hotel", "hotel": "D"}, {"action": "go_home"}],
        resort="pp-a",
        inventory=str(fleet.inventory_path),
    )
    out = asyncio.run(out) if asyncio.iscoroutine(out) else out
    assert out["resort"] == "pp-a"
    assert [r["hotel"] for r in out["results"]] == ["D", "A"]


def test_health_flow_reports_every_resort(client) -> None:
    health = client.health()
    assert set(health) == {"pp-a", "pp-b", "pp-c", "pp-d"}
    assert health["pp-d"]["state"] == "Skipped"
    assert health["pp-d"]["error"] == "inactive"
    for name in ("pp-a", "pp-b", "pp-c"):
        assert health[name]["state"] == "Completed", health[name]


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from prefect import flow
    from fleet.core import locks

    @flow(name="test-lock-holder")
    async def hold(resort: str) -> None:
        await locks.acquire(
            "resort:" + resort, resort=resort, lease_duration=60, timeout=30
        )
        print("HELD", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(hold(sys.argv[1]))
    """
)


def test_parent_killed_while_holding_the_lock_frees_it_with_the_lease(fleet, tmp_path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), "pp-c"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"HELD" in line:
                break
        else:
            pytest.fail("the holder never took the lock")
        busy = FleetClient(fleet.inventory_path, lock_timeout=1.0)
        with pytest.raises(DeviceBusyError, match=r"resort busy: pp-c held by run \S+ \(") as info:
            busy.activate_hotel("pp-c", "B")
        assert " since 20" in str(info.value)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # lease 60 s + the repossessor loop (15 s): the next parent gets the resort within that
    patient = FleetClient(fleet.inventory_path, lock_timeout=60 + 15 + 30)
    assert patient.activate_hotel("pp-c", "B")["hotel"] == "B"
    holder = asyncio.run(locks.read_holder("pp-c"))
    assert holder is None  # cleared by the last (clean) release
    assert names.lock_name("pp-c") == "resort:pp-c"


DYING_PARENT = textwrap.dedent(
    """
    import sys
    from fleet.core import watchdog
    from fleet.client import FleetClient

    inventory, resort, hotel, mode = sys.argv[1:5]
    if mode == "silent":
        # sends no heartbeat at all: as if killed after turning Running, before its first one
        watchdog._emit = lambda *args, **kwargs: None
    FleetClient(inventory, lock_timeout=300).activate_hotel(resort, hotel)
    """
)


def _parent_runs(resort: str, since: datetime) -> dict[str, Any]:
    """`fleet-activate-hotel` runs on `resort` created after `since`, by their `hotel`."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["fleet-activate-hotel"]))
        )
    return {
        r.parameters["hotel"]: r
        for r in runs
        if r.created >= since and r.parameters.get("resort") == resort
    }


def _run_events(run_id: Any) -> list[str]:
    """Names of the events the server holds for one flow run (oldest first)."""
    from prefect import get_client

    query = {
        "filter": {
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            "occurred": {"since": "2000-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    with get_client(sync_client=True) as c:
        events = c.request("POST", "/events/filter", json=query).json()["events"]
    return [e["event"] for e in sorted(events, key=lambda e: e["occurred"])]


def test_a_parent_whose_process_dies_is_marked_crashed_a_waiting_one_is_not(
    fleet, client, tmp_path
) -> None:
    """Three parents wait for a reserved resort. Two processes are killed -9: A after its first
    heartbeat, C having sent none (as if killed between turning Running and that heartbeat). The
    fleet's watchdog automation marks both dead runs Crashed (they would stay Running for ever);
    the live one, B, waiting longer than the watchdog's window, keeps running and completes once
    the resort is free."""
    from prefect import get_client

    from fleet.core import watchdog

    window = watchdog.window(fleet.inventory.fleet.parent_heartbeat)
    since = datetime.now(UTC) - timedelta(seconds=1)
    script = tmp_path / "dying.py"
    script.write_text(DYING_PARENT)
    outcome: dict[str, Any] = {}

    def survive() -> None:
        waiting = FleetClient(fleet.inventory_path, lock_timeout=300)
        outcome["result"] = waiting.activate_hotel("pp-c", "B")

    def dying(hotel: str, mode: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(script), str(fleet.inventory_path), "pp-c", hotel, mode],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )

    with client.reserve("pp-c"):
        procs = [dying("A", "beating"), dying("C", "silent")]
        survivor = threading.Thread(target=survive, daemon=True)
        survivor.start()
        try:
            runs = wait_for(
                lambda: (
                    (r := _parent_runs("pp-c", since)).keys() == {"A", "B", "C"}
                    and all(run.state_name == "Running" for run in r.values())
                    and r
                ),
                60,
                0.5,
                "three parents Running",
            )
            wait_for(
                lambda: watchdog.HEARTBEAT_EVENT in _run_events(runs["A"].id),
                30,
                0.5,
                "A's first heartbeat on the server",
            )
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            for proc in procs:
                proc.wait(10)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        bound = window + 5 + 30  # the window, the proactive loop (5 s), slack for a slow box
        dead = wait_for(
            lambda: (
                all((r := _parent_runs("pp-c", since))[h].state_name == "Crashed" for h in "AC")
                and r
            ),
            bound,
            0.5,
            "the killed parents' runs Crashed",
        )
        print(f"watchdog: killed parents Crashed {time.monotonic() - killed:.1f} s after the kill")
        assert dead["A"].state.message == dead["C"].state.message == watchdog.CRASH_MESSAGE
        # C was watched from its Running state: it never sent a heartbeat
        assert watchdog.HEARTBEAT_EVENT not in _run_events(runs["C"].id)
        assert watchdog.START_EVENT in _run_events(runs["C"].id)
        # the live parent has now waited more than a whole window: still Running
        time.sleep(max(0.0, window + 5 - (time.monotonic() - killed)))
        assert _parent_runs("pp-c", since)["B"].state_name == "Running"
    survivor.join(60)
    assert outcome["result"]["hotel"] == "B"
    with get_client(sync_client=True) as c:
        history = [s.type.value for s in c.read_flow_run_states(runs["B"].id)]
    assert "CRASHED" not in history and history[-1] == "COMPLETED", history


def test_controller_runs_parent_deployments_triggered_through_prefect(fleet) -> None:
    """`fleet controller` serves the provisioned parent deployments (UI, schedules, automations):
    a `run_deployment` of `fleet-activate-hotel/<fleet>` completes and turns the resort."""
    from prefect.deployments import run_deployment
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    log = fleet.inventory_path.parent / "controller.log"
    with running_controller(fleet.inventory_path, log):
        deployment = names.parent_deployment_name("fleet-activate-hotel", fleet.inventory)
        run = run_deployment(
            deployment, parameters={"resort": "pp-c", "hotel": "C"}, timeout=0, as_subflow=False
        )
        run = run_coro_as_sync(wait_for_flow_run(run.id, timeout=150))
        assert run.state.is_completed(), (run.state, log.read_text(errors="replace")[-2000:])
        # the agent publishes its status after the device run ends (debounced): wait for it
        wait_status(FleetClient(fleet.inventory_path), "pp-c", active_hotel="C")
