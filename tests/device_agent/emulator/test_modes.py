"""The emulated XM430's operating modes and Drive Mode: position limits, mode 5's cap, bit 3."""

from __future__ import annotations

import time

import pytest
from dynamixel_sdk import COMM_SUCCESS

from device_agent import control_table as ct
from tests.device_agent.emulator.support import ALERT, RANGE, Bus, make_bus


@pytest.mark.parametrize("mode", [4, 5])
def test_position_limits_do_not_apply_in_modes_4_and_5(mode: int) -> None:
    bus = make_bus()
    bus.ok("max_position_limit", 3000)
    bus.ok("operating_mode", mode)
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", 1_048_575)
    assert bus.value("present_position") == 1_048_575
    bus.ok("goal_position", -1_048_575)
    assert bus.value("present_position") == -1_048_575
    assert bus.write("goal_position", 1_048_576) == (COMM_SUCCESS, RANGE)


def test_mode_5_never_draws_more_than_goal_current(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("operating_mode", 5)
    timed.ok("torque_enable", 1)
    timed.ok("goal_current", -110)  # the cap is the magnitude
    timed.ok("profile_velocity", 100)
    timed.ok("profile_acceleration", 20)
    timed.ok("goal_position", 2048)
    currents = []
    for _ in range(30):
        clock.advance(0.1)
        currents.append(timed.value("present_current"))
    assert max(currents) == 100  # accelerating
    assert all(abs(c) <= 110 for c in currents)
    assert (timed.value("moving"), timed.value("present_position")) == (0, 2048)
    timed.ok("goal_current", 2)
    assert timed.value("present_current") == 2  # holding, capped
    timed.model.inject("stall")
    timed.ok("goal_current", 300)
    timed.ok("goal_position", 0)
    clock.advance(5.0)
    assert timed.value("present_current") == -300  # the stall's 900, capped


def test_mode_5_goal_current_below_the_profile_need_is_a_jam(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("operating_mode", 5)
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)
    timed.ok("profile_acceleration", 20)  # a ramp: the model needs 100 units
    timed.ok("goal_current", 90)
    timed.ok("goal_position", 2048)
    clock.advance(5.0)
    assert timed.value("present_position") == 0  # cannot leave its start
    assert (timed.value("moving"), timed.value("present_velocity")) == (1, 0)
    status = timed.value("moving_status")
    assert status & ct.MOVING_STATUS_FOLLOWING_ERROR
    assert not status & ct.MOVING_STATUS_IN_POSITION
    assert timed.value("present_current") == 90
    clock.advance(10.0)
    assert timed.value("hardware_error_status") == 0  # 90 <= 50 % of Current Limit
    assert timed.model.stats()["faults"] == []  # not an injected fault
    timed.ok("goal_current", 300)  # enough: it sets off, planned from rest
    clock.advance(10.0)
    assert (timed.value("moving"), timed.value("present_position")) == (0, 2048)
    timed.ok("goal_position", 0)
    clock.advance(0.5)
    mid = timed.value("present_position")
    timed.ok("goal_current", 50)  # lowered mid-move: the shaft stops there
    clock.advance(5.0)
    assert timed.value("present_position") == mid
    assert timed.value("present_current") == -50


def test_drive_mode_bit_3_turns_torque_on_with_a_goal_write(bus: Bus) -> None:
    bus.ok("drive_mode", ct.DRIVE_MODE_TORQUE_ON_BY_GOAL)
    bus.ok("goal_position", 1000)
    assert bus.value("torque_enable") == 1
    assert bus.value("present_position") == 1000


def test_torque_on_is_refused_while_a_shutdown_error_is_latched(bus: Bus) -> None:
    bus.ok("drive_mode", ct.DRIVE_MODE_TORQUE_ON_BY_GOAL)
    bus.model.inject("overload")
    assert bus.write("torque_enable", 1) == (COMM_SUCCESS, ALERT)
    assert bus.read("torque_enable") == (0, COMM_SUCCESS, ALERT)
    assert bus.write("goal_position", 1000) == (COMM_SUCCESS, ALERT)  # nor by Drive Mode bit 3
    assert bus.read("torque_enable") == (0, COMM_SUCCESS, ALERT)
    assert bus.read("present_position") == (0, COMM_SUCCESS, ALERT)
    bus.ph.reboot(bus.port, 1)
    deadline = time.monotonic() + 2
    while bus.ph.ping(bus.port, 1)[1] != COMM_SUCCESS:
        assert time.monotonic() < deadline
    bus.ok("torque_enable", 1)  # REBOOT clears it
    assert bus.value("torque_enable") == 1


def test_drive_mode_and_operating_mode_accept_only_defined_values(bus: Bus) -> None:
    for bad in (0x02, 0x10, 0x0F, 0x80):
        assert bus.write("drive_mode", bad) == (COMM_SUCCESS, RANGE), bad
    bus.ok("drive_mode", ct.DRIVE_MODE_BITS)
    for bad in (2, 6, 15, 17, 255):
        assert bus.write("operating_mode", bad) == (COMM_SUCCESS, RANGE), bad
    for mode in ct.OPERATING_MODES:
        bus.ok("operating_mode", mode)
    assert bus.value("operating_mode") == ct.MODE_PWM
