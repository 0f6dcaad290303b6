"""The emulated XM430's injected faults: hardware errors, reboot, stall, comm, unplug, IDs."""

from __future__ import annotations

import termios
import time

import pytest
from dynamixel_sdk import COMM_RX_CORRUPT, COMM_RX_TIMEOUT, COMM_SUCCESS, PacketHandler

from device_agent import control_table as ct
from device_agent.emulator import MemoryPort, XM430Model
from tests.device_agent.emulator.support import ALERT, Bus, make_bus


@pytest.mark.parametrize(("kind", "bit"), [("overload", 0x20), ("overheat", 0x04), ("shock", 0x10)])
def test_shutdown_faults_cut_torque_and_alert_until_reboot(timed: Bus, kind: str, bit: int) -> None:
    assert timed.clock is not None
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)
    timed.ok("goal_position", 1024)
    timed.clock.advance(0.2)
    timed.model.inject(kind)
    value, result, error = timed.read("hardware_error_status")
    assert (value, result, error) == (bit, COMM_SUCCESS, ALERT)
    assert timed.read("torque_enable") == (0, COMM_SUCCESS, ALERT)
    stopped = timed.value("present_position")
    timed.clock.advance(2.0)
    assert timed.value("present_position") == stopped  # motion stopped
    assert timed.value("moving") == 0
    assert timed.write("torque_enable", 1) == (COMM_SUCCESS, ALERT)
    assert timed.value("torque_enable") == 0  # refused until REBOOT
    if kind == "overheat":
        assert timed.value("present_temperature") > 80


@pytest.mark.parametrize(("kind", "bit"), [("voltage", 0x01), ("encoder", 0x08)])
def test_faults_outside_shutdown_alert_but_keep_torque(bus: Bus, kind: str, bit: int) -> None:
    bus.ok("torque_enable", 1)
    bus.model.inject(kind)
    assert bus.read("hardware_error_status") == (bit, COMM_SUCCESS, ALERT)
    assert bus.read("torque_enable") == (1, COMM_SUCCESS, ALERT)
    if kind == "voltage":
        assert bus.value("present_input_voltage") < 95


@pytest.mark.parametrize(("kind", "bit"), [("voltage", 0x01), ("encoder", 0x08)])
def test_faults_in_a_full_shutdown_mask_cut_torque(bus: Bus, kind: str, bit: int) -> None:
    bus.ok("shutdown", ct.SHUTDOWN_ALL)
    bus.ok("torque_enable", 1)
    bus.model.inject(kind)
    assert bus.read("torque_enable") == (0, COMM_SUCCESS, ALERT)


def test_reboot_clears_errors_resets_ram_keeps_eeprom_and_position() -> None:
    bus = make_bus(instant=True)
    bus.ok("operating_mode", 4)
    bus.ok("torque_enable", 1)
    bus.ok("profile_velocity", 70)
    bus.ok("goal_position", 5000)
    bus.model.inject("overload")
    assert bus.read("torque_enable")[2] == ALERT
    assert bus.ph.reboot(bus.port, 1) == (COMM_SUCCESS, ALERT)  # answered at once
    assert bus.ph.ping(bus.port, 1)[1] == COMM_RX_TIMEOUT  # then silent while booting
    deadline = time.monotonic() + 2
    while bus.ph.ping(bus.port, 1)[1] != COMM_SUCCESS:
        assert time.monotonic() < deadline
    assert bus.read("hardware_error_status") == (0, COMM_SUCCESS, 0)
    assert bus.value("torque_enable") == 0
    assert bus.value("profile_velocity") == 0
    assert bus.value("operating_mode") == 4  # EEPROM kept
    assert bus.value("present_position") == 5000 % 4096  # single-turn absolute after power-on
    assert bus.value("goal_position") == 0  # undefined in the e-manual: 0 here
    bus.ok("torque_enable", 1)
    assert [w["name"] for w in bus.model.writes][-2:] == ["reboot", "torque_enable"]


def test_timed_reboot_is_silent_for_about_400_ms() -> None:
    bus = make_bus(instant=False)
    assert bus.ph.reboot(bus.port, 1) == (COMM_SUCCESS, 0)
    start = time.monotonic()
    while bus.ph.ping(bus.port, 1)[1] != COMM_SUCCESS:
        assert time.monotonic() - start < 3
    assert time.monotonic() - start >= 0.35


def test_stall_never_reaches_the_goal_and_keeps_moving_set(timed: Bus) -> None:
    assert timed.clock is not None
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)
    timed.model.inject("stall")
    timed.ok("goal_position", 2000)
    timed.clock.advance(10.0)
    assert timed.value("moving") == 1
    stuck = timed.value("present_position")
    assert 0 < stuck < 2000
    assert timed.value("present_velocity") == 0
    assert timed.value("moving_status") & 0x08  # following error
    assert abs(timed.value("present_current")) > 500
    timed.clock.advance(10.0)
    assert timed.value("present_position") == stuck
    timed.model.inject("clear")  # obstruction gone: it carries on to the goal
    timed.clock.advance(10.0)
    assert (timed.value("moving"), timed.value("present_position")) == (0, 2000)


def test_stall_during_a_move_freezes_there(timed: Bus) -> None:
    assert timed.clock is not None
    timed.ok("torque_enable", 1)
    timed.ok("profile_velocity", 100)
    timed.ok("goal_position", 1024)
    timed.clock.advance(0.1)
    timed.model.inject("stall")
    timed.clock.advance(5.0)
    assert timed.value("present_position") == pytest.approx(156, abs=2)
    assert timed.value("moving") == 1
    timed.ok("torque_enable", 0)  # e-stop: no longer moving
    assert timed.value("moving") == 0


def test_mute_times_out_and_unmute_recovers(bus: Bus) -> None:
    bus.model.inject("mute")
    assert bus.ph.ping(bus.port, 1)[1] == COMM_RX_TIMEOUT
    assert bus.write("led", 1)[0] == COMM_RX_TIMEOUT
    bus.model.inject("unmute")
    assert bus.value("led") == 0  # a muted servo executes nothing
    assert bus.ph.ping(bus.port, 1) == (1020, COMM_SUCCESS, 0)


def test_corrupt_reply_is_rx_corrupt(bus: Bus) -> None:
    bus.model.inject("corrupt")
    assert bus.read("present_position")[1] == COMM_RX_CORRUPT
    bus.model.inject("clear")
    assert bus.read("present_position")[1] == COMM_SUCCESS


def test_late_reply_times_out_then_arrives_stale(bus: Bus) -> None:
    bus.model.inject("late")
    assert bus.read("present_temperature")[1] == COMM_RX_TIMEOUT  # gave up before the reply
    time.sleep(0.08)
    assert bus.port.getBytesAvailable() > 0  # the stale status arrived after the timeout
    bus.model.inject("clear")
    value, result, _ = bus.read("present_temperature")  # clearPort drops the stale packet
    assert result == COMM_SUCCESS
    assert 30 <= value <= 40


def test_unplug_raises_like_pyserial_and_only_a_fresh_port_recovers(bus: Bus) -> None:
    bus.port.unplug()
    with pytest.raises(termios.error):
        bus.ph.ping(bus.port, 1)
    assert bus.port.is_using  # the SDK's stuck state after an exception
    with pytest.raises(OSError):
        MemoryPort(bus.model).openPort()
    bus.port.replug()
    bus.port.is_using = False
    with pytest.raises(termios.error):
        bus.ph.ping(bus.port, 1)  # the old file descriptor stays dead
    fresh = MemoryPort(bus.model)
    assert fresh.openPort()
    assert fresh.setBaudRate(57600)
    assert bus.ph.ping(fresh, 1) == (1020, COMM_SUCCESS, 0)


def test_baud_mismatch_gets_no_reply() -> None:
    model = XM430Model(instant=True, baudrate=115200)
    port = MemoryPort(model)
    ph = PacketHandler(2.0)
    assert port.openPort()
    assert port.setBaudRate(57600)
    assert ph.ping(port, 1)[1] == COMM_RX_TIMEOUT
    assert port.setBaudRate(115200)
    assert ph.ping(port, 1) == (1020, COMM_SUCCESS, 0)


def test_unknown_fault_is_refused(bus: Bus) -> None:
    with pytest.raises(ValueError, match="overload"):
        bus.model.inject("gremlins")


def test_changing_the_id_takes_effect_after_the_reply(bus: Bus) -> None:
    assert bus.write("id", 9) == (COMM_SUCCESS, 0)
    assert bus.ph.ping(bus.port, 1)[1] == COMM_RX_TIMEOUT
    assert bus.ph.ping(bus.port, 9) == (1020, COMM_SUCCESS, 0)


def test_other_motor_id(bus: Bus) -> None:
    model = XM430Model(motor_id=7, instant=True)
    port = MemoryPort(model)
    port.openPort()
    port.setBaudRate(57600)
    assert bus.ph.ping(port, 7) == (1020, COMM_SUCCESS, 0)
    assert bus.ph.ping(port, 1)[1] == COMM_RX_TIMEOUT
