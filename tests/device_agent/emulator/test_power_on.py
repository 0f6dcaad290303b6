"""The emulated XM430's power-on state: power cycle, REBOOT, goal at torque-on, Startup Config."""

from __future__ import annotations

import pytest
from dynamixel_sdk import COMM_RX_TIMEOUT, COMM_SUCCESS

from device_agent import control_table as ct
from device_agent.emulator.servo import REBOOT_SILENCE
from tests.device_agent.emulator.support import ALERT, Bus, make_bus


def test_power_cycle_resets_ram_like_reboot_and_keeps_eeprom(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("operating_mode", 4)
    timed.ok("homing_offset", 100)
    timed.ok("torque_enable", 1)
    timed.ok("led", 1)
    timed.ok("bus_watchdog", 127)  # 2.54 s: does not expire during the move below
    timed.ok("profile_velocity", 200)  # 3125 pulses/s
    timed.ok("goal_current", 500)
    timed.ok("goal_position", 8000)
    clock.advance(2.0)
    timed.model.inject("encoder")  # an error outside Shutdown: alert, torque stays on
    assert timed.read("present_position") == (6350, COMM_SUCCESS, ALERT)  # 100 + 2 s x 3125
    tick_before = timed.value("realtime_tick")
    timed.model.inject("power-cycle")
    assert timed.ph.ping(timed.port, 1)[1] == COMM_RX_TIMEOUT  # booting: silent
    stats = timed.model.stats()
    assert (stats["silent"], stats["torque"], stats["moving"]) == (True, False, False)
    clock.advance(REBOOT_SILENCE)
    assert timed.ph.ping(timed.port, 1) == (1020, COMM_SUCCESS, 0)  # error status cleared
    ram = {
        name: timed.value(name)
        for name in (
            "torque_enable",
            "led",
            "bus_watchdog",
            "profile_velocity",
            "profile_acceleration",
            "hardware_error_status",
            "goal_position",
            "goal_current",
            "goal_pwm",
        )
    }
    assert ram == {
        "torque_enable": 0,
        "led": 0,
        "bus_watchdog": 0,
        "profile_velocity": 0,
        "profile_acceleration": 0,
        "hardware_error_status": 0,
        "goal_position": 0,
        "goal_current": 1193,
        "goal_pwm": 885,
    }
    assert timed.value("operating_mode") == 4  # EEPROM kept
    assert timed.value("homing_offset") == 100
    assert timed.value("present_position") == 6250 % 4096 + 100  # the turn count is lost
    tick = timed.value("realtime_tick")
    assert tick == pytest.approx(400, abs=1)  # restarted at the power cycle
    assert tick < tick_before
    assert timed.model.writes[-1] == {
        "t": timed.model.writes[-1]["t"],
        "motor_id": 1,
        "addr": None,
        "name": "power-cycle",
        "value": None,
        "moving": True,
    }
    clock.advance(5.0)
    assert timed.value("present_position") == 2254  # stopped where the shaft was


def test_goal_reads_0_after_reboot_and_torque_on_drives_there(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.ok("goal_position", 3000)  # PV 0: a step at the Velocity Limit, 3125 pulses/s
    clock.advance(2.0)
    assert timed.ph.reboot(timed.port, 1) == (COMM_SUCCESS, 0)
    clock.advance(REBOOT_SILENCE)
    assert timed.value("goal_position") == 0
    assert timed.value("present_position") == 3000
    timed.ok("torque_enable", 1)  # no silent goal = present copy: it heads for 0
    clock.advance(0.1)
    assert timed.value("moving") == 1
    assert 2600 < timed.value("present_position") < 2800
    assert timed.value("present_velocity") < 0
    clock.advance(2.0)
    assert timed.value("present_position") == 0


def test_torque_on_holds_when_goal_was_set_to_present_first(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.ok("goal_position", 3000)
    clock.advance(2.0)
    timed.model.inject("power-cycle")
    clock.advance(REBOOT_SILENCE)
    timed.ok("goal_position", timed.value("present_position"))  # what a safe driver does
    timed.ok("torque_enable", 1)
    clock.advance(1.0)
    assert (timed.value("present_position"), timed.value("moving")) == (3000, 0)
    assert timed.value("moving_status") & ct.MOVING_STATUS_IN_POSITION


def test_torque_on_in_mode_3_reframes_then_drives_to_the_goal_within_the_limits() -> None:
    bus = make_bus()
    bus.ok("operating_mode", 4)
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", 5000)
    bus.ok("torque_enable", 0)
    bus.ok("operating_mode", 3)  # re-frames: 5000 -> 904
    assert bus.value("present_position") == 904
    assert bus.value("goal_position") == 5000  # outside mode 3's limits, kept in the register
    bus.ok("torque_enable", 1)  # drives there, clamped to Max Position Limit
    assert bus.value("present_position") == 4095


@pytest.mark.parametrize("mode", [4, 5])
def test_torque_on_in_modes_4_and_5_keeps_the_turn_count(mode: int) -> None:
    bus = make_bus()
    bus.ok("operating_mode", mode)
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", 10000)
    bus.ok("torque_enable", 0)
    bus.ok("torque_enable", 1)
    assert bus.value("present_position") == 10000  # not re-framed: goal = present, no move
    bus.ok("torque_enable", 0)
    bus.ok("operating_mode", 3)  # a change to position mode re-frames
    assert bus.value("present_position") == 10000 % 4096


def test_startup_configuration_turns_torque_on_at_boot(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("startup_configuration", ct.STARTUP_TORQUE_ON)
    timed.ok("torque_enable", 1)
    timed.ok("goal_position", 1000)
    clock.advance(1.0)
    assert timed.ph.reboot(timed.port, 1) == (COMM_SUCCESS, 0)
    assert timed.model.stats()["torque"] is False  # booting
    clock.advance(REBOOT_SILENCE)
    assert timed.value("torque_enable") == 1
    # strict: the boot's torque-on drives to the power-on Goal Position 0
    assert timed.value("goal_position") == 0
    assert timed.value("moving") == 1
    clock.advance(2.0)
    assert timed.value("present_position") == 0
    timed.model.inject("power-cycle")
    clock.advance(REBOOT_SILENCE)
    assert timed.value("torque_enable") == 1
