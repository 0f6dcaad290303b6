"""The driver through the real SDK `PortHandler` against the emulator process on a pty."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from device_agent.driver import ResortDriver, open_driver
from device_agent.errors import (
    CommunicationError,
    JamError,
    MotionAbortedError,
    MotorFaultError,
    PortLostError,
)
from device_agent.transport import SdkTransport
from tests.device_agent.driver_support import make_config


def _driver(emu: Any, **config: Any) -> ResortDriver:
    return open_driver(make_config(serial_port=str(emu.link), **config))


def test_activate_hotels_through_the_real_sdk(emulator: Any) -> None:
    emu = emulator(instant=True)
    driver = _driver(emu)
    try:
        assert driver.activate_hotel("B").hotel == "B"
        assert emu.stats()["position"] == 1024
        assert driver.activate_hotel("D").position == pytest.approx(270.0)
        assert driver.request_active_hotel() == "D"
        names = [w["name"] for w in emu.writes()]
        assert names.count("goal_position") >= 2
    finally:
        driver.close()


_HARDWARE = [
    ("overload", "overload"),
    ("overheat", "overheating"),
    ("voltage", "input_voltage"),
    ("shock", "electrical_shock"),
    ("encoder", "motor_encoder"),
]


def test_every_hardware_fault_raises_decoded_and_leaves_torque_off(emulator: Any) -> None:
    emu = emulator(instant=True)
    driver = _driver(emu)
    try:
        for kind, name in _HARDWARE:
            emu.fault(kind)
            with pytest.raises(MotorFaultError) as e:
                driver.activate_hotel("C")
            assert e.value.names == [name], kind
            assert emu.stats()["torque"] is False, kind
            assert driver.request_health().hardware_errors == [name]
            health = driver.reboot()
            assert health.hardware_errors == [] and not health.torque, kind
            assert driver.activate_hotel("B").hotel == "B"
    finally:
        driver.close()


def test_stall_fails_as_a_jam_with_torque_off(emulator: Any) -> None:
    emu = emulator()
    driver = _driver(emu, speed=180.0, move_timeout=0.8)
    try:
        emu.fault("stall")
        with pytest.raises(JamError, match="jammed at"):
            driver.activate_hotel("C")
        assert emu.stats()["torque"] is False
        emu.fault("clear")
        assert driver.activate_hotel("A").hotel == "A"
    finally:
        driver.close()


@pytest.mark.parametrize(("kind", "result"), [("mute", -3001), ("corrupt", -3002), ("late", None)])
def test_comm_faults_raise_communication_error_then_recover(
    emulator: Any, kind: str, result: int | None
) -> None:
    emu = emulator(instant=True)
    driver = _driver(emu)
    try:
        emu.fault(kind)
        with pytest.raises(CommunicationError) as e:
            driver.activate_hotel("B")
        assert not isinstance(e.value, PortLostError)
        if result is not None:
            assert e.value.result == result
        emu.fault("clear")
        health = driver.request_health()  # no stale packet answers these reads
        assert health.voltage == 12.0
        assert driver.activate_hotel("B").hotel == "B"
    finally:
        driver.close()


def test_unplug_and_replug_recover_with_reconnect(emulator: Any) -> None:
    emu = emulator(instant=True)
    driver = _driver(emu)
    try:
        driver.activate_hotel("B")
        emu.fault("unplug")
        with pytest.raises(PortLostError, match="ttyDXL"):
            driver.activate_hotel("C")
        with pytest.raises(PortLostError):
            driver.request_position()  # still a clear error, never "port busy"
        with pytest.raises(PortLostError):
            driver.reconnect()  # still unplugged
        emu.fault("replug")
        driver.reconnect()
        assert driver.activate_hotel("C").hotel == "C"
    finally:
        driver.close()


def test_emergency_stop_from_another_thread_during_a_long_move(emulator: Any) -> None:
    emu = emulator()
    driver = _driver(emu, speed=30.0, acceleration=0.0)  # 180 degrees take 6 s
    try:
        stopper = threading.Timer(0.4, driver.emergency_stop)
        stopper.start()
        with pytest.raises(MotionAbortedError, match="emergency stop"):
            driver.activate_hotel("C")
        stopper.join()
        stats = emu.stats()
        assert stats["torque"] is False
        assert stats["moving"] is False
        assert 3.0 < stats["position_deg"] < 120.0
        writes = emu.writes()
        last_goal = max(i for i, w in enumerate(writes) if w["name"] == "goal_position")
        stop = next(w for w in writes[last_goal:] if w["name"] == "torque_enable")
        assert stop["value"] == 0
        assert stop["moving"] is True  # it went out while the motor was turning
    finally:
        driver.close()


def test_baud_mismatch_is_a_communication_error(emulator: Any) -> None:
    emu = emulator(instant=True, baud=115200)
    transport = SdkTransport(str(emu.link), 57600, 1, late_grace=0.0)
    driver = ResortDriver(transport, make_config(serial_port=str(emu.link)))
    try:
        with pytest.raises(CommunicationError) as e:
            driver.connect()
        assert e.value.result == -3001
    finally:
        driver.close()
