"""Every error the device side raises: one root, subclasses that are also builtins."""

from __future__ import annotations

__all__ = [
    "CommunicationError",
    "ConfigurationError",
    "DeviceError",
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
]


class DeviceError(Exception):
    """Root of every error raised by the `device_agent` package."""


class ConfigurationError(DeviceError, ValueError):
    """A device setting or a command argument is out of range (nothing was sent)."""


class CommunicationError(DeviceError, ConnectionError):
    """A transaction with the servo failed (timeout, corrupt reply, port error).

    Attributes:
        result: the SDK's COMM_* code when there is one.
    """

    def __init__(self, message: str, *, result: int | None = None) -> None:
        self.result = result
        super().__init__(message)


class PortLostError(CommunicationError):
    """The serial device disappeared (USB unplugged) or cannot be opened."""


class PortBusyError(CommunicationError):
    """Another process holds the serial port (an agent, or `device-agent ctl`).

    Attributes:
        holder: pid and command line of the holder, when they can be read.
    """

    def __init__(self, message: str, *, holder: str | None = None) -> None:
        self.holder = holder
        super().__init__(message)


class NotConnectedError(DeviceError, RuntimeError):
    """A command was given before `connect()` or after the port was lost."""


class WriteRejectedError(DeviceError):
    """The servo answered a write with an error number (range, access, length ...)."""

    def __init__(self, message: str, *, address: int, error: int) -> None:
        self.address = address
        self.error = error
        super().__init__(message)


class MotorFaultError(DeviceError):
    """The servo reports a hardware error (alert bit): torque is off until reboot.

    Attributes:
        bits: raw Hardware Error Status (address 70).
        names: decoded bit names, e.g. ``["overload"]``.
    """

    def __init__(self, message: str, *, bits: int, names: list[str]) -> None:
        self.bits = bits
        self.names = list(names)
        super().__init__(message)


class MoveTimeoutError(DeviceError, TimeoutError):
    """A move did not reach its target within `move_timeout` (stall, obstruction)."""


class PositionError(DeviceError):
    """The move ended but the position is outside `position_tolerance` of the target."""


class JamError(DeviceError):
    """The carousel stopped following its profile (following error, or no progress at the
    current cap): the motor was stopped and torque switched off.

    Attributes:
        position: resort-frame angle where it stopped, degrees.
        target: the angle the move was going to, degrees.
    """

    def __init__(self, message: str, *, position: float, target: float) -> None:
        self.position = position
        self.target = target
        super().__init__(message)


class WatchdogExpiredError(DeviceError):
    """The servo's Bus Watchdog expired during a move: the host stopped talking to it, so the
    servo stopped on its own. Torque was switched off and the watchdog cleared."""


class HomingError(DeviceError):
    """The carousel's position cannot be trusted for torque-on (turned across the 0/360 seam by
    hand while torque was off); nothing was energised."""


class MotionAbortedError(DeviceError):
    """A move was interrupted by an emergency stop or a cancellation."""


class EmergencyStopError(DeviceError, PermissionError):
    """The device is latched e-stopped: motion refused until the stop is cleared."""
