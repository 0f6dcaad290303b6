"""The resort tunables of an inventory file: the `defaults:` block and each `resorts:` entry.

Input models (what a lab writes) and the built-in default of every setting. The ranges and the
device's defaults are the shared ones of `resort_common.tunables`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet.core.inventory._yaml import show_value
from fleet.core.inventory.patterns import HOST_PATTERN, LABEL_PATTERN, SLUG_PATTERN
from resort_common.tunables import (
    DEVICE_DEFAULTS,
    SDK_BAUDRATES,
    Acceleration,
    HomingOffset,
    Hotels,
    MaxCurrent,
    MaxTemperature,
    MaxVoltage,
    MinVoltage,
    MotorId,
    MoveTimeout,
    OffsetAngle,
    PositionTolerance,
    RoomsPerHotel,
    RotationDirection,
    SerialPort,
    Speed,
    TorqueLimit,
)

__all__ = ["BUILTIN_DEFAULTS", "ResortEntry", "ResortSettings"]

_INPUT = ConfigDict(extra="forbid", frozen=True, strict=True)

Baudrate = int
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]

# Built-in defaults of every setting: the device's (`resort_common.tunables`) and the fleet's own.
# `hotels` has none: set it in `defaults:` or on each resort.
BUILTIN_DEFAULTS: dict[str, Any] = {
    **DEVICE_DEFAULTS,
    "emulate": False,
    "active": True,
    "labels": [],
}

_DESCRIPTIONS = {
    "serial_port": "Serial device of the U2D2 on the resort's host. Use a stable "
    "/dev/serial/by-id/... path; relative paths (emulated resorts only) are resolved against "
    "the inventory file's directory. Default /dev/ttyUSB0.",
    "baudrate": "Bus speed in baud; one the Dynamixel SDK accepts (XM430 factory: 57600). "
    "Default 57600.",
    "motor_id": "Dynamixel ID of the carousel motor, 0-252. Default 1.",
    "hotels": "Hotel names in carousel order (1-8 unique names of 1-4 uppercase letters or "
    "digits); hotels are evenly spaced, the first at offset_angle.",
    "rooms_per_hotel": "Plate positions per hotel, 1-100 (rooms are numbered from 1). Default 20.",
    "offset_angle": "Carousel angle of the first hotel, degrees (-360 to 360). Default 0.",
    "rotation_direction": "1 or -1: which way the motor turns for increasing carousel angles. "
    "Default 1.",
    "speed": "Carousel speed in degrees per second (>0, at most 270). Default 30.",
    "acceleration": "Carousel acceleration in degrees per second squared (0 = rectangular "
    "velocity profile, at most 10000). Default 60.",
    "position_tolerance": "How close a move must end to its target, degrees (>0, at most 10). "
    "Default 1.",
    "move_timeout": "Seconds a move may take before it fails (>0, at most 600). Default 30.",
    "max_temperature": "Health warning above this motor temperature, degrees Celsius "
    "(>0, at most 100). Default 70.",
    "min_voltage": "Health warning below this input voltage, volts (0-16). Default 10.",
    "max_voltage": "Health warning above this input voltage, volts (0-20). Default 14.8.",
    "max_current": "Health warning above this motor current, amperes (>0, at most 4). Default 2.",
    "torque_limit": "Force cap of a move: the motor current (amperes) the servo may use in "
    "current-based position mode. A jammed carousel pushes with at most this; the move then "
    "fails as jammed. 0.1-3.2 (the servo's Current Limit). Default 1.0.",
    "homing_offset": "Homing Offset written to the servo (EEPROM 20), degrees (-90 to 90): shifts "
    "where the motor's 0/360 seam lies. Default 0.",
    "emulate": "true: the agent starts a motor emulator on a pty at serial_port instead of "
    "opening hardware. Default false.",
    "active": "false: out of service (never selected, not provisioned for moves). Default true.",
    "labels": "Free-form tags for selecting resorts (e.g. incubator-side). Default none.",
}


def _opt(key: str) -> Any:
    return Field(default=None, description=_DESCRIPTIONS[key])


def _reject_non_int(value: Any) -> Any:
    """Pydantic's `Literal[1, -1]` accepts true and 1.0 even in strict mode; the file does not."""
    if value is not None and type(value) is not int:
        raise ValueError(f"must be 1 or -1 (got {show_value(value)})")
    return value


class ResortSettings(BaseModel):
    """The `defaults:` block: every resort tunable, all optional."""

    model_config = _INPUT

    serial_port: SerialPort | None = _opt("serial_port")
    baudrate: Baudrate | None = _opt("baudrate")
    motor_id: MotorId | None = _opt("motor_id")
    hotels: Hotels | None = _opt("hotels")
    rooms_per_hotel: RoomsPerHotel | None = _opt("rooms_per_hotel")
    offset_angle: OffsetAngle | None = _opt("offset_angle")
    rotation_direction: RotationDirection | None = _opt("rotation_direction")
    speed: Speed | None = _opt("speed")
    acceleration: Acceleration | None = _opt("acceleration")
    position_tolerance: PositionTolerance | None = _opt("position_tolerance")
    move_timeout: MoveTimeout | None = _opt("move_timeout")
    max_temperature: MaxTemperature | None = _opt("max_temperature")
    min_voltage: MinVoltage | None = _opt("min_voltage")
    max_voltage: MaxVoltage | None = _opt("max_voltage")
    max_current: MaxCurrent | None = _opt("max_current")
    torque_limit: TorqueLimit | None = _opt("torque_limit")
    homing_offset: HomingOffset | None = _opt("homing_offset")
    emulate: bool | None = _opt("emulate")
    active: bool | None = _opt("active")
    labels: list[Label] | None = _opt("labels")

    _strict_int = field_validator("rotation_direction", mode="before")(_reject_non_int)

    @field_validator("baudrate")
    @classmethod
    def _check_baudrate(cls, value: int | None) -> int | None:
        if value is not None and value not in SDK_BAUDRATES:
            raise ValueError(
                f"must be a rate the Dynamixel SDK accepts: "
                f"{', '.join(map(str, SDK_BAUDRATES))} (got {value})"
            )
        return value

    @field_validator("hotels")
    @classmethod
    def _check_hotels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            seen: set[str] = set()
            for hotel in value:
                if hotel in seen:
                    raise ValueError(f"duplicate hotel name {hotel!r}")
                seen.add(hotel)
        return value


class ResortEntry(ResortSettings):
    """One item of `resorts:`: its name and host, plus any tunable to override `defaults:`."""

    name: str = Field(pattern=SLUG_PATTERN, description="Unique resort name (a slug).")
    host: str = Field(
        pattern=HOST_PATTERN, description="Hostname or IP address of the Pi that drives it."
    )
