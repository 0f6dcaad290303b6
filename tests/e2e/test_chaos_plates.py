"""Fault suite, plate hand-offs: the waiter killed, the agent restarted, the server restarted in
the middle of a hand-off; each ends in a defined room state.

Fleet `cp`: three resorts with timed motion (270 deg/s), real agents with pty emulators, this
module's own Prefect server (restarted by one test, `tests.support.chaos`), the registry in an
SQLite file of the test's own with a 10 s hand-off lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main as fleet_main
from fleet.client import FleetClient
from tests.support.chaos import measured, read_run, restart_server
from tests.support.fleet_harness import Fleet
from tests.support.plates import occupancy, start_plate_fleet
from tests.support.prefect_server import PrefectServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.orchestration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
LEASE = 10.0


@pytest.fixture(scope="module")
def lab(chaos_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = start_plate_fleet(
        Path(tmp_path_factory.mktemp("chaos-plates")),
        "cp",
        3,
        registry={"handoff_lease": LEASE},
        instant=False,
        speed=270.0,
        parent_heartbeat=5.0,  # the watchdog closes a dead waiter's run 20 s after its last beat
    )
    yield fleet
    fleet.stop()


def presented(client: FleetClient, plate: str) -> Any:
    """The plate's hand-off once its run waits for the decision (the room presented)."""
    from fleet.client.handoffs import wait_presented

    wait_for(lambda: client.where_plate(plate) is not None, 60, 0.1, f"{plate} reserved")

    async def wait() -> Any:
        return await wait_presented(client.inventory, plate, wait=60)

    import asyncio

    return asyncio.run(wait())


def store_in_background(client: FleetClient, plate: str, resort: str) -> tuple[Any, dict]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["room"] = client.store_plate(plate, resort, timeout=120)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_killed_waiter_leaves_its_presented_room_uncertain_within_the_lease(lab: Fleet) -> None:
    client = FleetClient(lab.inventory_path)
    log = lab.inventory_path.parent / "killed-store.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("fleet")), "plates", "store", "K1", "--resort", "cp-c",
         "--inventory", str(lab.inventory_path)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
    )  # fmt: skip
    try:
        _, run_id = presented(client, "K1")
        os.killpg(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    room = wait_for(
        lambda: (r := client.where_plate("K1")) and r["state"] == "uncertain" and r,
        LEASE + 15,
        0.5,
        "the dead waiter's room uncertain",
    )
    measured("hand-off waiter kill -9 -> room uncertain", time.monotonic() - killed, LEASE + 15)
    assert (room["resort"], room["plate"], room["handoff"]) == ("cp-c", "K1", "store")
    # the registry noticed: the resort's occupancy artifact shows the room as uncertain
    assert occupancy("cp-c")[room["room"] - 1][room["hotel"]] == "? K1"
    code = fleet_main(["plates", "confirm", "K1", "--wait", "0", "--inventory",
                       str(lab.inventory_path)])  # fmt: skip
    assert code == 2  # nothing to confirm: an operator has to look
    assert fleet_main(["plates", "resolve", "cp-c", room["hotel"], str(room["room"]), "--empty",
                       "--inventory", str(lab.inventory_path)]) == 0  # fmt: skip
    assert client.where_plate("K1") is None
    # and the dead waiter's run was closed by the fleet's watchdog (a parent flow like the others)
    from fleet.core import watchdog

    bound = watchdog.window(lab.inventory.fleet.parent_heartbeat) + 30
    wait_for(
        lambda: read_run(run_id).state_name == "Crashed",
        max(bound - (time.monotonic() - killed), 1.0),
        0.5,
        "the killed waiter's run Crashed by the watchdog",
    )


def test_an_agent_restarted_while_a_room_is_presented_does_not_end_the_hand_off(
    lab: Fleet,
) -> None:
    client = FleetClient(lab.inventory_path)
    thread, outcome = store_in_background(client, "A1", "cp-a")
    presented(client, "A1")
    agent = lab.agents["cp-a"]
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(10)
    lab.restart_agent("cp-a")
    client.confirm_handoff("A1")
    thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["room"]["state"] == "occupied"
    assert client.where_plate("A1")["state"] == "occupied"


def test_a_server_restart_while_a_room_is_presented_ends_in_a_defined_state(
    lab: Fleet, chaos_server: PrefectServer
) -> None:
    client = FleetClient(lab.inventory_path)
    thread, outcome = store_in_background(client, "R1", "cp-b")
    presented(client, "R1")
    restart_server(chaos_server)
    client.confirm_handoff("R1")
    thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["room"]["state"] == "occupied"
    assert client.where_plate("R1")["state"] == "occupied"
