"""What runs on each Raspberry Pi: the Dynamixel driver, the motor emulator and the device worker.

Never imports `fleet` or `flows`; see docs/DESIGN.md.
"""

from __future__ import annotations

from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    EmergencyStopError,
    HomingError,
    JamError,
    MotionAbortedError,
    MotorFaultError,
    MoveTimeoutError,
    NotConnectedError,
    PortBusyError,
    PortLostError,
    PositionError,
    WatchdogExpiredError,
    WriteRejectedError,
)
from device_agent.session import DeviceSession, current_device

__all__ = [
    "CommunicationError",
    "ConfigurationError",
    "DeviceError",
    "DeviceSession",
    "EmergencyStopError",
    "HomingError",
    "JamError",
    "MotionAbortedError",
    "MotorFaultError",
    "MoveTimeoutError",
    "NotConnectedError",
    "PortBusyError",
    "PortLostError",
    "PositionError",
    "WatchdogExpiredError",
    "WriteRejectedError",
    "current_device",
]
