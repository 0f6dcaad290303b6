"""Batches end to end: `fleet batch` and `FleetClient.batch` on three emulated resorts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fleet.cli import main as fleet_main
from fleet.client import FleetClient
from tests.support.fleet_harness import start_fleet

pytestmark = pytest.mark.orchestration

TICKS_PER_DEG = 4096 / 360.0


@pytest.fixture(scope="module")
def fleet(prefect_server, tmp_path_factory):
    fleet = start_fleet(Path(tmp_path_factory.mktemp("batch")), "bb", 3, instant=True)
    yield fleet
    fleet.stop()


def count_flow_runs() -> int:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.count_flow_runs()


def goal_angles(fleet, resort: str, since: float) -> list[float]:
    """Goals a resort's motor was commanded to after `since`, in degrees, in write order (a goal
    written with torque off is the hold before torque-on, not a move)."""
    return [
        round(w["value"] / TICKS_PER_DEG)
        for w in fleet.emulators[resort].writes()
        if w["t"] >= since and w["name"] == "goal_position" and w["torque"]
    ]


def test_thirty_operations_over_three_resorts_keep_per_resort_order(fleet) -> None:
    import time

    # per resort: ten hotels, consecutive ones differ and the first is not A (where agents start)
    sequences = {"bb-a": "BCDACBDABD", "bb-b": "CDABDCABCA", "bb-c": "DABCBADCDB"}
    operations = [
        {"resort": resort, "action": "activate_hotel", "hotel": sequences[resort][step]}
        for step in range(10)
        for resort in ("bb-a", "bb-b", "bb-c")
    ]
    progress: list[tuple[int, str]] = []
    start = time.time()
    report = FleetClient(fleet.inventory_path).batch(
        operations, max_concurrency=3, on_progress=lambda r: progress.append((r.index, r.state))
    )
    assert [r.state for r in report.results] == ["Completed"] * 30, report.failed
    assert [r.index for r in report.results] == list(range(30))
    assert all(r.flow_run_id for r in report.results)
    assert {i for i, s in progress if s == "Completed"} == set(range(30))
    for resort, hotels in sequences.items():
        assert goal_angles(fleet, resort, start) == [90 * "ABCD".index(h) for h in hotels]
        done = [r.result["hotel"] for r in report.results if r.resort == resort]
        assert done == list(hotels)


def test_cli_batch_json_output_and_selector(fleet, tmp_path, capsys) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "operations": [
                    {"resort": "bb-a", "action": "move_to_angle", "angle": 30},
                    {"resort": "bb-b", "action": "go_home"},
                    {"selector": {"hotel": "C"}, "action": "activate_hotel", "hotel": "C"},
                ]
            }
        )
    )
    code = fleet_main(
        [
            "batch",
            str(plan),
            "--json",
            "--max-concurrency",
            "2",
            "--inventory",
            str(fleet.inventory_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    results = json.loads(out)["results"]
    assert [r["action"] for r in results] == ["move_to_angle", "go_home", "activate_hotel"]
    assert [r["state"] for r in results] == ["Completed"] * 3
    assert set(results[0]) == {"resort", "action", "state", "duration", "error"}
    assert results[2]["resort"] in {"bb-a", "bb-b", "bb-c"}


def test_cli_batch_prints_a_table(fleet, tmp_path, capsys) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"operations": [{"resort": "bb-c", "action": "go_home"}]}))
    assert fleet_main(["batch", str(plan), "--inventory", str(fleet.inventory_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["#", "operation", "resort", "state", "duration", "error"]
    assert "go_home on bb-c" in out
    assert "1 of 1 operations completed" in out


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("operations: [", "not valid YAML"),
        ("operations:\n  - {resort: bb-a, action: fly}\n", "operations[0].action"),
        (
            "operations:\n  - {resort: bb-a, action: go_home}\n"
            "  - {resort: bb-z, action: go_home}\n",
            "operations[1].resort: unknown resort 'bb-z'",
        ),
        (
            "operations:\n  - {resort: bb-a, action: activate_hotel, hotel: Q}\n",
            "operations[0].hotel: 'Q' is not a hotel of bb-a",
        ),
        (
            "operations:\n  - {resort: bb-a, action: move_to_angle, angle: 720}\n",
            "angle 720 is out of range",
        ),
    ],
)
def test_bad_plans_fail_before_anything_is_queued(fleet, tmp_path, capsys, plan, message) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(plan)
    before = count_flow_runs()
    assert fleet_main(["batch", str(path), "--inventory", str(fleet.inventory_path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert count_flow_runs() == before


def test_fail_fast_skips_the_rest(fleet) -> None:
    client = FleetClient(fleet.inventory_path, lock_timeout=1.0)
    # hold bb-a so its first operation times out on the lock; with fail_fast nothing else starts
    with client.reserve("bb-a"):
        report = FleetClient(fleet.inventory_path, lock_timeout=1.0).batch(
            [
                {"resort": "bb-a", "action": "go_home"},
                {"resort": "bb-a", "action": "activate_hotel", "hotel": "B"},
            ],
            max_concurrency=1,
            fail_fast=True,
        )
    states = [r.state for r in report.results]
    assert states == ["Failed", "Skipped"], report.results
    assert "resort busy: bb-a held by" in (report.results[0].error or "")
