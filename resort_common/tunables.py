"""The allowed range and built-in default of every tunable of a resort, in user units.

The inventory (`fleet.core.inventory`) validates a lab's file against these types, and the device
agent's settings (`device_agent.settings.DeviceConfig`) use the same ones, so a value the
inventory accepts is one the agent accepts. Units: degrees, seconds, volts, amperes, Celsius.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

__all__ = [
    "DEVICE_DEFAULTS",
    "HOTEL_PATTERN",
    "MAX_ACCELERATION",
    "MAX_SPEED",
    "MAX_TORQUE_LIMIT",
    "SDK_BAUDRATES",
    "Acceleration",
    "HomingOffset",
    "Hotel",
    "Hotels",
    "MaxCurrent",
    "MaxTemperature",
    "MaxVoltage",
    "MinVoltage",
    "MotorId",
    "MoveTimeout",
    "OffsetAngle",
    "PositionTolerance",
    "RoomsPerHotel",
    "RotationDirection",
    "SerialPort",
    "Speed",
    "TorqueLimit",
]

#: Baud rates the Dynamixel SDK's `PortHandler.setBaudRate` accepts (it refuses any other).
SDK_BAUDRATES: tuple[int, ...] = (
    9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600,
    1000000, 1152000, 2000000, 2500000, 3000000, 3500000, 4000000,
)  # fmt: skip

#: 1-4 uppercase letters or digits, as labelled on the hardware.
HOTEL_PATTERN = r"^[A-Z0-9]{1,4}$"
#: deg/s: the carousel's top speed (`speed`, `fleet speed`).
MAX_SPEED = 270.0
#: deg/s^2: the steepest velocity profile (`acceleration`).
MAX_ACCELERATION = 10000.0
#: amperes: the servo's Current Limit (EEPROM 38) at its factory value is 1193 x 2.69 mA.
MAX_TORQUE_LIMIT = 3.2

SerialPort = Annotated[str, Field(min_length=1, max_length=4096)]
MotorId = Annotated[int, Field(ge=0, le=252)]
Hotel = Annotated[str, Field(pattern=HOTEL_PATTERN)]
Hotels = Annotated[list[Hotel], Field(min_length=1, max_length=8)]
RoomsPerHotel = Annotated[int, Field(ge=1, le=100)]
OffsetAngle = Annotated[float, Field(ge=-360.0, le=360.0)]
RotationDirection = Literal[1, -1]
Speed = Annotated[float, Field(gt=0, le=MAX_SPEED)]
Acceleration = Annotated[float, Field(ge=0, le=MAX_ACCELERATION)]
PositionTolerance = Annotated[float, Field(gt=0, le=10.0)]
MoveTimeout = Annotated[float, Field(gt=0, le=600.0)]
MaxTemperature = Annotated[float, Field(gt=0, le=100.0)]
MinVoltage = Annotated[float, Field(ge=0, le=16.0)]
MaxVoltage = Annotated[float, Field(ge=0, le=20.0)]
MaxCurrent = Annotated[float, Field(gt=0, le=4.0)]
TorqueLimit = Annotated[float, Field(ge=0.1, le=MAX_TORQUE_LIMIT)]
HomingOffset = Annotated[float, Field(ge=-90.0, le=90.0)]

#: Built-in default of every device tunable (`hotels` has none: it is always set).
DEVICE_DEFAULTS: dict[str, Any] = {
    "serial_port": "/dev/ttyUSB0",
    "baudrate": 57600,
    "motor_id": 1,
    "rooms_per_hotel": 20,
    "offset_angle": 0.0,
    "rotation_direction": 1,
    "speed": 30.0,
    "acceleration": 60.0,
    "position_tolerance": 1.0,
    "move_timeout": 30.0,
    "max_temperature": 70.0,
    "min_voltage": 10.0,
    "max_voltage": 14.8,
    "max_current": 2.0,
    "torque_limit": 1.0,
    "homing_offset": 0.0,
}
