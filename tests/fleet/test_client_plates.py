"""The scheduler's plate API on a real server with real agents: two phases, reservations,
decisions from elsewhere, and two schedulers storing at once.

Fleet `pc`: pc-a and pc-b (labels `cold`), timed pty emulators at 270 deg/s,
the registry in an SQLite file of the test's own.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main as fleet_main
from fleet.client import FleetClient
from fleet.core.errors import DeviceBusyError, PlateError
from tests.support.fleet_harness import Fleet
from tests.support.plates import start_plate_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration


@pytest.fixture(scope="module")
def fleet(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    lab = start_plate_fleet(
        Path(tmp_path_factory.mktemp("plates-client")), "pc", 2, instant=False, speed=270.0,
        labels={"pc-a": ["cold"], "pc-b": ["cold"]},
    )  # fmt: skip
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def client(fleet: Fleet) -> FleetClient:
    return FleetClient(fleet.inventory_path, lock_timeout=60)


def test_presenting_store_enters_with_the_room_presented_and_confirms_on_exit(
    fleet: Fleet, client: FleetClient
) -> None:
    emu = fleet.emulators["pc-a"]
    with client.presenting_store("C1", "pc-a", hotel="B", labware="96-well") as handoff:
        assert (handoff.room["resort"], handoff.room["hotel"], handoff.room["room"]) == (
            "pc-a",
            "B",
            1,
        )
        assert handoff.room["state"] == "reserved"
        assert emu.stats()["position_deg"] == pytest.approx(90.0, abs=1.0)  # hotel B at access
        # the hand-off holds the resort: another scheduler's move waits (and gives up here)
        with pytest.raises(DeviceBusyError):
            FleetClient(fleet.inventory_path, lock_timeout=1).activate_hotel("pc-a", "A")
    assert handoff.result is not None and handoff.result["state"] == "occupied"
    assert client.where_plate("C1")["state"] == "occupied"


def test_an_error_in_the_body_aborts_the_hand_off(client: FleetClient) -> None:
    class ArmFault(Exception):
        pass

    with pytest.raises(ArmFault), client.presenting_store("C2", "pc-b") as handoff:
        raise ArmFault("gripper open")
    assert handoff.result is not None and handoff.result["state"] == "free"
    assert client.where_plate("C2") is None
    assert [e.action for e in _history("C2", client)][-1] == "store-aborted"


def test_store_and_retrieve_within_a_reservation_keep_the_resort_between_them(
    fleet: Fleet, client: FleetClient
) -> None:
    with client.reserve("pc-a") as held:
        with held.presenting_store("C3", hotel="C") as stored:
            pass
        assert stored.result["state"] == "occupied"
        with pytest.raises(DeviceBusyError):  # still ours between the two hand-offs
            FleetClient(fleet.inventory_path, lock_timeout=1).go_home("pc-a")
        with held.presenting_retrieve("C3") as taken:
            assert (taken.room["hotel"], taken.room["state"]) == ("C", "reserved")
    assert taken.result["state"] == "free"
    assert client.where_plate("C3") is None


def test_a_decision_sent_before_the_room_is_presented_waits_for_it(
    fleet: Fleet, client: FleetClient
) -> None:
    client.go_home("pc-b")
    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(room=client.store_plate("C4", "pc-b", hotel="D")),
        daemon=True,
    )
    thread.start()
    wait_for(lambda: client.where_plate("C4") is not None, 30, 0.05, "C4 reserved")
    # the hotel is still turning (270 deg at 270 deg/s): the confirm waits for the pause
    code = fleet_main(["plates", "confirm", "C4", "--inventory", str(fleet.inventory_path)])
    thread.join(60)
    assert code == 0
    assert outcome["room"]["state"] == "occupied"


def test_deciding_a_plate_without_a_hand_off_is_refused(client: FleetClient) -> None:
    with pytest.raises(PlateError, match="plate C1: no hand-off of it is in progress"):
        client.confirm_handoff("C1", wait=0)
    with pytest.raises(PlateError, match="plate NOPE: no hand-off of it is in progress"):
        client.abort_handoff("NOPE", wait=0)


def test_two_schedulers_storing_at_once_get_different_rooms_and_lose_nothing(
    fleet: Fleet,
) -> None:
    plates = {0: ["S0-1", "S0-2", "S0-3"], 1: ["S1-1", "S1-2", "S1-3"]}
    errors: list[BaseException] = []

    def scheduler(n: int) -> None:
        mine = FleetClient(fleet.inventory_path, lock_timeout=120)
        try:
            for plate in plates[n]:
                with mine.presenting_store(plate, selector={"labels": ["cold"]}):
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scheduler, args=(n,), daemon=True) for n in plates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert errors == []
    client = FleetClient(fleet.inventory_path)
    rooms = [client.where_plate(p) for group in plates.values() for p in group]
    assert all(r is not None and r["state"] == "occupied" for r in rooms)
    assert len({(r["resort"], r["hotel"], r["room"]) for r in rooms}) == 6


def _history(plate: str, client: FleetClient) -> list[Any]:
    import asyncio

    from fleet.core.plates.config import open_registry

    async def read() -> list[Any]:
        registry = await open_registry(client.inventory)
        try:
            return await registry.history(plate)
        finally:
            await registry.close()

    return asyncio.run(read())
