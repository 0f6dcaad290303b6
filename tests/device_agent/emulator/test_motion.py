"""The emulated XM430's motion: the profile formula, timed and instant moves, torque off."""

from __future__ import annotations

import time

import pytest

from device_agent.emulator.physics import plan_profile
from tests.device_agent.emulator.support import Bus, make_bus


@pytest.mark.parametrize(
    ("pv", "pa", "ms", "kind"),
    [
        (100, 0, 655.36, 0x10),
        (50, 0, 1310.72, 0x10),
        (200, 0, 327.68, 0x10),
        (100, 100, 719.36, 0x30),
        (100, 20, 975.36, 0x30),
        (100, 10, 1295.36, 0x30),
        (50, 5, 1950.72, 0x30),
    ],
)
def test_profile_matches_the_manual_formula(pv: int, pa: int, ms: float, kind: int) -> None:
    prof = plan_profile(0.0, 1024.0, pv, pa, 0.0, vmax=1023)
    assert prof.t3 * 1000 == pytest.approx(ms, abs=0.01)
    assert prof.kind == kind
    assert prof.at(prof.t3 / 2)[0] == pytest.approx(512, abs=0.01)
    assert prof.at(prof.t3)[0] == 1024.0


def test_triangle_profile_when_too_short_to_reach_velocity() -> None:
    prof = plan_profile(0.0, 100.0, 100, 10, 0.0, vmax=1023)
    assert prof.kind == 0x20
    assert prof.t3 * 1000 == pytest.approx(128 * (100 / 10) ** 0.5)
    assert prof.v_peak / 1000 * 64 == pytest.approx((10 * 100) ** 0.5)  # sqrt(PA*dPos) units


def test_time_based_profile_lasts_profile_velocity_ms(timed: Bus) -> None:
    assert timed.clock is not None
    timed.ok("drive_mode", 0x04)
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 800)  # ms for the whole move
    timed.ok("profile_acceleration", 200)  # ms accelerating
    timed.ok("goal_position", 3000)
    timed.clock.advance(0.4)
    assert timed.value("present_position") == pytest.approx(1500, abs=2)
    assert timed.value("moving_status") & 0x30 == 0x30
    timed.clock.advance(0.401)
    assert (timed.value("moving"), timed.value("present_position")) == (0, 3000)


def test_timed_move_follows_the_profile(timed: Bus) -> None:
    assert timed.clock is not None
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)
    timed.ok("goal_position", 1024)
    timed.clock.advance(0.3277)
    assert timed.value("moving") == 1
    assert timed.value("present_position") == pytest.approx(512, abs=2)
    assert timed.value("present_velocity") == 100
    assert timed.value("moving_status") == 0x10 | 0x02  # rectangle, profile ongoing
    assert timed.value("present_current") > 0
    assert 30 <= timed.value("present_temperature") <= 40
    assert timed.value("present_input_voltage") == pytest.approx(120, abs=2)
    timed.clock.advance(0.33)
    assert timed.value("moving") == 0
    assert timed.value("present_position") == 1024
    assert timed.value("present_velocity") == 0
    assert timed.value("moving_status") == 0x10 | 0x01  # in position


def test_move_back_has_negative_velocity_and_current(timed: Bus) -> None:
    assert timed.clock is not None
    timed.ok("torque_enable", 1)
    timed.ok("goal_position", 2000)  # PV 0: fast step at the velocity limit
    timed.clock.advance(2.0)
    assert timed.value("present_position") == 2000
    timed.ok("profile_velocity", 50)
    timed.ok("profile_acceleration", 10)
    timed.ok("goal_position", 1000)
    timed.clock.advance(1.0)
    assert timed.value("present_velocity") < 0
    assert timed.value("present_current") < 0
    assert timed.value("moving_status") & 0x30 == 0x30


def test_real_time_move_takes_the_physical_time() -> None:
    bus = make_bus(instant=False)
    bus.ok("torque_enable", 1)
    bus.ok("profile_velocity", 200)  # 1024 pulses: 327.68 ms
    start = time.monotonic()
    bus.ok("goal_position", 1024)
    while bus.value("moving"):  # in-process: no scheduling delay between SDK and model
        assert time.monotonic() - start < 10
        time.sleep(0.005)
    assert time.monotonic() - start >= 0.32
    assert bus.value("present_position") == 1024


def test_instant_mode_arrives_at_once(bus: Bus) -> None:
    bus.ok("torque_enable", 1)
    bus.ok("profile_velocity", 1)
    bus.ok("goal_position", 3000)
    assert bus.value("moving") == 0
    assert bus.value("present_position") == 3000


def test_torque_off_stops_motion_where_it_is(timed: Bus) -> None:
    assert timed.clock is not None
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)
    timed.ok("goal_position", 1024)
    timed.clock.advance(0.2)
    timed.ok("torque_enable", 0)
    stopped = timed.value("present_position")
    assert 200 < stopped < 400
    timed.clock.advance(5.0)
    assert timed.value("present_position") == stopped
    assert timed.value("moving") == 0
    timed.ok("goal_position", 2000)  # accepted, but no torque: no motion
    timed.clock.advance(5.0)
    assert timed.value("present_position") == stopped


def test_goal_without_torque_does_not_move(bus: Bus) -> None:
    bus.ok("goal_position", 2000)
    assert bus.value("present_position") == 0
    assert bus.model.stats()["moving"] is False


def test_drive_mode_reverse_turns_the_shaft_the_other_way(bus: Bus) -> None:
    bus.ok("drive_mode", 1)
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", 1024)
    assert bus.value("present_position") == 1024
    assert bus.model.stats()["shaft_deg"] == pytest.approx(270.0)


def test_operating_mode_change_resets_profile(bus: Bus) -> None:
    bus.ok("profile_velocity", 80)
    bus.ok("profile_acceleration", 8)
    bus.ok("goal_current", 100)
    bus.ok("goal_pwm", -200)
    bus.ok("operating_mode", 5)
    assert bus.value("profile_velocity") == 0
    assert bus.value("profile_acceleration") == 0
    assert bus.value("goal_current") == 1193  # back at Current Limit
    assert bus.value("goal_pwm") == 885  # and PWM Limit


def test_realtime_tick_advances(timed: Bus) -> None:
    assert timed.clock is not None
    first = timed.value("realtime_tick")
    timed.clock.advance(0.250)
    assert timed.value("realtime_tick") == first + 250
