"""SdkTransport: the real Dynamixel SDK packet handler over the emulator's in-memory port."""

from __future__ import annotations

import threading
from typing import Any

import dynamixel_sdk
import pytest

from device_agent import control_table as ct
from device_agent.emulator import MemoryPort, XM430Model
from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    NotConnectedError,
    PortLostError,
    WriteRejectedError,
)
from device_agent.transport import SdkTransport


@pytest.fixture
def model() -> XM430Model:
    return XM430Model(instant=True)


def _transport(model: XM430Model, **kw: object) -> SdkTransport:
    t = SdkTransport("memory://xm430", 57600, 1, port_factory=lambda n: MemoryPort(model, n), **kw)
    t.open()
    return t


def test_ping_returns_the_model_number(model: XM430Model) -> None:
    t = _transport(model)
    assert t.is_open
    assert t.ping() == ct.MODEL_NUMBER_XM430_W350


def test_open_refuses_a_baud_rate_the_sdk_cannot_set(model: XM430Model) -> None:
    t = SdkTransport("memory://xm430", 250000, 1, port_factory=lambda n: MemoryPort(model, n))
    with pytest.raises(ConfigurationError, match="250000"):
        t.open()
    assert not t.is_open


def test_open_of_a_missing_device_names_the_path(tmp_path) -> None:
    path = str(tmp_path / "ttyUSB-missing")
    t = SdkTransport(path, 57600, 1)  # the real PortHandler
    with pytest.raises(PortLostError, match="ttyUSB-missing"):
        t.open()


def test_calls_before_open_raise_not_connected(model: XM430Model) -> None:
    t = SdkTransport("memory://xm430", 57600, 1, port_factory=lambda n: MemoryPort(model, n))
    with pytest.raises(NotConnectedError):
        t.read("present_position")


def test_reads_are_sign_converted_per_item(model: XM430Model) -> None:
    t = _transport(model)
    t.write("homing_offset", -100)  # EEPROM, torque is off
    assert t.read("homing_offset") == -100
    t.write("goal_velocity", -5)
    assert t.read("goal_velocity") == -5
    assert t.read("present_position") == model.read_item("present_position")
    assert t.read("model_number") == 1020  # unsigned items stay unsigned


def test_a_write_the_servo_refuses_names_item_value_and_error(model: XM430Model) -> None:
    t = _transport(model)
    with pytest.raises(WriteRejectedError, match=r"max_voltage_limit.*1023.*data range") as e:
        t.write("max_voltage_limit", 1023)
    assert (e.value.address, e.value.error) == (32, 0x04)
    t.write("torque_enable", 1)
    with pytest.raises(WriteRejectedError, match="access error"):
        t.write("operating_mode", 4)  # EEPROM is locked while torque is on
    assert model.read_item("operating_mode") == 3


def test_alert_bit_does_not_fail_reads_and_is_exposed(model: XM430Model) -> None:
    t = _transport(model)
    t.read("present_position")
    assert t.last_alert is False
    model.inject("overload")
    assert t.read("present_position") == model.read_item("present_position")
    assert t.last_alert is True
    assert ct.decode_hardware_error(t.read("hardware_error_status")) == ["overload"]


def test_last_alert_is_per_thread(model: XM430Model) -> None:
    t = _transport(model)
    model.inject("overload")
    t.read("moving")
    seen: list[bool] = []
    other = threading.Thread(target=lambda: seen.append(t.last_alert))
    other.start()
    other.join()
    assert t.last_alert is True
    assert seen == [False]  # that thread has not received any status yet


@pytest.mark.parametrize(
    ("fault", "result"),
    [("mute", dynamixel_sdk.COMM_RX_TIMEOUT), ("corrupt", dynamixel_sdk.COMM_RX_CORRUPT)],
)
def test_comm_failures_raise_communication_error_with_the_sdk_code(
    model: XM430Model, fault: str, result: int
) -> None:
    t = _transport(model, late_grace=0.0)
    model.inject(fault)
    with pytest.raises(CommunicationError) as e:
        t.read("present_temperature")
    assert e.value.result == result
    assert not isinstance(e.value, PortLostError)
    model.inject("clear")
    assert t.read("present_temperature") == model.read_item("present_temperature")


def test_a_late_status_is_never_taken_as_the_next_answer(model: XM430Model) -> None:
    t = _transport(model)
    model.inject("late")
    with pytest.raises(CommunicationError):
        t.read("present_position")
    model.inject("clear")
    # 1-byte read right after: a stale 4-byte position packet must not answer it.
    assert t.read("present_temperature") == model.read_item("present_temperature")
    assert t.read("model_number") == 1020


def test_unplug_raises_port_lost_and_reopen_recovers(model: XM430Model) -> None:
    t = _transport(model)
    model.inject("unplug")
    for _ in range(2):  # never "port busy": every call names the lost port
        with pytest.raises(PortLostError, match="memory://xm430"):
            t.read("present_position")
    with pytest.raises(PortLostError):
        t.reopen()
    model.inject("replug")
    t.reopen()
    assert t.ping() == 1020


def test_reboot_clears_a_hardware_error(model: XM430Model) -> None:
    t = _transport(model)
    model.inject("overheat")
    t.reboot()
    model.inject("clear")
    for _ in range(50):
        try:
            t.ping()
            break
        except CommunicationError:
            continue
    assert t.read("hardware_error_status") == 0
    assert t.last_alert is False


def test_one_transaction_at_a_time_from_many_threads(model: XM430Model) -> None:
    t = _transport(model)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(40):
                assert t.read("model_number") == 1020
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_close_is_idempotent(model: XM430Model) -> None:
    t = _transport(model)
    t.close()
    t.close()
    assert not t.is_open
    with pytest.raises(NotConnectedError):
        t.ping()


def test_a_port_left_busy_by_an_interrupted_call_is_reset(model: XM430Model) -> None:
    ports: list[MemoryPort] = []

    def factory(name: str) -> MemoryPort:
        ports.append(MemoryPort(model, name))
        return ports[-1]

    t = SdkTransport("memory://xm430", 57600, 1, port_factory=factory)
    t.open()
    ports[-1].is_using = True  # what Ctrl-C inside the SDK's receive loop leaves behind
    assert t.read("model_number") == 1020
    assert ports[-1].is_using is False


def _status_broken_once(model: XM430Model) -> None:
    """The next status packet arrives with a bad CRC (the write it answers lands)."""
    feed = model.feed
    broken = [True]

    def feed_once(data: bytes | bytearray) -> Any:
        if not broken:
            return feed(data)
        broken.clear()
        model.inject("corrupt")
        try:
            return feed(data)
        finally:
            model.inject("clear")

    model.feed = feed_once  # type: ignore[method-assign]


@pytest.mark.parametrize("once", [True, False], ids=["write_once", "write"])
def test_a_goal_whose_status_is_lost_is_read_back_not_sent_again(
    model: XM430Model, once: bool
) -> None:
    t = _transport(model, late_grace=0.0)
    t.write("torque_enable", 0)
    goal = model.read_item("present_position") + 100
    _status_broken_once(model)
    before = len(model.writes)
    (t.write_once if once else t.write)("goal_position", goal)
    goals = [w for w in model.writes[before:] if w["name"] == "goal_position"]
    assert model.read_item("goal_position") == goal
    # the plain write sends the goal again on a lost status; write_once reads it back instead
    assert len(goals) == (1 if once else 2)
