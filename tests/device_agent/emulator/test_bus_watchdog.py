"""The emulated XM430's Bus Watchdog: expiry, what restarts it, power cycle."""

from __future__ import annotations

import pytest
from dynamixel_sdk import COMM_RX_TIMEOUT, COMM_SUCCESS

from device_agent import control_table as ct
from device_agent.emulator.servo import REBOOT_SILENCE
from tests.device_agent.emulator.support import RANGE, Bus


def test_bus_watchdog_expiry_stops_the_motor_where_it_was_at_that_instant(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)  # 1562.5 pulses/s
    timed.ok("bus_watchdog", 10)  # 200 ms
    timed.ok("goal_position", 4000)  # the last packet
    clock.advance(1.0)
    stats = timed.model.stats()  # asked late: the stop happened at 0.2 s
    assert (stats["moving"], stats["torque"], stats["bus_watchdog"]) == (False, True, -1)
    assert stats["position"] == pytest.approx(312.5, abs=1)
    assert timed.ph.read1ByteTxRx(timed.port, 1, 98) == (0xFF, COMM_SUCCESS, 0)
    assert timed.value("bus_watchdog") == -1
    for name in ("goal_position", "goal_current", "goal_velocity", "goal_pwm"):
        assert timed.write(name, 100) == (COMM_SUCCESS, RANGE), name
    assert timed.write("bus_watchdog", 5) == (COMM_SUCCESS, RANGE)
    timed.ok("profile_velocity", 200)  # other items stay writable
    assert timed.value("present_position") == pytest.approx(312.5, abs=1)
    assert timed.value("torque_enable") == 1  # holding
    timed.ok("bus_watchdog", 0)  # clears
    timed.ok("goal_position", 1000)
    clock.advance(1.0)
    assert timed.value("present_position") == 1000


def test_bus_watchdog_counts_only_with_torque_and_every_packet_restarts_it(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("bus_watchdog", 5)  # 100 ms
    clock.advance(10.0)
    assert timed.value("bus_watchdog") == 5  # torque off: not counting
    timed.ok("torque_enable", 1)
    for _ in range(10):
        clock.advance(0.09)
        assert timed.ph.ping(timed.port, 1)[1] == COMM_SUCCESS
    clock.advance(0.09)
    timed.ph.write1ByteTxOnly(timed.port, ct.BROADCAST_ID, 65, 1)  # broadcast counts
    clock.advance(0.09)
    assert timed.value("bus_watchdog") == 5
    clock.advance(0.09)
    assert timed.ph.ping(timed.port, 2)[1] == COMM_RX_TIMEOUT  # another servo's packet does not
    clock.advance(0.02)
    assert timed.model.stats()["bus_watchdog"] == -1


def test_power_cycle_disarms_an_expired_watchdog(timed: Bus) -> None:
    clock = timed.fake
    timed.ok("torque_enable", 1)
    timed.ok("bus_watchdog", 1)
    clock.advance(0.1)
    assert timed.value("bus_watchdog") == -1
    timed.model.inject("power-cycle")
    clock.advance(REBOOT_SILENCE)
    assert timed.value("bus_watchdog") == 0
    timed.ok("goal_position", 100)
