"""The driver's safety rules against the in-memory emulator: torque only by a move, EEPROM traps,
power loss, the bus watchdog, jams and the seam."""

from __future__ import annotations

import threading
import time

import pytest

from device_agent import control_table as ct
from device_agent.driver import WATCHDOG_UNITS
from device_agent.emulator import XM430Model
from device_agent.errors import (
    ConfigurationError,
    EmergencyStopError,
    HomingError,
    JamError,
    MotionAbortedError,
    WatchdogExpiredError,
)
from device_agent.motion import JamDetector, PollReading
from tests.device_agent.driver_support import make_rig
from tests.support.waiting import wait_for


def _torque_writes(rig) -> list[int]:  # type: ignore[no-untyped-def]
    return [w.value for w in rig.writes() if w.address == ct.item("torque_enable").address]


# -- torque only by a move -------------------------------------------------------------------------


def test_connect_reconnect_and_reboot_never_switch_torque_on() -> None:
    rig = make_rig(connect=False)
    rig.driver.connect()
    rig.driver.reconnect()
    rig.driver.reboot()
    assert 1 not in _torque_writes(rig)
    assert rig.model.stats()["torque"] is False


def test_connect_leaves_a_holding_servo_alone_when_eeprom_is_right() -> None:
    rig = make_rig()
    rig.driver.activate_hotel("B")  # torque on, holding hotel B
    again = make_rig(model=rig.model)  # a restarted agent connects
    assert 0 not in _torque_writes(again) and 1 not in _torque_writes(again)
    assert rig.model.stats()["torque"] is True


def test_torque_on_writes_goal_equal_present_first_and_reads_it_back() -> None:
    rig = make_rig()
    rig.driver.move_to_angle(90.0)
    rig.driver.emergency_stop()
    start = len(rig.writes())
    rig.driver.move_to_angle(180.0)
    goal, torque = ct.item("goal_position").address, ct.item("torque_enable").address
    order = [(w.address, w.value) for w in rig.writes()[start:] if w.address in (goal, torque)]
    assert order == [(goal, 1024), (torque, 1), (goal, 2048)]  # 90 deg = 1024 pulses


def test_the_interlock_refuses_a_move_before_any_write() -> None:
    rig = make_rig()

    def latched() -> None:
        raise EmergencyStopError("resort-t is emergency-stopped (test)")

    rig.driver.interlock = latched
    before = len(rig.writes())
    with pytest.raises(EmergencyStopError):
        rig.driver.activate_hotel("C")
    assert rig.writes()[before:] == []
    assert rig.model.stats()["torque"] is False


def test_a_stop_during_torque_on_wins() -> None:
    """The stop lands while the move is about to energise the motor: torque ends up off."""
    rig = make_rig()
    rig.driver.interlock = rig.driver.emergency_stop  # the stop arrives at the last moment
    with pytest.raises(MotionAbortedError):
        rig.driver.activate_hotel("C")
    assert rig.model.stats()["torque"] is False


# -- EEPROM traps ---------------------------------------------------------------------------------


def test_connect_clears_eeprom_traps_and_writes_the_homing_offset() -> None:
    model = XM430Model(instant=True)
    rig = make_rig(model=model, connect=False, homing_offset=10.0)
    rig.transport.open()
    rig.transport.write("drive_mode", ct.DRIVE_MODE_TORQUE_ON_BY_GOAL)
    rig.transport.write("startup_configuration", ct.STARTUP_TORQUE_ON)
    rig.transport.write("shutdown", ct.SHUTDOWN_DEFAULT)
    rig.driver.connect()
    assert model.read_item("drive_mode") == 0
    assert model.read_item("startup_configuration") == 0
    assert model.read_item("shutdown") == ct.SHUTDOWN_ALL
    assert model.read_item("homing_offset") == 114  # 10 deg
    assert model.read_item("operating_mode") == ct.MODE_CURRENT_POSITION
    # with bit 3 cleared, a goal written while torque is off does not switch torque on
    rig.transport.write("goal_position", 1500)
    assert model.stats()["torque"] is False


def test_eeprom_is_rewritten_only_with_torque_off() -> None:
    rig = make_rig()
    rig.driver.activate_hotel("B")
    rig.transport.write("torque_enable", 0)
    rig.transport.write("drive_mode", ct.DRIVE_MODE_TORQUE_ON_BY_GOAL)
    rig.transport.write("torque_enable", 1)  # a foreign tool left torque on
    again = make_rig(model=rig.model)
    assert rig.model.read_item("drive_mode") == 0
    assert _torque_writes(again) == [0]  # off to write EEPROM, never back on


def test_a_torque_cap_above_the_current_limit_is_refused() -> None:
    model = XM430Model(instant=True)
    rig = make_rig(model=model, connect=False, torque_limit=2.0)
    rig.transport.open()
    rig.transport.write("current_limit", 500)  # 1.35 A
    with pytest.raises(ConfigurationError, match=r"torque_limit 2 A is above .*1\.34 A"):
        rig.driver.connect()


# -- power loss while the link stays up -----------------------------------------------------------


def test_a_power_cycle_is_detected_and_the_next_move_keeps_the_configured_profile() -> None:
    rig = make_rig(speed=90.0, acceleration=180.0)
    rig.driver.activate_hotel("B")
    rig.model.inject("power-cycle")
    assert rig.model.read_item("profile_velocity") == 0  # "no profile": a full-speed step
    wait_for(lambda: not rig.model.stats()["silent"], 5, 0.01, "servo booted")
    assert rig.driver.activate_hotel("C").hotel == "C"
    assert rig.driver.power_losses == 1
    assert rig.model.stats()["last_profile"]["velocity"] == 66  # 90 deg/s
    assert rig.model.stats()["last_profile"]["acceleration"] == 8  # 180 deg/s^2


def test_a_profile_changed_behind_the_drivers_back_is_restored_before_the_move() -> None:
    rig = make_rig(speed=90.0)
    rig.driver.activate_hotel("B")
    rig.transport.write("profile_velocity", 0)  # another tool: "no profile"
    rig.driver.activate_hotel("C")
    assert rig.model.stats()["last_profile"]["velocity"] == 66
    assert rig.driver.power_losses == 0  # the marker was still there: not a power loss


# -- the bus watchdog -----------------------------------------------------------------------------


def test_the_watchdog_is_armed_for_the_move_and_cleared_after_it() -> None:
    rig = make_rig(instant=False, speed=180.0)
    seen: list[int] = []
    threading.Timer(0.1, lambda: seen.append(rig.model.read_item("bus_watchdog"))).start()
    rig.driver.move_to_angle(90.0)
    assert seen == [WATCHDOG_UNITS]
    assert rig.model.read_item("bus_watchdog") == 0


def test_a_host_that_stops_polling_leaves_a_stopped_motor() -> None:
    """The host freezes mid-move (as if killed): the servo stops within the watchdog time."""
    rig = make_rig(instant=False, speed=30.0)  # 180 deg would take 6 s
    frozen = threading.Event()

    def freeze(seconds: float) -> None:
        if frozen.is_set():
            time.sleep(seconds)
            return
        frozen.set()
        time.sleep(3.0)  # the host is gone while the test watches the motor

    rig.driver._sleep = freeze
    errors: list[BaseException] = []

    def move() -> None:
        try:
            rig.driver.activate_hotel("C")
        except BaseException as exc:
            errors.append(exc)

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    assert frozen.wait(5)
    time.sleep(WATCHDOG_UNITS * ct.BUS_WATCHDOG_UNIT + 0.3)
    first = rig.model.stats()
    time.sleep(0.3)
    second = rig.model.stats()
    assert first["bus_watchdog"] == ct.BUS_WATCHDOG_EXPIRED
    assert first["moving"] is False
    assert first["position"] == second["position"]  # stopped, not still turning
    assert second["position_deg"] < 45.0  # far from 180
    mover.join(10)  # the host wakes up: its move fails, it does not carry on
    assert len(errors) == 1 and isinstance(errors[0], WatchdogExpiredError), errors
    assert rig.model.stats()["torque"] is False


def test_a_watchdog_expiry_during_a_move_fails_it_with_torque_off() -> None:
    rig = make_rig(instant=False, speed=30.0)
    stalls = [0.8]  # the first poll's sleep takes longer than the watchdog

    def slow_sleep(seconds: float) -> None:
        time.sleep(stalls.pop() if stalls else seconds)

    rig.driver._sleep = slow_sleep
    with pytest.raises(WatchdogExpiredError, match="bus watchdog expired"):
        rig.driver.activate_hotel("C")
    assert rig.model.stats()["torque"] is False
    assert rig.model.read_item("bus_watchdog") == 0  # cleared
    rig.driver._sleep = time.sleep
    assert rig.driver.activate_hotel("B").hotel == "B"


# -- jams ----------------------------------------------------------------------------------------


def test_a_jam_fails_the_move_within_half_a_second_naming_where_it_stopped() -> None:
    rig = make_rig(instant=False, speed=30.0, torque_limit=0.5)
    jammed_at: list[float] = []

    def jam() -> None:
        jammed_at.append(time.monotonic())
        rig.model.inject("jam")

    threading.Timer(0.5, jam).start()
    with pytest.raises(JamError, match="jammed at") as e:
        rig.driver.activate_hotel("C")
    failed_at = time.monotonic()
    assert failed_at - jammed_at[0] < 0.5
    assert 5.0 < e.value.position < 30.0  # about 15 deg after 0.5 s at 30 deg/s
    stats = rig.model.stats()
    assert stats["torque"] is False
    assert abs(stats["present_current"]) <= 186  # the cap held while it pushed
    rig.model.inject("clear")
    assert rig.driver.activate_hotel("B").hotel == "B"


def test_jam_detector_no_progress_at_the_cap() -> None:
    jams = JamDetector(cap=372)
    moving = PollReading(True, True, False, current=360, position=100)
    assert jams.update(0.00, moving) is None
    assert jams.update(0.10, moving) is None
    reason = jams.update(0.16, moving)
    assert reason is not None and "no progress" in reason and "1.00 A" in reason
    progressing = JamDetector(cap=372)
    for i in range(20):  # at the cap but gaining ground: not a jam
        reading = PollReading(True, True, False, current=360, position=100 + 5 * i)
        assert progressing.update(i * 0.02, reading) is None


def test_jam_detector_following_error_needs_three_polls() -> None:
    jams = JamDetector(cap=372)
    flagged = PollReading(True, True, True, current=50, position=100)
    assert jams.update(0.0, flagged) is None
    assert jams.update(0.02, PollReading(True, True, False, 50, 110)) is None  # reset
    assert jams.update(0.04, flagged) is None
    assert jams.update(0.06, flagged) is None
    assert jams.update(0.08, flagged) == "the servo reports a following error"


# -- the seam ------------------------------------------------------------------------------------


def test_a_carousel_turned_across_the_seam_by_hand_is_not_energised() -> None:
    rig = make_rig()
    rig.driver.move_to_angle(10.0)
    hand = make_rig(model=rig.model, connect=False)  # stands in for a hand on the carousel
    hand.transport.open()
    hand.transport.write("goal_position", -300)  # mode 5: multi-turn, 26 deg past the seam
    hand.transport.write("torque_enable", 0)
    with pytest.raises(HomingError, match=r"-300 pulses .*across the 0/360 seam"):
        rig.driver.activate_hotel("B")
    assert rig.model.stats()["torque"] is False
