"""The plate-resort driver: one XM430-W350 turning a carousel of hotels, in user units.

`ResortDriver` is a plain class over an injected `Transport` (the real SDK wire, or the SDK over the
emulator's in-memory port in tests). It speaks degrees of the carousel ("resort frame"), seconds,
volts, amperes and degrees Celsius; ticks and registers stay in the private helpers. Geometry
(hotel angles, the 0..4095 goal window that never crosses the seam) is in `device_agent.geometry`.
The class is assembled from its parts, each building on the one before: `DriverConnection`
(bring-up, servo configuration, speed), `DriverReads` (position, health), `DriverStops` (emergency
stop, halt, faults, reboot) and `DriverMoves` (moves, jam and deadline supervision).

Safety rules, each enforced here:

1. `connect()`, `reconnect()` and `reboot()` never switch torque on. Only a move does, after
   every check: the hardware error status, the RAM settings (re-applied when the LED marker shows
   the servo lost power, `device_agent.servo_config`), the `interlock` (the e-stop latches of the
   agent), a present position inside the 0..360 window (a carousel turned across the seam by hand
   while torque was off is refused with `HomingError`), goal = present written and read back.
2. The servo runs in current-based position mode (5): its output is capped at the resort's
   `torque_limit`. Mode 5 has no firmware position limits; goals are computed inside 0..4095.
3. Each move arms the servo's Bus Watchdog (`WATCHDOG_UNITS` x 20 ms) and the 20 ms polls refresh
   it: if the host dies mid-move the servo stops by itself. The watchdog is cleared after the move;
   an expiry during the move raises `WatchdogExpiredError` with torque off.
4. A move has a deadline from its profile estimate (`device_agent.motion.move_deadline`) and a
   jam detector; a jam stops the motor, switches torque off and raises `JamError`.
5. `emergency_stop()` switches torque off between two transactions of a running move and reports
   whether Torque Enable reads back 0. Torque-on and the stop are serialised (`_gate`), so a move
   that was about to energise the motor either does so before the stop (which then cuts it) or
   sees the stop and does not.

Every write is checked (communication result *and* the status error number); the status alert bit
never fails a read, it makes the driver read Hardware Error Status (70) and raise
`MotorFaultError` with the decoded bit names. Shutdown is set to every documented bit, so each
hardware fault cuts torque. All bus access goes through the transport's lock, one transaction at a
time.
"""

from __future__ import annotations

from typing import Any

from device_agent.driver.connection import Interlock
from device_agent.driver.moves import DriverMoves
from device_agent.settings import DeviceConfig
from device_agent.transport import SdkTransport

__all__ = ["ResortDriver", "open_driver"]


class ResortDriver(DriverMoves):
    """Drive one plate resort through an injected transport.

    Args:
        transport: the wire to the servo (`device_agent.transport.SdkTransport`).
        config: the resort's settings (hotels, geometry, speeds, tolerances, thresholds).
        sleep: how to wait between polls (tests may pass a faster one).
        clock: monotonic clock for timeouts and durations.
        interlock: called right before torque is switched on; raises (e.g.
            `EmergencyStopError`) to refuse it. The agent passes its e-stop latches here.
    """


def open_driver(
    config: DeviceConfig, *, port_factory: Any = None, interlock: Interlock | None = None
) -> ResortDriver:
    """Build the SDK transport for ``config.serial_port`` and return a connected driver.

    Raises:
        PortLostError, PortBusyError, CommunicationError, ConfigurationError: see
            `ResortDriver.connect`.
    """
    transport = SdkTransport(
        config.serial_port, config.baudrate, config.motor_id, port_factory=port_factory
    )
    driver = ResortDriver(transport, config, interlock=interlock)
    try:
        driver.connect()
    except BaseException:
        transport.close()
        raise
    return driver
