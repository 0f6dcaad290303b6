"""Batch plans: file format, malformed plans and validation against the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.errors import PlanError
from fleet.core.inventory import load_inventory
from fleet.core.plan import (
    Operation,
    full_turn_time,
    load_plan,
    parse_plan,
    validate_plan,
    validate_speed,
)
from fleet.core.selection import Selector

DEMO = Path(__file__).resolve().parents[2] / "inventory" / "demo.yaml"


@pytest.fixture(scope="module")
def inv():
    return load_inventory(DEMO)


def test_yaml_plan_loads_with_resort_and_selector(tmp_path: Path, inv) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "operations:\n"
        "  - {resort: resort-a, action: activate_hotel, hotel: B}\n"
        "  - {selector: {labels: [reader-side], hotel: E}, action: activate_hotel, hotel: E}\n"
        "  - {resort: resort-b, action: move_to_angle, angle: 90}\n"
        "  - {resort: resort-c, action: go_home}\n"
    )
    plan = load_plan(path)
    validate_plan(inv, plan)
    assert [op.action for op in plan.operations] == [
        "activate_hotel",
        "activate_hotel",
        "move_to_angle",
        "go_home",
    ]
    assert plan.operations[1].selector == Selector(labels=("reader-side",), hotel="E")
    assert plan.operations[2].parameters() == {"angle": 90.0}
    assert plan.operations[0].describe() == "activate_hotel B on resort-a"


def test_json_plan_and_bare_list(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"operations": [{"resort": "resort-a", "action": "go_home"}]}')
    assert load_plan(path).operations[0].resort == "resort-a"
    assert parse_plan([{"resort": "resort-b", "action": "go_home"}]).operations[0].resort == (
        "resort-b"
    )


def test_selector_hotel_defaults_to_the_hotel_to_activate() -> None:
    op = Operation(selector=Selector(labels=("cold",)), action="activate_hotel", hotel="C")
    assert op.effective_selector() == Selector(labels=("cold",), hotel="C")


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([{"resort": "resort-a", "action": "spin"}], "operations[0].action: Input should be"),
        ([{"resort": "resort-a"}], "operations[0].action: Field required"),
        ([{"action": "go_home"}], "operations[0]: give exactly one of 'resort' or 'selector'"),
        (
            [{"resort": "resort-a", "selector": {"labels": ["x"]}, "action": "go_home"}],
            "give exactly one of 'resort' or 'selector'",
        ),
        ([{"resort": "resort-a", "action": "activate_hotel"}], "activate_hotel needs 'hotel'"),
        ([{"resort": "resort-a", "action": "move_to_angle"}], "move_to_angle needs 'angle'"),
        (
            [{"resort": "resort-a", "action": "move_to_angle", "angle": 400}],
            "angle 400 is out of range; allowed 0 <= angle < 360 degrees",
        ),
        (
            [{"resort": "resort-a", "action": "move_to_angle", "angle": -1}],
            "angle -1 is out of range",
        ),
        ([{"resort": "resort-a", "action": "go_home", "speed": 3}], "operations[0].speed: Extra"),
        ([{"resort": "resort-a", "action": "go_home", "angle": 3}], "go_home takes no 'angle'"),
        ([], "operations: Tuple should have at least 1 item"),
    ],
)
def test_malformed_plans_name_the_operation_and_field(operations, expected) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan({"operations": operations}, source="p.yaml")
    assert any(expected in line for line in info.value.problems), info.value.problems
    assert all(line.startswith("p.yaml: ") for line in info.value.problems)


def test_plan_file_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan"):
        load_plan(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("operations: [\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(PlanError, match="expected a mapping with 'operations:'"):
        load_plan(scalar)


def test_validation_reports_every_problem_with_its_index(inv) -> None:
    plan = parse_plan(
        [
            {"resort": "resort-a", "action": "go_home"},
            {"resort": "resort-z", "action": "go_home"},
            {"resort": "resort-a", "action": "activate_hotel", "hotel": "F"},
            {"selector": {"labels": ["nowhere"]}, "action": "go_home"},
            {"selector": {"labels": ["cold"]}, "action": "activate_hotel", "hotel": "E"},
        ]
    )
    with pytest.raises(PlanError) as info:
        validate_plan(inv, plan, source="plan.yaml")
    lines = info.value.problems
    assert len(lines) == 4, lines
    assert lines[0].startswith("plan.yaml: operations[1].resort: unknown resort 'resort-z'")
    assert "resort-a, resort-b, resort-c" in lines[0]
    assert lines[1] == (
        "plan.yaml: operations[2].hotel: 'F' is not a hotel of resort-a; allowed: A, B, C, D"
    )
    assert lines[2].startswith("plan.yaml: operations[3].selector: no active resort")
    assert "labels=[nowhere]" in lines[2]
    assert "labels=[cold] hotel=E" in lines[3]


@pytest.mark.parametrize(
    ("speed", "acceleration", "seconds"),
    [
        (180.0, 0.0, 2.0),  # rectangular: 360 / 180
        (90.0, 90.0, 5.0),  # trapezoid: 360 / 90 + 90 / 90
        (270.0, 100.0, 2 * (360 / 100) ** 0.5),  # triangle: the ramps meet before 270 deg/s
    ],
)
def test_full_turn_time_follows_the_profile(speed, acceleration, seconds) -> None:
    assert full_turn_time(speed, acceleration) == pytest.approx(seconds)


def test_speed_requests_are_checked_against_the_resort(inv) -> None:
    resort = inv.resort("resort-a")
    validate_speed(inv, "resort-a", 270.0)
    validate_speed(inv, "resort-a", 90.0, acceleration=0.0)
    with pytest.raises(PlanError) as exc:
        validate_speed(inv, "resort-a", float("nan"), acceleration=20000.0)
    assert str(exc.value).splitlines() == [
        "speed: nan deg/s is out of range; allowed 0 < speed <= 270 deg/s",
        "acceleration: 20000 deg/s^2 is out of range; allowed 0 <= acceleration <= 10000 "
        "deg/s^2 (0 = rectangular profile)",
    ]
    slow = 360.0 / resort.move_timeout / 2  # a full turn would need twice the move timeout
    with pytest.raises(
        PlanError, match=rf"longer than resort-a's move_timeout of {resort.move_timeout:g} s"
    ):
        validate_speed(inv, "resort-a", slow, acceleration=0.0)
    with pytest.raises(PlanError, match=r"^resort: unknown resort 'resort-z'"):
        validate_speed(inv, "resort-z", 90.0)
