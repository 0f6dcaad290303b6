"""Hotel-angle math: offsets, both rotation directions, 360-degree wrap, goals, profile time."""

from __future__ import annotations

import pytest

from device_agent.geometry import (
    angle_difference,
    goal_ticks,
    motor_angle,
    profile_time,
    resort_angle,
)
from tests.device_agent.driver_support import make_config, make_rig


@pytest.mark.parametrize(
    ("offset", "hotels", "expected"),
    [
        (0.0, ("A", "B", "C", "D"), [0.0, 90.0, 180.0, 270.0]),
        (10.0, ("A", "B", "C", "D"), [10.0, 100.0, 190.0, 280.0]),
        (-30.0, ("A", "B", "C"), [330.0, 90.0, 210.0]),
        (350.0, ("A", "B"), [350.0, 170.0]),
    ],
)
def test_hotel_angles_with_offsets(offset: float, hotels: tuple[str, ...], expected: list) -> None:
    config = make_config(offset_angle=offset, hotels=hotels)
    assert [config.hotel_angle(h) for h in hotels] == pytest.approx(expected)


_ANGLES = [0.0, 0.05, 45.0, 90.0, 179.9, 180.0, 270.0, 359.96, -90.0, 725.0]


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("angle", _ANGLES)
def test_goal_ticks_stay_in_single_turn_range_and_round_trip(direction: int, angle: float) -> None:
    ticks = goal_ticks(angle, direction)
    assert 0 <= ticks <= 4095
    back = resort_angle(ticks * 360.0 / 4096, direction)
    assert abs(angle_difference(back, angle)) <= 360.0 / 4096 / 2 + 1e-9


def test_reverse_direction_mirrors_the_motor_angle() -> None:
    assert motor_angle(90.0, 1) == 90.0
    assert motor_angle(90.0, -1) == 270.0
    assert motor_angle(0.0, -1) == 0.0
    assert goal_ticks(90.0, -1) == 3072
    assert goal_ticks(359.99, 1) == 0  # rounds to 4096 -> folded back to 0, never 4096


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [(359.5, 0.5, -1.0), (0.5, 359.5, 1.0), (180.0, 0.0, -180.0), (10.0, 350.0, 20.0), (5, 5, 0)],
)
def test_angle_difference_wraps(a: float, b: float, diff: float) -> None:
    assert angle_difference(a, b) == pytest.approx(diff)


def test_resort_angle_never_returns_360() -> None:
    assert resort_angle(-1e-15, 1) == 0.0
    assert 0.0 <= resort_angle(4095 * 360 / 4096, -1) < 360.0


@pytest.mark.parametrize(
    ("pv", "pa", "ms"),
    [(100, 0, 655), (50, 0, 1311), (200, 0, 328), (100, 100, 719), (100, 20, 975), (50, 5, 1951)],
)
def test_profile_time_matches_the_manual_for_90_degrees(pv: int, pa: int, ms: int) -> None:
    assert profile_time(1024, pv, pa) * 1000 == pytest.approx(ms, abs=1.0)


def test_triangular_profile_for_a_short_move() -> None:
    # 64*PV/PA = 640 ms to reach PV 100 at PA 10, which would cover 1000 pulses: 100 is too few.
    assert profile_time(100, 100, 10) == pytest.approx(0.128 * (100 / 10) ** 0.5)


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("offset", [0.0, 22.5, -40.0])
def test_driver_reaches_every_hotel_in_both_directions(direction: int, offset: float) -> None:
    rig = make_rig(rotation_direction=direction, offset_angle=offset)
    for hotel in ("A", "B", "C", "D"):
        result = rig.driver.activate_hotel(hotel)
        assert result.hotel == hotel
        assert rig.driver.request_active_hotel() == hotel
        goal = rig.model.read_item("goal_position")
        assert 0 <= goal <= 4095
        motor = goal * 360.0 / 4096
        expected = (direction * rig.driver.config.hotel_angle(hotel)) % 360.0
        assert abs(angle_difference(motor, expected)) < 0.05
