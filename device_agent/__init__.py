"""What runs on each Raspberry Pi: the Dynamixel driver, the motor emulator and the device worker.

Never imports `fleet` or `flows`; see docs/DESIGN.md.
"""

from __future__ import annotations

from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    EmergencyStopError,
    MotionAbortedError,
    MotorFaultError,
    MoveTimeoutError,
    NotConnectedError,
    PortLostError,
    PositionError,
    WriteRejectedError,
)
from device_agent.session import DeviceSession, current_device

__all__ = [
    "CommunicationError",
    "ConfigurationError",
    "DeviceError",
    "DeviceSession",
    "EmergencyStopError",
    "MotionAbortedError",
    "MotorFaultError",
    "MoveTimeoutError",
    "NotConnectedError",
    "PortLostError",
    "PositionError",
    "WriteRejectedError",
    "current_device",
]
