"""The emulated XM430's control table via the real SDK: access rules, instructions, reads."""

from __future__ import annotations

from dynamixel_sdk import COMM_RX_TIMEOUT, COMM_SUCCESS, GroupSyncRead, GroupSyncWrite

from device_agent import control_table as ct
from tests.device_agent.emulator.support import ACCESS, INSTRUCTION, LENGTH, RANGE, Bus, make_bus

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
    bus = make_bus()
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
