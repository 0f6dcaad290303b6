"""XM430-W350 control table, Protocol 2.0 constants and unit conversions.

The only module that knows register addresses and raw units. Everything above it speaks degrees,
seconds, volts, amperes and degrees Celsius. Source: ROBOTIS e-Manual, XM430-W350 page
(the control table section).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACCEL_DEG_PER_S2",
    "ALERT_BIT",
    "BROADCAST_ID",
    "CONTROL_TABLE",
    "CURRENT_A",
    "HARDWARE_ERROR_BITS",
    "ITEMS_BY_ADDRESS",
    "MODEL_NUMBER_XM430_W350",
    "PULSES_PER_REV",
    "STATUS_ERRORS",
    "VELOCITY_DEG_PER_S",
    "VOLTAGE_V",
    "XM430_BAUD_CODES",
    "Item",
    "Status",
    "decode_block",
    "decode_hardware_error",
    "degrees_to_ticks",
    "item",
    "ticks_to_degrees",
    "to_signed",
]

MODEL_NUMBER_XM430_W350 = 1020
BROADCAST_ID = 0xFE
PULSES_PER_REV = 4096
DEGREES_PER_PULSE = 360.0 / PULSES_PER_REV  # 0.087890625
VELOCITY_DEG_PER_S = 0.229 * 360.0 / 60.0  # one Profile/Goal Velocity unit: 0.229 rpm = 1.374 deg/s
ACCEL_DEG_PER_S2 = 214.577 * 360.0 / 3600.0  # one Profile Acceleration unit: 214.577 rev/min^2
CURRENT_A = 0.00269  # one Present Current unit: 2.69 mA
VOLTAGE_V = 0.1  # one Present Input Voltage unit
ALERT_BIT = 0x80  # status-packet error byte bit 7: hardware error, read address 70

# Baud Rate register (8): bits per second -> code, every rate the XM430 supports.
XM430_BAUD_CODES = {
    9600: 0, 57600: 1, 115200: 2, 1000000: 3, 2000000: 4, 3000000: 5, 4000000: 6, 4500000: 7,
}  # fmt: skip

# Protocol 2.0 status error numbers (bits 0-6 of the error byte).
STATUS_ERRORS = {
    0x01: "result fail",
    0x02: "instruction error",
    0x03: "CRC error",
    0x04: "data range error",
    0x05: "data length error",
    0x06: "data limit error",
    0x07: "access error",
}

# Hardware Error Status (70) / Shutdown (63) bits.
HARDWARE_ERROR_BITS = {
    0x01: "input_voltage",
    0x04: "overheating",
    0x08: "motor_encoder",
    0x10: "electrical_shock",
    0x20: "overload",
}
SHUTDOWN_DEFAULT = 0x34
SHUTDOWN_ALL = 0x3D  # every documented bit: the driver's choice, so each fault cuts torque

# Operating modes (11) and Moving Status (123) bits.
MODE_CURRENT = 0
MODE_VELOCITY = 1
MODE_POSITION = 3
MODE_EXTENDED_POSITION = 4
MODE_CURRENT_POSITION = 5  # current-based position: output capped at Goal Current (102)
MODE_PWM = 16
OPERATING_MODES = (
    MODE_CURRENT,
    MODE_VELOCITY,
    MODE_POSITION,
    MODE_EXTENDED_POSITION,
    MODE_CURRENT_POSITION,
    MODE_PWM,
)
# Drive Mode (10) bits (e-Manual, firmware 45 and later for bit 3).
DRIVE_MODE_REVERSE = 0x01
DRIVE_MODE_TIME_BASED = 0x04
DRIVE_MODE_TORQUE_ON_BY_GOAL = 0x08  # fw >= 45: a goal write while torque is off enables torque
DRIVE_MODE_BITS = DRIVE_MODE_REVERSE | DRIVE_MODE_TIME_BASED | DRIVE_MODE_TORQUE_ON_BY_GOAL
# Startup Configuration (60) bits (fw >= 45).
STARTUP_TORQUE_ON = 0x01
STARTUP_RAM_RESTORE = 0x02
# Bus Watchdog (98): armed values count in 20 ms units; -1 once it expired.
BUS_WATCHDOG_UNIT = 0.02  # seconds
BUS_WATCHDOG_EXPIRED = -1
MOVING_STATUS_IN_POSITION = 0x01
MOVING_STATUS_PROFILE_ONGOING = 0x02
MOVING_STATUS_FOLLOWING_ERROR = 0x08


@dataclass(frozen=True, slots=True)
class Item:
    """One control-table item.

    Attributes:
        name: snake_case name, e.g. ``"goal_position"``.
        address: first byte.
        size: 1, 2 or 4 bytes.
        access: ``"R"`` or ``"RW"``.
        eeprom: True for the EEPROM area (writable only while torque is off).
        default: value at power-on.
        minimum / maximum: accepted range for writes (None = not range-checked).
        signed: True when the value is two's-complement.
    """

    name: str
    address: int
    size: int
    access: Literal["R", "RW"]
    eeprom: bool
    default: int
    minimum: int | None = None
    maximum: int | None = None
    signed: bool = False


def _area(eeprom: bool) -> Callable[..., Item]:
    """An `Item` maker for the EEPROM (`_e`) or the RAM (`_r`) area."""

    def item(
        name: str,
        addr: int,
        size: int,
        access: Literal["R", "RW"],
        default: int,
        lo: int | None = None,
        hi: int | None = None,
        signed: bool = False,
    ) -> Item:
        return Item(name, addr, size, access, eeprom, default, lo, hi, signed)

    return item


_e, _r = _area(eeprom=True), _area(eeprom=False)


CONTROL_TABLE: tuple[Item, ...] = (
    # EEPROM area
    _e("model_number", 0, 2, "R", MODEL_NUMBER_XM430_W350),
    _e("model_information", 2, 4, "R", 0),
    _e("firmware_version", 6, 1, "R", 48),
    _e("id", 7, 1, "RW", 1, 0, 252),
    _e("baud_rate", 8, 1, "RW", 1, 0, 7),
    _e("return_delay_time", 9, 1, "RW", 250, 0, 254),
    _e("drive_mode", 10, 1, "RW", 0, 0, 13),
    _e("operating_mode", 11, 1, "RW", 3, 0, 16),
    _e("secondary_id", 12, 1, "RW", 255, 0, 255),
    _e("protocol_type", 13, 1, "RW", 2, 1, 2),
    _e("homing_offset", 20, 4, "RW", 0, -1044479, 1044479, signed=True),
    _e("moving_threshold", 24, 4, "RW", 10, 0, 1023),
    _e("temperature_limit", 31, 1, "RW", 80, 0, 100),
    _e("max_voltage_limit", 32, 2, "RW", 160, 95, 160),
    _e("min_voltage_limit", 34, 2, "RW", 95, 95, 160),
    _e("pwm_limit", 36, 2, "RW", 885, 0, 885),
    _e("current_limit", 38, 2, "RW", 1193, 0, 1193),
    _e("velocity_limit", 44, 4, "RW", 200, 0, 1023),
    _e("max_position_limit", 48, 4, "RW", 4095, 0, 4095),
    _e("min_position_limit", 52, 4, "RW", 0, 0, 4095),
    _e("startup_configuration", 60, 1, "RW", 0, 0, 3),
    _e("shutdown", 63, 1, "RW", SHUTDOWN_DEFAULT, 0, 255),
    # RAM area
    _r("torque_enable", 64, 1, "RW", 0, 0, 1),
    _r("led", 65, 1, "RW", 0, 0, 1),
    _r("status_return_level", 68, 1, "RW", 2, 0, 2),
    _r("registered_instruction", 69, 1, "R", 0),
    _r("hardware_error_status", 70, 1, "R", 0),
    _r("velocity_i_gain", 76, 2, "RW", 1920, 0, 16383),
    _r("velocity_p_gain", 78, 2, "RW", 100, 0, 16383),
    _r("position_d_gain", 80, 2, "RW", 0, 0, 16383),
    _r("position_i_gain", 82, 2, "RW", 0, 0, 16383),
    _r("position_p_gain", 84, 2, "RW", 800, 0, 16383),
    _r("feedforward_2nd_gain", 88, 2, "RW", 0, 0, 16383),
    _r("feedforward_1st_gain", 90, 2, "RW", 0, 0, 16383),
    _r("bus_watchdog", 98, 1, "RW", 0, 0, 127, signed=True),  # reads -1 once expired
    _r("goal_pwm", 100, 2, "RW", 885, -885, 885, signed=True),
    _r("goal_current", 102, 2, "RW", 1193, -1193, 1193, signed=True),
    _r("goal_velocity", 104, 4, "RW", 0, -1023, 1023, signed=True),
    _r("profile_acceleration", 108, 4, "RW", 0, 0, 32767),
    _r("profile_velocity", 112, 4, "RW", 0, 0, 32767),
    _r("goal_position", 116, 4, "RW", 0, -1048575, 1048575, signed=True),
    _r("realtime_tick", 120, 2, "R", 0),
    _r("moving", 122, 1, "R", 0),
    _r("moving_status", 123, 1, "R", 0),
    _r("present_pwm", 124, 2, "R", 0, signed=True),
    _r("present_current", 126, 2, "R", 0, signed=True),
    _r("present_velocity", 128, 4, "R", 0, signed=True),
    _r("present_position", 132, 4, "R", 0, signed=True),
    _r("velocity_trajectory", 136, 4, "R", 0, signed=True),
    _r("position_trajectory", 140, 4, "R", 0, signed=True),
    _r("present_input_voltage", 144, 2, "R", 120),
    _r("present_temperature", 146, 1, "R", 30),
)

_BY_NAME = {i.name: i for i in CONTROL_TABLE}
ITEMS_BY_ADDRESS = {i.address: i for i in CONTROL_TABLE}


def item(name: str) -> Item:
    """Return the control-table item called `name` (KeyError for an unknown name)."""
    return _BY_NAME[name]


def to_signed(value: int, size: int) -> int:
    """Two's-complement view of an unsigned `size`-byte value (the SDK returns unsigned ints)."""
    bits = 8 * size
    value &= (1 << bits) - 1
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def ticks_to_degrees(ticks: int) -> float:
    """Present/Goal Position pulses to degrees (4096 pulses per turn, no truncation)."""
    return ticks * DEGREES_PER_PULSE


def degrees_to_ticks(degrees: float) -> int:
    """Degrees to the nearest whole pulse (4096 per turn): rounds, never truncates."""
    return round(degrees / DEGREES_PER_PULSE)


def decode_block(address: int, data: bytes | bytearray | list[int]) -> dict[str, int]:
    """Values of the items lying wholly inside `data` read from `address` (one block read).

    Reserved bytes between items are skipped; signed items are sign-converted.
    """
    raw = bytes(data)
    end = address + len(raw)
    out: dict[str, int] = {}
    for it in CONTROL_TABLE:
        if it.address >= address and it.address + it.size <= end:
            offset = it.address - address
            value = int.from_bytes(raw[offset : offset + it.size], "little")
            out[it.name] = to_signed(value, it.size) if it.signed else value
    return out


def decode_hardware_error(bits: int) -> list[str]:
    """Names of the Hardware Error Status bits set in `bits`, lowest bit first."""
    return [name for mask, name in HARDWARE_ERROR_BITS.items() if bits & mask]


@dataclass(frozen=True, slots=True)
class Status:
    """A decoded status-packet error byte."""

    alert: bool
    error: int

    @classmethod
    def from_byte(cls, byte: int) -> Status:
        """Split the byte into the alert flag (bit 7) and the error number (bits 0-6)."""
        return cls(alert=bool(byte & ALERT_BIT), error=byte & 0x7F)

    @property
    def error_name(self) -> str | None:
        """Human name of the error number, or None when it is 0."""
        return STATUS_ERRORS.get(self.error, f"error {self.error}") if self.error else None
