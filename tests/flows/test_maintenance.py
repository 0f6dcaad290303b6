"""Maintenance parent flows on a real server with real agents: health, recover, set speed.

Fleet `mt`: mt-a and mt-b, timed pty emulators at 270 deg/s (rectangular profile, move timeout
15 s), each with its own `device-agent run`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fleet.cli import main as fleet_main
from fleet.client import FleetClient
from fleet.core.errors import DeviceBusyError, DeviceSelectionError, DispatchError, PlanError
from resort_common import names
from tests.support.fleet_harness import start_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration


@pytest.fixture(scope="module")
def fleet(prefect_server, tmp_path_factory):
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("maintenance")), "mt", 2, instant=False, speed=270.0
    )
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def client(fleet) -> FleetClient:
    return FleetClient(fleet.inventory_path, lock_timeout=60)


def count_flow_runs() -> int:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.count_flow_runs()


def failed_run_state(run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(run_id).state.name


def lock_free(resort: str) -> bool:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_global_concurrency_limit_by_name(names.lock_name(resort)).active_slots == 0


def speed_of(client: FleetClient, resort: str) -> float | None:
    return {s.name: s for s in client.status()}[resort].speed


def cli(capsys, fleet, *argv: str) -> tuple[int, str, str]:
    code = fleet_main([*argv, "--inventory", str(fleet.inventory_path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_recover_clears_a_latched_overload(fleet, client, capsys) -> None:
    emu = fleet.emulators["mt-a"]
    client.activate_hotel("mt-a", "B")
    emu.fault("overload")  # latched in the servo's Hardware Error Status; torque goes off

    with pytest.raises(DispatchError, match=r"MotorFaultError: .*overload"):
        client.activate_hotel("mt-a", "C")
    # the CLI says the same in one line, and where the failed run's logs are
    code, _, err = cli(capsys, fleet, "activate", "mt-a", "C")
    assert code == 1, err
    error, link = err.strip().splitlines()
    assert error.startswith("fleet: error: ") and "overload" in error, err
    assert link.startswith("fleet: the run's logs: http://127.0.0.1:"), err
    run_id = link.rsplit("/runs/flow-run/", 1)[1]
    assert failed_run_state(run_id) == "Failed"
    code, out, _ = cli(capsys, fleet, "health", "mt-a", "--json")
    assert code == 1, out  # not healthy
    assert json.loads(out)["mt-a"]["result"]["hardware_errors"] == ["overload"]

    before = count_flow_runs()
    code, out, err = cli(capsys, fleet, "recover", "mt-a", "--json")
    assert code == 0, err
    health = json.loads(out.strip().splitlines()[-1])["result"]
    assert health["ok"] is True and health["hardware_errors"] == [], health
    assert health["action"] == "reboot-resort"
    assert count_flow_runs() == before + 2  # the parent run and its reboot-resort device run
    assert lock_free("mt-a")

    assert client.activate_hotel("mt-a", "C")["hotel"] == "C"
    code, out, _ = cli(capsys, fleet, "health")
    assert code == 0, out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert rows == {"mt-a": "ok", "mt-b": "ok"}, out


def test_recover_refuses_an_estopped_resort_and_moves_nothing(fleet, client) -> None:
    client.estop(["mt-b"], reason="test")
    try:
        wait_for(
            lambda: {s.name: s for s in client.status()}["mt-b"].estopped, 20, 0.2, "e-stopped"
        )
        writes_before = len(fleet.emulators["mt-b"].writes())
        with pytest.raises(DeviceSelectionError, match=r"mt-b is not available: e-stopped \(clear"):
            client.recover("mt-b")
        assert len(fleet.emulators["mt-b"].writes()) == writes_before  # no torque switched on
        assert lock_free("mt-b")
        # the stop is still latched
        assert {s.name: s for s in client.status()}["mt-b"].estopped
    finally:
        client.estop_clear(["mt-b"])
    wait_for(lambda: not {s.name: s for s in client.status()}["mt-b"].estopped, 20, 0.2, "cleared")


def test_set_speed_changes_the_time_of_later_moves(fleet, client, capsys) -> None:
    client.go_home("mt-b")
    fast = client.move_to_angle("mt-b", 90.0)["duration"]  # 270 deg/s: ~0.33 s
    since = time.time()
    code, out, err = cli(capsys, fleet, "speed", "mt-b", "90", "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])["result"]
    assert result["speed"] == pytest.approx(90.0, rel=0.02), result
    try:
        assert [w["name"] for w in fleet.emulators["mt-b"].writes() if w["t"] >= since] == [
            "profile_acceleration",
            "profile_velocity",
        ]
        wait_for(lambda: speed_of(client, "mt-b") == 90.0, 20, 0.2, "status shows 90 deg/s")
        code, out, _ = cli(capsys, fleet, "status")
        assert code == 0
        assert {line.split()[0]: line.split()[6] for line in out.splitlines()[1:]} == {
            "mt-a": "270",
            "mt-b": "90*",  # changed from the inventory's speed
        }, out
        slow = client.go_home("mt-b")["duration"]  # 90 deg at 90 deg/s: ~1 s
        assert slow == pytest.approx(1.0, rel=0.15), (fast, slow)
        assert slow > 2.5 * fast, (fast, slow)
    finally:
        client.set_speed("mt-b", 270.0)
    assert client.move_to_angle("mt-b", 90.0)["duration"] == pytest.approx(fast, rel=0.3)
    wait_for(lambda: speed_of(client, "mt-b") == 270.0, 20, 0.2, "status shows 270 deg/s")
    assert lock_free("mt-b")


def test_bad_speed_requests_fail_before_anything_is_queued(fleet, client, capsys) -> None:
    before = count_flow_runs()
    with pytest.raises(
        PlanError, match=r"speed: 0 deg/s is out of range; allowed 0 < speed <= 270"
    ):
        client.set_speed("mt-a", 0)
    with pytest.raises(PlanError, match=r"acceleration: -1 deg/s\^2 is out of range"):
        client.set_speed("mt-a", 90, acceleration=-1)
    with pytest.raises(
        PlanError,
        match=r"a full-turn move would take 18.0 s at 20 deg/s, longer than mt-a's move_timeout "
        r"of 15 s",
    ):
        client.set_speed("mt-a", 20)
    with pytest.raises(PlanError, match="unknown resort 'mt-z'"):
        client.set_speed("mt-z", 90)

    code, _, err = cli(capsys, fleet, "speed", "mt-a", "1000")
    assert code == 2
    assert err.strip() == (
        "fleet: error: speed: 1000 deg/s is out of range; allowed 0 < speed <= 270 deg/s"
    )
    with pytest.raises(SystemExit) as exc:
        cli(capsys, fleet, "speed", "mt-a", "fast")
    assert exc.value.code == 2
    assert "DEG_S must be a number of degrees per second, got 'fast'" in capsys.readouterr().err
    code, _, err = cli(capsys, fleet, "recover", "mt-z")
    assert code == 2, err
    assert "unknown resort 'mt-z'" in err and "Traceback" not in err
    code, _, err = cli(capsys, fleet, "health", "mt-z")
    assert code == 2, err
    assert count_flow_runs() == before


def test_maintenance_runs_under_a_reservation_and_waits_for_a_held_lock(fleet, client) -> None:
    other = FleetClient(fleet.inventory_path, lock_timeout=1)
    with client.reserve("mt-a") as held:
        with pytest.raises(DeviceBusyError, match="mt-a"):
            other.recover("mt-a")  # another scheduler cannot reboot a resort held by us
        assert held.set_speed(135.0)["speed"] == pytest.approx(135.0)
        rebooted = held.recover()
        assert rebooted["ok"] is True, rebooted
        wait_for(lambda: speed_of(client, "mt-a") == 135.0, 20, 0.2, "speed kept by the reboot")
        assert held.activate_hotel("B")["hotel"] == "B"
    assert lock_free("mt-a")
    client.set_speed("mt-a", 270.0)
    wait_for(lambda: speed_of(client, "mt-a") == 270.0, 20, 0.2, "speed restored")
