"""The emulated XM430's jam: held at the cap, tripping Overload, cleared."""

from __future__ import annotations

import pytest
from dynamixel_sdk import COMM_SUCCESS

from device_agent import control_table as ct
from device_agent.emulator.servo import JAM_OVERLOAD_SECONDS
from tests.device_agent.emulator.support import ALERT, Bus


def test_jam_mid_move_holds_at_stall_current_then_trips_overload(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)  # 1562.5 pulses/s
    timed.ok("goal_position", 2048)
    clock.advance(0.2)
    timed.model.inject("jam")
    assert timed.value("present_velocity") == 0  # at once
    clock.advance(1.0)
    assert timed.value("present_position") == pytest.approx(312.5, abs=1)
    assert (timed.value("moving"), timed.value("present_velocity")) == (1, 0)
    status = timed.value("moving_status")
    assert status & ct.MOVING_STATUS_FOLLOWING_ERROR
    assert not status & ct.MOVING_STATUS_IN_POSITION
    assert timed.value("present_current") == 1193  # Current Limit, direction of travel
    assert timed.model.stats()["faults"] == ["jam"]
    clock.advance(JAM_OVERLOAD_SECONDS - 1.0 - 0.01)
    assert timed.read("hardware_error_status") == (0, COMM_SUCCESS, 0)
    clock.advance(0.02)
    assert timed.read("hardware_error_status") == (0x20, COMM_SUCCESS, ALERT)
    assert timed.read("torque_enable") == (0, COMM_SUCCESS, ALERT)
    assert timed.value("moving") == 0
    assert timed.value("present_position") == pytest.approx(312.5, abs=1)
    assert timed.model.stats()["faults"] == ["overload", "jam"]


def test_jam_overload_counts_from_the_jam_not_from_the_next_look(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.ok("goal_position", 2048)
    clock.advance(2.0)
    timed.model.inject("jam")  # at rest: the next move cannot leave 2048
    timed.ok("goal_position", 0)
    assert timed.value("present_current") == -1193  # pushing backwards
    clock.advance(60.0)  # nobody asks in between
    stats = timed.model.stats()
    assert (stats["hardware_error"], stats["torque"], stats["moving"]) == (0x20, False, False)
    assert stats["position"] == 2048


def test_jam_at_rest_blocks_the_next_move_until_clear(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.model.inject("jam")
    assert (timed.value("moving"), timed.value("present_current")) == (0, 4)  # nothing pending
    timed.ok("profile_velocity", 100)
    timed.ok("goal_position", 1024)
    clock.advance(1.0)
    assert (timed.value("present_position"), timed.value("moving")) == (0, 1)
    timed.model.inject("clear")  # re-planned from rest at 0: 655 ms from now
    clock.advance(0.3277)
    assert timed.value("present_position") == pytest.approx(512, abs=2)
    clock.advance(0.33)
    assert (timed.value("present_position"), timed.value("moving")) == (1024, 0)
    clock.advance(JAM_OVERLOAD_SECONDS)
    assert timed.value("hardware_error_status") == 0
    assert timed.model.stats()["faults"] == []


@pytest.mark.parametrize(("goal_current", "trips"), [(596, False), (597, True)])
def test_jam_in_mode_5_trips_overload_only_above_half_the_current_limit(
    timed: Bus, goal_current: int, trips: bool
) -> None:
    clock = timed.fake
    timed.ok("operating_mode", 5)
    timed.ok("torque_enable", 1)
    timed.ok("goal_current", goal_current)
    timed.ok("profile_velocity", 100)
    timed.ok("goal_position", 2048)
    clock.advance(0.2)
    timed.model.inject("jam")
    assert timed.value("present_current") == goal_current
    clock.advance(10.0)
    stats = timed.model.stats()
    assert stats["hardware_error"] == (0x20 if trips else 0)
    assert stats["torque"] is not trips
