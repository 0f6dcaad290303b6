"""Plate hand-offs on a real server with real agents: store, confirm, abort, time out, retrieve.

Fleet `pt`: pt-a and pt-b, timed pty emulators at 270 deg/s, 20 rooms per hotel, the registry in
an SQLite file of the module's own, or in a new database on the PostgreSQL server of
`FLEET_TEST_DATABASE_URL` when it is set (`make test-postgres`; `tests.support.plates`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main as fleet_main
from resort_common import names
from tests.support.cli import in_background, run_fleet
from tests.support.controller import running_controller
from tests.support.fleet_harness import Fleet
from tests.support.plates import occupancy, start_plate_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration


@pytest.fixture(scope="module")
def fleet(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    lab = start_plate_fleet(
        Path(tmp_path_factory.mktemp("plates")), "pt", 2, instant=False, speed=270.0
    )
    yield lab
    lab.stop()


def cli(fleet: Fleet, *argv: str) -> tuple[int, str, str]:
    """Run `fleet plates ...`; its exit code, stdout and stderr."""
    return run_fleet(["plates", *argv, "--inventory", str(fleet.inventory_path)])


def where(fleet: Fleet, plate: str) -> dict[str, Any] | None:
    code, out, _ = cli(fleet, "where", plate, "--json")
    return json.loads(out) if code == 0 else None


def waiting_for_confirmation(fleet: Fleet, plate: str) -> bool:
    """The plate's hand-off run is paused for its decision (the hotel has been presented)."""
    from prefect import get_client

    found = where(fleet, plate)
    if not found or found["state"] != "reserved":
        return False
    _, out, _ = cli(fleet, "history", plate, "--json")
    run_id = json.loads(out)[-1]["flow_run_id"]
    with get_client(sync_client=True) as client:
        return bool(client.read_flow_run(run_id).state.is_paused())


def test_store_waits_for_confirm_then_the_plate_is_in_its_room(fleet: Fleet) -> None:
    emu = fleet.emulators["pt-a"]
    thread, outcome = in_background(
        lambda: cli(fleet, "store", "P1", "--resort", "pt-a", "--hotel", "C", "--json")
    )
    wait_for(lambda: waiting_for_confirmation(fleet, "P1"), 60, 0.2, "store waiting")
    assert where(fleet, "P1")["state"] == "reserved"
    assert emu.stats()["position_deg"] == pytest.approx(180.0, abs=1.0)  # hotel C presented
    assert [row["C"] for row in occupancy("pt-a")][:2] == ["P1 (store)", ""]
    # the waiting hand-off holds the resort: another scheduler's move has to wait
    inventory = ["--inventory", str(fleet.inventory_path)]
    assert fleet_main(["activate", "pt-a", "A", "--lock-timeout", "1", *inventory]) == 4
    assert emu.stats()["position_deg"] == pytest.approx(180.0, abs=1.0)
    assert cli(fleet, "confirm", "P1")[0] == 0
    thread.join(60)
    code, out, err = outcome["result"]
    assert code == 0, err
    assert json.loads(out)["state"] == "occupied"
    found = where(fleet, "P1")
    assert (found["resort"], found["hotel"], found["room"], found["state"]) == (
        "pt-a",
        "C",
        1,
        "occupied",
    )
    assert [row["C"] for row in occupancy("pt-a")][:2] == ["P1", ""]


def test_an_aborted_store_leaves_the_room_free(fleet: Fleet) -> None:
    thread, outcome = in_background(lambda: cli(fleet, "store", "P2", "--resort", "pt-b"))
    wait_for(lambda: waiting_for_confirmation(fleet, "P2"), 60, 0.2, "store waiting")
    assert cli(fleet, "abort", "P2")[0] == 0
    thread.join(60)
    assert outcome["result"][0] == 0
    assert where(fleet, "P2") is None
    assert cli(fleet, "confirm", "P2")[0] == 2  # nothing left to confirm


def test_a_store_nobody_confirms_leaves_the_room_uncertain_until_resolved(fleet: Fleet) -> None:
    code, _, err = cli(fleet, "store", "P3", "--resort", "pt-b", "--hotel", "B", "--timeout", "2")
    assert code == 2, err
    assert "no confirmation within 2 s; pt-b hotel B room 1 is uncertain" in err
    assert where(fleet, "P3")["state"] == "uncertain"
    assert [row["B"] for row in occupancy("pt-b")][:1] == ["? P3"]
    assert cli(fleet, "resolve", "pt-b", "B", "1", "--occupied", "P3")[0] == 0
    assert where(fleet, "P3")["state"] == "occupied"
    assert [row["B"] for row in occupancy("pt-b")][:1] == ["P3"]  # the operator's change too


def test_retrieve_presents_the_room_and_frees_it_on_confirm(fleet: Fleet) -> None:
    emu = fleet.emulators["pt-a"]
    assert cli(fleet, "store", "P1", "--resort", "pt-b")[0] == 2  # already stored
    fleet_main(["home", "pt-a", "--inventory", str(fleet.inventory_path)])
    thread, outcome = in_background(lambda: cli(fleet, "retrieve", "P1", "--json"))
    wait_for(lambda: waiting_for_confirmation(fleet, "P1"), 60, 0.2, "retrieve waiting")
    assert emu.stats()["position_deg"] == pytest.approx(180.0, abs=1.0)
    assert cli(fleet, "confirm", "P1")[0] == 0
    thread.join(60)
    code, out, err = outcome["result"]
    assert code == 0, err
    assert json.loads(out)["state"] == "free"
    assert where(fleet, "P1") is None
    actions = [e["action"] for e in json.loads(cli(fleet, "history", "P1", "--json")[1])]
    assert actions == ["reserve-store", "store-confirmed", "reserve-retrieve", "retrieve-confirmed"]


def test_bad_requests_move_nothing_and_change_nothing(fleet: Fleet) -> None:
    emu = fleet.emulators["pt-a"]
    before = len(emu.writes())
    rooms_before = cli(fleet, "list", "--json")[1]
    code, _, err = cli(fleet, "store", "P4", "--resort", "pt-a", "--hotel", "Z")
    assert code == 2 and "hotel: pt-a has hotels A, B, C, D, got 'Z'" in err
    code, _, err = cli(fleet, "store", "bad id", "--resort", "pt-a")
    assert code == 2 and "plate id 'bad id'" in err
    code, _, err = cli(fleet, "retrieve", "P9")
    assert code == 2 and "plate P9 is not in the fleet" in err
    assert len(emu.writes()) == before
    assert cli(fleet, "list", "--json")[1] == rooms_before


def test_a_store_started_from_its_deployment_waits_and_is_confirmed_from_a_shell(
    fleet: Fleet,
) -> None:
    """What the Prefect UI's "Run" of `fleet-store-plate/<fleet>` does: `fleet controller` runs
    the provisioned parent deployment, the run pauses with the room presented, a confirm from
    another process ends it."""
    from prefect.deployments import run_deployment
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    log = fleet.inventory_path.parent / "controller-plates.log"
    with running_controller(fleet.inventory_path, log):
        run = run_deployment(
            names.parent_deployment_name("fleet-store-plate", fleet.inventory),
            parameters={"plate": "D1", "resort": "pt-b", "hotel": "D"},
            timeout=0,
            as_subflow=False,
        )
        wait_for(lambda: waiting_for_confirmation(fleet, "D1"), 90, 0.2, "D1 presented")
        assert cli(fleet, "confirm", "D1")[0] == 0
        run = run_coro_as_sync(wait_for_flow_run(run.id, timeout=60))
    assert run.state.is_completed(), (run.state, log.read_text(errors="replace")[-2000:])
    found = where(fleet, "D1")
    assert (found["resort"], found["hotel"], found["state"]) == ("pt-b", "D", "occupied")


def test_provision_publishes_every_resorts_occupancy(fleet: Fleet) -> None:
    """So the UI shows each resort's rooms before any plate moved."""
    code, out, _ = run_fleet(["provision", "--inventory", str(fleet.inventory_path)])
    assert code == 0 and "plate occupancy artifacts published for 2 resorts" in out
    table = occupancy("pt-a")
    assert len(table) == 20 and list(table[0]) == ["room", "A", "B", "C", "D"]
