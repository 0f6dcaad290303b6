"""One test per driver defect of the predecessor (predecessor-defects.md items 7-15).

Each test fails on the predecessor's behaviour: wrong registers, hidden hardware errors, unchecked
writes, negative goals, stale packets, a port stuck busy after a USB unplug.
"""

from __future__ import annotations

from importlib.metadata import version

import pytest

from device_agent import control_table as ct
from device_agent.emulator import XM430Model
from device_agent.errors import (
    CommunicationError,
    MotorFaultError,
    PortLostError,
    WriteRejectedError,
)
from tests.device_agent.driver_support import make_rig


def _exercise(rig) -> None:  # type: ignore[no-untyped-def]
    d = rig.driver
    for hotel in ("B", "C", "A"):
        d.activate_hotel(hotel)
    d.set_speed(90.0, 100.0)
    d.move_to_angle(45.0)
    d.request_health()
    d.reboot()
    d.halt()
    d.emergency_stop()


def test_defect07_never_writes_max_voltage_limit_and_a_refused_write_raises() -> None:
    rig = make_rig()
    _exercise(rig)
    assert 32 not in rig.written_addresses()  # "torque limit" at 32 is Max Voltage Limit
    assert rig.model.read_item("max_voltage_limit") == 160
    rig.transport.write("torque_enable", 0)
    with pytest.raises(WriteRejectedError, match=r"max_voltage_limit.*data range error"):
        rig.transport.write("max_voltage_limit", 1023)  # the predecessor's write: refused, loudly


def test_defect08_goal_current_is_a_real_cap_and_moves_go_by_goal_position() -> None:
    rig = make_rig(torque_limit=0.8)
    _exercise(rig)
    # The predecessor wrote 1023 to 102 believing it a torque limit, in mode 3 where 102 does
    # nothing. Here the servo runs in current-based position mode (5), where Goal Current caps
    # the output, and 102 holds the configured cap: 0.8 A / 2.69 mA.
    assert rig.model.read_item("operating_mode") == ct.MODE_CURRENT_POSITION
    assert {w.value for w in rig.writes() if w.address == 102} == {297}
    goals = [w.value for w in rig.writes() if w.address == 116]
    assert 1024 in goals and 2048 in goals  # B and C reached through Goal Position (116)


def test_defect09_current_is_read_from_126_not_the_voltage_at_144() -> None:
    rig = make_rig()
    health = rig.driver.request_health()
    assert health.voltage == 12.0
    assert health.current == pytest.approx(rig.model.read_item("present_current") * ct.CURRENT_A)
    assert abs(health.current) < 0.1  # the predecessor reported 120 x 2.69 mA = 0.32 A
    spans = [
        (int.from_bytes(i.params[:2], "little"), int.from_bytes(i.params[2:4], "little"))
        for i in rig.sent
        if i.instruction == 0x02
    ]
    # the health read covers Present Current (126, 2 bytes) and the voltage (144) in one span
    assert any(start <= 126 and start + length > 145 for start, length in spans)


def test_defect10_4096_pulses_per_turn_and_signed_position_and_current() -> None:
    model = XM430Model(instant=True)
    rig = make_rig(model=model, homing_offset=-10 * 360 / 4096)  # -10 pulses
    assert model.read_item("homing_offset") == -10  # the driver wrote the configured offset
    assert model.read_item("present_position") == -10  # Present = actual + offset
    position = rig.driver.request_position()
    assert position == pytest.approx(360.0 - 10 * 360 / 4096)  # not 3.8e8 degrees
    rig.driver.move_to_angle(90.0)
    assert model.read_item("goal_position") == 1024  # 90 deg = 1024 pulses, not 1023
    assert rig.driver.request_position() == pytest.approx(90.0)
    # Current is signed: a stall while turning backwards draws negative current.
    model2 = XM430Model(instant=False)
    rig2 = make_rig(model=model2, instant=False, speed=270.0, move_timeout=0.4)
    rig2.driver.move_to_angle(90.0)
    model2.inject("stall")
    rig2.transport.write("goal_position", 0)
    assert rig2.driver.request_health().current < 0


def test_defect11_alert_bit_does_not_hide_the_hardware_error() -> None:
    rig = make_rig()
    rig.driver.activate_hotel("B")
    rig.model.inject("overload")
    assert rig.driver.request_position() == pytest.approx(90.0)  # reads still work
    assert rig.driver.request_health().hardware_errors == ["overload"]
    with pytest.raises(MotorFaultError, match="overload") as e:
        rig.driver.activate_hotel("C")
    assert e.value.names == ["overload"]


def test_defect12_every_write_result_is_checked() -> None:
    model = XM430Model(instant=True)
    rig = make_rig(model=model)
    rig.refuse.append(  # the servo answers Data Range Error to the goal of hotel D
        lambda i: (
            i.instruction == 0x03
            and i.params[:2] == b"\x74\x00"
            and i.params[2:6] == ((3072).to_bytes(4, "little"))
        )
    )
    with pytest.raises(WriteRejectedError, match=r"goal_position.*3072.*data range error"):
        rig.driver.activate_hotel("D")
    assert model.stats()["torque"] is False  # a refused goal leaves the motor de-energised


def test_defect13_reverse_rotation_never_writes_a_negative_goal() -> None:
    rig = make_rig(rotation_direction=-1)
    result = rig.driver.activate_hotel("B")
    assert result.hotel == "B"
    assert rig.model.read_item("goal_position") == 3072  # not -1024
    assert rig.model.stats()["position"] == 3072  # and the motor really went there
    goals = [ct.to_signed(w.value, 4) for w in rig.writes() if w.address == 116]
    assert min(goals) >= 0


def test_defect14_sdk_pin_and_a_late_status_never_answers_the_next_read() -> None:
    major, minor, patch = (int(x) for x in version("dynamixel-sdk").split(".")[:3])
    assert (major, minor, patch) >= (4, 0, 5)
    rig = make_rig()
    rig.model.inject("late")
    with pytest.raises(CommunicationError):
        rig.driver.request_position()
    rig.model.inject("clear")
    health = rig.driver.request_health()  # 1- and 2-byte reads right after a 4-byte one
    assert health.temperature == rig.model.read_item("present_temperature")
    assert health.voltage == 12.0


def test_defect15_after_usb_loss_the_driver_recovers_without_restart() -> None:
    rig = make_rig()
    rig.model.inject("unplug")
    for _ in range(3):
        with pytest.raises(PortLostError) as e:
            rig.driver.request_position()
        assert e.value.result != -1000  # never "port busy" forever
    rig.model.inject("replug")
    rig.driver.reconnect()
    assert rig.driver.activate_hotel("C").hotel == "C"
