"""ResortDriver against the in-memory emulator (real SDK packet handler), instant and timed."""

from __future__ import annotations

import threading
import time

import pytest

from device_agent import control_table as ct
from device_agent.driver import ResortDriver
from device_agent.emulator import XM430Model
from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    JamError,
    MotionAbortedError,
    MotorFaultError,
    MoveTimeoutError,
    NotConnectedError,
    PortLostError,
    PositionError,
)
from device_agent.results import Health, MoveResult
from tests.device_agent.driver_support import make_config, make_rig

# -- connect ---------------------------------------------------------------------------------------


def test_connect_applies_every_setting_and_checks_it() -> None:
    rig = make_rig(speed=68.7, acceleration=214.6, torque_limit=0.5)
    m = rig.model
    assert m.read_item("operating_mode") == ct.MODE_CURRENT_POSITION
    assert m.read_item("shutdown") == ct.SHUTDOWN_ALL
    assert m.read_item("drive_mode") == 0
    assert m.read_item("startup_configuration") == 0
    assert m.read_item("profile_velocity") == 50  # 68.7 deg/s / 1.374
    assert m.read_item("profile_acceleration") == 10  # 214.6 deg/s^2 / 21.46
    assert m.read_item("goal_current") == 186  # 0.5 A / 2.69 mA
    assert m.read_item("bus_watchdog") == 0
    assert m.read_item("led") == 1  # the marker a power loss resets
    assert m.read_item("torque_enable") == 0  # connect never switches torque on
    assert rig.driver.connected


def test_connect_is_idempotent() -> None:
    rig = make_rig()
    sent = len(rig.sent)
    rig.driver.connect()
    assert len(rig.sent) == sent


def test_connect_refuses_another_model() -> None:
    class OtherServo:
        """A transport whose servo answers PING as an XM430-W210 (1030)."""

        port, motor_id, is_open, last_alert = "x", 1, True, False

        def open(self) -> None: ...

        def ping(self) -> int:
            return 1030

    driver = ResortDriver(OtherServo(), make_config())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="model 1030"):
        driver.connect()


def test_profile_velocity_is_clamped_to_the_velocity_limit() -> None:
    model = XM430Model(instant=True)
    rig = make_rig(model=model, connect=False, speed=200.0)
    rig.transport.open()
    rig.transport.write("velocity_limit", 60)  # EEPROM, torque is off
    rig.driver.connect()
    assert model.read_item("profile_velocity") == 60


def test_commands_before_connect_raise_not_connected() -> None:
    rig = make_rig(connect=False)
    with pytest.raises(NotConnectedError):
        rig.driver.activate_hotel("A")
    with pytest.raises(NotConnectedError):
        rig.driver.request_position()


def test_connect_with_a_latched_fault_keeps_torque_off_and_reports_it() -> None:
    model = XM430Model(instant=True)
    model.inject("overload")
    rig = make_rig(model=model)
    health = rig.driver.request_health()
    assert health.hardware_errors == ["overload"]
    assert health.torque is False
    with pytest.raises(MotorFaultError, match="overload") as e:
        rig.driver.activate_hotel("B")
    assert e.value.names == ["overload"]


# -- moves, instant ----------------------------------------------------------------------------


@pytest.mark.parametrize(("hotel", "angle"), [("A", 0.0), ("B", 90.0), ("C", 180.0), ("D", 270.0)])
def test_activate_hotel_reaches_it(hotel: str, angle: float) -> None:
    rig = make_rig()
    result = rig.driver.activate_hotel(hotel)
    assert isinstance(result, MoveResult)
    assert result.hotel == hotel
    assert result.target == angle
    assert result.position == pytest.approx(angle, abs=0.1)
    assert rig.driver.request_active_hotel() == hotel
    assert rig.model.read_item("goal_position") == round(angle / 360 * 4096) % 4096


def test_go_home_and_move_to_angle() -> None:
    rig = make_rig(offset_angle=10.0)
    assert rig.driver.go_home().position == pytest.approx(0.0, abs=0.1)
    assert rig.driver.request_active_hotel() is None  # A sits at 10 degrees
    result = rig.driver.move_to_angle(-45.0)
    assert result.target == 315.0
    assert rig.driver.request_position() == pytest.approx(315.0, abs=0.1)
    with pytest.raises(ConfigurationError):
        rig.driver.move_to_angle(float("nan"))
    with pytest.raises(ConfigurationError, match="'Z'"):
        rig.driver.activate_hotel("Z")


def test_active_hotel_wraps_around_360() -> None:
    rig = make_rig(position_tolerance=1.0)
    rig.driver.move_to_angle(359.5)
    assert rig.driver.request_active_hotel() == "A"
    rig.driver.move_to_angle(357.0)
    assert rig.driver.request_active_hotel() is None


def test_set_speed_writes_the_profile_and_survives_reboot() -> None:
    rig = make_rig()
    rig.driver.set_speed(27.48, acceleration=0)
    assert rig.model.read_item("profile_velocity") == 20
    rig.driver.reboot()
    assert rig.model.read_item("profile_velocity") == 20
    assert rig.driver.speed == 27.48
    with pytest.raises(ConfigurationError, match="speed"):
        rig.driver.set_speed(0)


# -- health ----------------------------------------------------------------------------------------


def test_health_reports_units_and_threshold_warnings() -> None:
    rig = make_rig(max_temperature=20.0, min_voltage=12.5, max_voltage=16.0)
    health = rig.driver.request_health()
    assert isinstance(health, Health)
    assert health.voltage == 12.0
    assert health.temperature == rig.model.read_item("present_temperature")
    assert health.current == pytest.approx(rig.model.read_item("present_current") * 0.00269)
    assert health.torque is False  # nothing moved yet: connect leaves torque off
    assert health.hardware_errors == []
    assert any("temperature" in w for w in health.warnings)
    assert any("voltage 12.0 V below 12.5 V" in w for w in health.warnings)
    assert not health.ok


def test_overheat_shows_in_health_and_reboot_clears_it() -> None:
    rig = make_rig()
    rig.model.inject("overheat")
    health = rig.driver.request_health()
    assert health.hardware_errors == ["overheating"]
    assert health.torque is False
    after = rig.driver.reboot()
    assert after.hardware_errors == []
    assert after.torque is False  # reboot never switches torque on; the next move does
    assert rig.driver.activate_hotel("C").hotel == "C"
    assert rig.model.stats()["torque"] is True


# -- moves, timed ------------------------------------------------------------------------------


def test_timed_move_waits_for_the_profile() -> None:
    rig = make_rig(instant=False, speed=270.0)
    result = rig.driver.move_to_angle(45.0)
    assert result.position == pytest.approx(45.0, abs=0.2)
    assert rig.model.stats()["moving"] is False
    expected = rig.driver.estimate_move_time(0.0, 45.0)
    assert result.duration >= expected * 0.9  # it waited for the motion, not just the write


def test_hardware_fault_during_a_timed_move_raises_decoded_and_cuts_torque() -> None:
    rig = make_rig(instant=False, speed=90.0)
    threading.Timer(0.15, rig.model.inject, args=("overload",)).start()
    with pytest.raises(MotorFaultError, match="overload") as e:
        rig.driver.activate_hotel("C")
    assert e.value.names == ["overload"]
    assert e.value.bits == 0x20
    assert rig.model.stats()["torque"] is False
    assert rig.model.stats()["moving"] is False
    health = rig.driver.reboot()
    assert health.hardware_errors == [] and not health.torque
    assert rig.driver.activate_hotel("B").hotel == "B"


def test_stall_is_a_jam_and_leaves_torque_off() -> None:
    rig = make_rig(instant=False, speed=180.0)
    rig.model.inject("stall")  # the emulator flags a stalled move's following error at once
    with pytest.raises(JamError, match=r"jammed at \d+\.\d\d deg on its way to 180\.00") as e:
        rig.driver.activate_hotel("C")
    assert 0.0 < e.value.position < 80.0 and e.value.target == 180.0
    assert rig.model.stats()["torque"] is False
    rig.model.inject("clear")
    assert rig.driver.activate_hotel("B").hotel == "B"  # torque comes back on for the next move


def test_a_move_longer_than_move_timeout_fails_at_move_timeout() -> None:
    rig = make_rig(instant=False, speed=90.0, move_timeout=0.5)  # 180 deg take 2 s
    with pytest.raises(MoveTimeoutError, match=r"deadline of 0\.5 s") as e:
        rig.driver.activate_hotel("C")
    assert isinstance(e.value, TimeoutError)
    assert rig.model.stats()["torque"] is False


def test_the_deadline_comes_from_the_profile_estimate() -> None:
    rig = make_rig(instant=False, speed=180.0, move_timeout=30.0)  # 45 deg: 0.25 s
    intruder = make_rig(model=rig.model, connect=False)  # slows the move down behind our back
    intruder.transport.open()

    def slow_down() -> None:
        intruder.transport.write("profile_velocity", 10)  # 13.7 deg/s
        intruder.transport.write("goal_position", 512)  # re-planned from where it is

    threading.Timer(0.05, slow_down).start()
    started = time.monotonic()
    with pytest.raises(MoveTimeoutError, match=r"deadline of 1\.4 s \(profile estimate 0\.25 s"):
        rig.driver.move_to_angle(45.0)
    assert time.monotonic() - started < 2.5  # not the 30 s move_timeout


def test_move_that_ends_off_target_raises_position_error() -> None:
    rig = make_rig(instant=False, speed=90.0)
    intruder = make_rig(model=rig.model, connect=False)  # a second host on the same bus
    intruder.transport.open()
    threading.Timer(0.1, intruder.transport.write, args=("goal_position", 512)).start()
    with pytest.raises(PositionError, match="ended at 45"):
        rig.driver.activate_hotel("C")


def test_mute_servo_raises_communication_error() -> None:
    rig = make_rig()
    rig.model.inject("mute")
    with pytest.raises(CommunicationError) as e:
        rig.driver.activate_hotel("B")
    assert e.value.result == -3001


def test_emergency_stop_from_another_thread_aborts_a_long_move() -> None:
    rig = make_rig(instant=False, speed=30.0)  # 180 degrees take 6 s
    confirmed: list[bool] = []
    stopper = threading.Timer(0.3, lambda: confirmed.append(rig.driver.emergency_stop()))
    stopper.start()
    with pytest.raises(MotionAbortedError, match="emergency stop"):
        rig.driver.activate_hotel("C")
    stopper.join()
    assert confirmed == [True]  # Torque Enable read back 0
    stats = rig.model.stats()
    assert stats["torque"] is False
    assert stats["moving"] is False
    assert 2.0 < stats["position_deg"] < 90.0  # stopped early, far from 180


def test_idle_emergency_stop_cuts_torque_and_does_not_poison_later_commands() -> None:
    rig = make_rig()
    rig.driver.activate_hotel("B")
    assert rig.driver.emergency_stop() is True
    assert rig.model.stats()["torque"] is False
    assert rig.driver.reboot().torque is False  # and reboot never turns it back on
    assert rig.driver.emergency_stop() is True
    assert rig.driver.activate_hotel("C").hotel == "C"  # the agent's latches gate this
    assert rig.model.stats()["torque"] is True


def test_an_emergency_stop_that_cannot_be_read_back_is_not_confirmed() -> None:
    rig = make_rig()
    rig.driver.activate_hotel("B")
    rig.model.inject("mute")
    assert rig.driver.emergency_stop() is False  # never raises: the caller keeps trying
    rig.model.inject("unmute")
    assert rig.driver.emergency_stop() is True


def test_halt_stops_under_control_and_keeps_torque() -> None:
    rig = make_rig(instant=False, speed=30.0)
    threading.Timer(0.3, rig.driver.halt).start()
    with pytest.raises(MotionAbortedError, match="halt"):
        rig.driver.activate_hotel("C")
    stats = rig.model.stats()
    assert stats["torque"] is True
    assert stats["goal_position"] < 1024


# -- port loss -------------------------------------------------------------------------------


def test_usb_unplug_then_reconnect_recovers() -> None:
    rig = make_rig()
    rig.driver.activate_hotel("B")
    rig.model.inject("unplug")
    with pytest.raises(PortLostError):
        rig.driver.activate_hotel("C")
    with pytest.raises(PortLostError):
        rig.driver.reconnect()
    rig.model.inject("replug")
    rig.driver.reconnect()
    assert rig.driver.activate_hotel("C").hotel == "C"
    assert len(rig.ports) >= 2  # a fresh port object, not the stuck one
