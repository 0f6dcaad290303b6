"""XM430Model through the REAL SDK PacketHandler over MemoryPort: control table, motion, faults."""

from __future__ import annotations

import json
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from dynamixel_sdk import (
    COMM_RX_CORRUPT,
    COMM_RX_TIMEOUT,
    COMM_SUCCESS,
    GroupSyncRead,
    GroupSyncWrite,
    PacketHandler,
)

from device_agent import control_table as ct
from device_agent.emulator import MemoryPort, XM430Model
from device_agent.emulator.physics import plan_profile
from device_agent.emulator.servo import JAM_OVERLOAD_SECONDS, REBOOT_SILENCE

ACCESS, RANGE, LENGTH, INSTRUCTION = 0x07, 0x04, 0x05, 0x02
ALERT = 0x80


class FakeClock:
    """A hand-stepped monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Bus:
    model: XM430Model
    port: MemoryPort
    ph: PacketHandler
    clock: FakeClock | None = None

    def read(self, name: str) -> tuple[int, int, int]:
        """(signed value, comm result, error byte) via the SDK."""
        it = ct.item(name)
        fn = {1: self.ph.read1ByteTxRx, 2: self.ph.read2ByteTxRx, 4: self.ph.read4ByteTxRx}
        value, result, error = fn[it.size](self.port, 1, it.address)
        return (ct.to_signed(value, it.size) if it.signed else value), result, error

    def value(self, name: str) -> int:
        value, result, _ = self.read(name)
        assert result == COMM_SUCCESS
        return value

    def write(self, name: str, value: int, size: int | None = None) -> tuple[int, int]:
        it = ct.item(name)
        fn = {1: self.ph.write1ByteTxRx, 2: self.ph.write2ByteTxRx, 4: self.ph.write4ByteTxRx}
        return fn[size or it.size](self.port, 1, it.address, value & 0xFFFFFFFF)

    def ok(self, name: str, value: int) -> None:
        assert self.write(name, value) == (COMM_SUCCESS, 0), name

    def block(self, address: int, length: int) -> tuple[dict[str, int], bytes]:
        """One READ of `length` bytes at `address`: (decoded items, raw bytes)."""
        raw, result, error = self.ph.readTxRx(self.port, 1, address, length)
        assert (result, error) == (COMM_SUCCESS, 0), (address, length, error)
        return ct.decode_block(address, raw), bytes(raw)

    @property
    def fake(self) -> FakeClock:
        assert self.clock is not None
        return self.clock


def _bus(instant: bool = True, fake_clock: bool = False, **kwargs: object) -> Bus:
    clock = FakeClock() if fake_clock else None
    model = XM430Model(instant=instant, clock=clock or time.monotonic, **kwargs)  # type: ignore[arg-type]
    port = MemoryPort(model)
    assert port.openPort()
    assert port.setBaudRate(57600)
    return Bus(model, port, PacketHandler(2.0), clock)


@pytest.fixture
def bus() -> Bus:
    return _bus()


@pytest.fixture
def timed() -> Bus:
    return _bus(instant=False, fake_clock=True)


# ---------------------------------------------------------------- identity and control table


def test_ping_reports_xm430_w350(bus: Bus) -> None:
    assert bus.ph.ping(bus.port, 1) == (1020, COMM_SUCCESS, 0)
    assert bus.ph.ping(bus.port, 2)[1] == COMM_RX_TIMEOUT  # nobody at ID 2
    assert bus.value("model_number") == 1020
    assert bus.value("baud_rate") == 1
    assert bus.value("operating_mode") == 3
    assert bus.value("shutdown") == 0x34
    assert bus.port.opens == 2  # openPort + setBaudRate, as the SDK does


def test_eeprom_is_locked_while_torque_is_on(bus: Bus) -> None:
    bus.ok("torque_enable", 1)
    assert bus.write("operating_mode", 4) == (COMM_SUCCESS, ACCESS)
    assert bus.write("max_position_limit", 3000) == (COMM_SUCCESS, ACCESS)
    assert bus.value("operating_mode") == 3
    bus.ok("torque_enable", 0)
    bus.ok("operating_mode", 4)
    assert bus.value("operating_mode") == 4


def test_read_only_and_undefined_addresses_give_access_error(bus: Bus) -> None:
    assert bus.write("model_number", 5) == (COMM_SUCCESS, ACCESS)
    assert bus.write("present_position", 5) == (COMM_SUCCESS, ACCESS)
    assert bus.write("hardware_error_status", 0) == (COMM_SUCCESS, ACCESS)
    assert bus.ph.write1ByteTxRx(bus.port, 1, 14, 1) == (COMM_SUCCESS, ACCESS)
    assert bus.value("model_number") == 1020


def test_out_of_range_values_give_data_range_error(bus: Bus) -> None:
    assert bus.write("torque_enable", 2) == (COMM_SUCCESS, RANGE)
    assert bus.write("operating_mode", 17) == (COMM_SUCCESS, RANGE)
    # the predecessor's "torque limit" 1023 at 32 is Max Voltage Limit (95-160)
    assert bus.ph.write2ByteTxRx(bus.port, 1, 32, 1023) == (COMM_SUCCESS, RANGE)
    assert bus.write("current_limit", 2000) == (COMM_SUCCESS, RANGE)
    assert bus.value("max_voltage_limit") == 160


def test_goal_outside_position_limits_in_mode_3_is_refused(bus: Bus) -> None:
    bus.ok("torque_enable", 1)
    assert bus.write("goal_position", -100) == (COMM_SUCCESS, RANGE)
    assert bus.write("goal_position", 4096) == (COMM_SUCCESS, RANGE)
    assert bus.value("present_position") == 0
    bus.ok("torque_enable", 0)
    bus.ok("operating_mode", 4)  # extended position: multi-turn goals are fine
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", -5000)
    assert bus.value("present_position") == -5000


def test_wrong_length_gives_data_length_error(bus: Bus) -> None:
    assert bus.write("goal_position", 10, size=1) == (COMM_SUCCESS, LENGTH)
    assert bus.write("profile_velocity", 10, size=2) == (COMM_SUCCESS, LENGTH)
    assert bus.ph.write1ByteTxRx(bus.port, 1, 117, 1) == (COMM_SUCCESS, LENGTH)


def test_multi_item_write_and_read(bus: Bus) -> None:
    data = [*(20).to_bytes(4, "little"), *(100).to_bytes(4, "little")]
    assert bus.ph.writeTxRx(bus.port, 1, 108, 8, data) == (COMM_SUCCESS, 0)
    raw, result, error = bus.ph.readTxRx(bus.port, 1, 108, 8)
    assert (result, error) == (COMM_SUCCESS, 0)
    assert bytes(raw) == bytes(data)


def test_unknown_instruction_gives_instruction_error(bus: Bus) -> None:
    packet = [0] * 10
    packet[4], packet[5], packet[7] = 1, 3, 0x07
    _, result, error = bus.ph.txRxPacket(bus.port, packet)
    assert (result, error) == (COMM_SUCCESS, INSTRUCTION)


def test_broadcast_write_is_applied_without_status(bus: Bus) -> None:
    assert bus.ph.write1ByteTxRx(bus.port, ct.BROADCAST_ID, 65, 1) == (COMM_SUCCESS, 0)
    assert bus.model.replies == 0
    assert bus.value("led") == 1
    assert bus.port.getBytesAvailable() == 0


def test_status_return_level_rules() -> None:
    bus = _bus()
    bus.ok("status_return_level", 1)
    assert bus.write("led", 1)[0] == COMM_RX_TIMEOUT  # applied, not answered
    assert bus.value("led") == 1
    bus.model.inject("clear")
    bus.ph.write1ByteTxOnly(bus.port, 1, 68, 0)
    assert bus.read("led")[1] == COMM_RX_TIMEOUT
    assert bus.ph.ping(bus.port, 1) == (1020, COMM_SUCCESS, 0)  # PING always answered


def test_sync_read_and_sync_write(bus: Bus) -> None:
    bus.ok("torque_enable", 1)
    writer = GroupSyncWrite(bus.port, bus.ph, 116, 4)
    assert writer.addParam(1, list((2048).to_bytes(4, "little")))
    assert writer.txPacket() == COMM_SUCCESS
    reader = GroupSyncRead(bus.port, bus.ph, 126, 10)
    assert reader.addParam(1)
    assert reader.txRxPacket() == COMM_SUCCESS
    assert reader.isAvailable(1, 132, 4)
    assert reader.getData(1, 132, 4) == 2048


def test_reg_write_and_action(bus: Bus) -> None:
    bus.ok("torque_enable", 1)
    assert bus.ph.regWriteTxRx(bus.port, 1, 116, 4, list((1000).to_bytes(4, "little"))) == (0, 0)
    assert bus.value("registered_instruction") == 1
    assert bus.value("present_position") == 0
    assert bus.ph.action(bus.port, 1) == COMM_SUCCESS
    assert bus.value("present_position") == 1000
    assert bus.value("registered_instruction") == 0


def test_reads_are_unsigned_on_the_wire_and_signed_in_the_table(bus: Bus) -> None:
    bus.ok("torque_enable", 0)
    bus.ok("operating_mode", 4)
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", -5)
    raw, _, _ = bus.ph.read4ByteTxRx(bus.port, 1, 132)
    assert raw == 4294967291
    assert ct.to_signed(raw, 4) == -5


def test_value_that_needs_byte_stuffing_round_trips(bus: Bus) -> None:
    bus.ok("torque_enable", 0)
    bus.ok("operating_mode", 4)
    bus.ok("torque_enable", 1)
    assert bus.ph.write4ByteTxRx(bus.port, 1, 116, 0x00FDFFFF) == (COMM_SUCCESS, RANGE)
    bus.ok("goal_position", -131073)  # FF FF FD FF: stuffed both ways
    assert bus.value("present_position") == -131073
    assert bus.value("goal_position") == -131073


# ---------------------------------------------------------------- motion


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
    bus = _bus(instant=False)
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


# ---------------------------------------------------------------- faults


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
    bus = _bus(instant=True)
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
    bus = _bus(instant=False)
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


# ---------------------------------------------------------------- write log


def test_write_log_records_writes_that_matter(tmp_path: Path) -> None:
    log = tmp_path / "writes.jsonl"
    bus = _bus(instant=False, fake_clock=True, log=log)
    assert bus.clock is not None
    bus.ok("torque_enable", 1)
    bus.ok("led", 1)  # not logged
    bus.ok("profile_velocity", 100)
    bus.ok("goal_position", 1024)
    bus.clock.advance(0.1)
    bus.ok("goal_position", 0)  # arrives while the first move still runs
    assert bus.write("goal_position", 9999) == (COMM_SUCCESS, RANGE)  # refused: not logged
    bus.model.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(w["name"], w["addr"], w["value"], w["moving"]) for w in lines] == [
        ("torque_enable", 64, 1, False),
        ("profile_velocity", 112, 100, False),
        ("goal_position", 116, 1024, False),
        ("goal_position", 116, 0, True),
    ]
    assert all(w["motor_id"] == 1 and w["t"] > 1.6e9 for w in lines)
    assert lines == bus.model.writes


def test_write_log_records_the_watchdog_and_goal_current(bus: Bus) -> None:
    bus.ok("bus_watchdog", 50)
    bus.ok("goal_current", 300)
    bus.ok("led", 1)  # not logged
    bus.model.inject("power-cycle")
    assert [(w["name"], w["addr"], w["value"]) for w in bus.model.writes] == [
        ("bus_watchdog", 98, 50),
        ("goal_current", 102, 300),
        ("power-cycle", None, None),
    ]


# ---------------------------------------------------------------- power-on state


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
    bus = _bus()
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
    bus = _bus()
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


# ---------------------------------------------------------------- modes and Drive Mode


@pytest.mark.parametrize("mode", [4, 5])
def test_position_limits_do_not_apply_in_modes_4_and_5(mode: int) -> None:
    bus = _bus()
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


# ---------------------------------------------------------------- jam and overload


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


# ---------------------------------------------------------------- bus watchdog


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


# ---------------------------------------------------------------- reads and stats


def test_reads_must_start_at_an_item_or_in_the_indirect_areas(bus: Bus) -> None:
    for addr in (14, 66, 99, 133, 150, 300):
        _, result, error = bus.ph.readTxRx(bus.port, 1, addr, 1)
        assert (result, error) == (COMM_SUCCESS, ACCESS), addr
    for addr in (168, 201, 224, 600, 661):
        data, result, error = bus.ph.readTxRx(bus.port, 1, addr, 1)
        assert (data, result, error) == ([0], COMM_SUCCESS, 0), addr
    assert bus.ph.readTxRx(bus.port, 1, 660, 4)[2] == ACCESS  # past the table


def test_block_reads_span_reserved_bytes(bus: Bus) -> None:
    bus.ok("led", 1)
    bus.ok("bus_watchdog", 7)
    bus.ok("torque_enable", 1)
    bus.ok("goal_position", 1000)
    ram, raw = bus.block(64, 115 - 64 + 1)
    assert raw[66 - 64 : 68 - 64] == b"\0\0"  # reserved bytes read 0
    assert ram["torque_enable"] == 1
    assert ram["led"] == 1
    assert ram["bus_watchdog"] == 7
    assert ram["goal_current"] == 1193
    assert ram["profile_velocity"] == 0
    assert "goal_position" not in ram  # 116 is outside the block
    live, _ = bus.block(122, 147 - 122 + 1)
    assert live["present_position"] == 1000
    assert live["moving"] == 0
    assert live["present_input_voltage"] == 120
    assert 30 <= live["present_temperature"] <= 40
    eeprom, _ = bus.block(0, 64)
    assert eeprom["startup_configuration"] == 0
    assert eeprom["shutdown"] == 0x34


def test_stats_report_settings_currents_watchdog_and_last_profile(timed: Bus) -> None:
    clock = timed.fake
    stats = timed.model.stats()
    assert {k: stats[k] for k in _STATS_KEYS} == {
        "operating_mode": 3,
        "profile_velocity": 0,
        "profile_acceleration": 0,
        "goal_current": 1193,
        "present_current": 0,
        "bus_watchdog": 0,
        "led": 0,
        "last_profile": None,
    }
    timed.ok("torque_enable", 1)
    timed.ok("led", 1)
    timed.ok("bus_watchdog", 50)
    timed.ok("profile_velocity", 100)
    timed.ok("profile_acceleration", 10)
    timed.ok("goal_current", 800)
    timed.ok("goal_position", 2048)
    clock.advance(0.1)
    stats = timed.model.stats()
    assert {k: stats[k] for k in _STATS_KEYS} == {
        "operating_mode": 3,
        "profile_velocity": 100,
        "profile_acceleration": 10,
        "goal_current": 800,
        "present_current": 100,  # accelerating
        "bus_watchdog": 50,
        "led": 1,
        "last_profile": {"velocity": 100, "acceleration": 10, "kind": 0x30},
    }
    json.dumps(stats)  # what the control socket sends


_STATS_KEYS = (
    "operating_mode",
    "profile_velocity",
    "profile_acceleration",
    "goal_current",
    "present_current",
    "bus_watchdog",
    "led",
    "last_profile",
)
