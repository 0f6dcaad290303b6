"""The plate-resort driver: one XM430-W350 turning a carousel of hotels, in user units.

`ResortDriver` is a plain class over an injected `Transport` (the real SDK wire, or the SDK over the
emulator's in-memory port in tests). It speaks degrees of the carousel ("resort frame"), seconds,
volts, amperes and degrees Celsius; ticks and registers stay in the private helpers.

Geometry: hotel *i* sits at ``offset_angle + i * 360 / len(hotels)`` (resort frame). The motor
angle is ``(rotation_direction * resort_angle) mod 360`` and the goal is that angle in pulses,
``0..4095`` (4096 per turn), so ``rotation_direction: -1`` turns the other way *without* negative
goals, which position mode refuses. The servo runs in single-turn position mode (3): every move
stays inside ``0..4095`` and never crosses the 0/360 seam, so a move from 350 to 10 degrees goes
the long way round (340 degrees). That is deliberate: the carousel can never wind its cables up.

Profile units (velocity-based profile, Drive Mode bit 2 = 0): ``speed`` in deg/s becomes Profile
Velocity ``round(speed / 1.374)`` (0.229 rpm per unit), clamped to the servo's Velocity Limit (44);
``acceleration`` in deg/s^2 becomes Profile Acceleration ``round(acceleration / 21.46)`` (214.577
rev/min^2 per unit), 0 meaning a rectangular profile. Motor and carousel turn 1:1.

Every write is checked (communication result *and* the status error number); the status alert bit
never fails a read, it makes the driver read Hardware Error Status (70) and raise
`MotorFaultError` with the decoded bit names. Shutdown is set to every documented bit, so each
hardware fault cuts torque. All bus access goes through the transport's lock, one transaction at a
time, so `emergency_stop()` from another thread reaches the wire between two polls of a move.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from device_agent import control_table as ct
from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    MotionAbortedError,
    MotorFaultError,
    MoveTimeoutError,
    NotConnectedError,
    PortLostError,
    PositionError,
)
from device_agent.settings import DeviceConfig
from device_agent.transport import SdkTransport, Transport

__all__ = [
    "Health",
    "MoveResult",
    "ResortDriver",
    "angle_difference",
    "motor_angle",
    "open_driver",
    "profile_time",
    "resort_angle",
]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.02  # seconds between polls of a running move
SETTLE_POLLS = 3  # still polls outside tolerance before a move counts as ended short
REBOOT_SILENCE = 0.5  # the servo is silent ~0.4 s after REBOOT
REBOOT_TIMEOUT = 5.0  # give up pinging a rebooting servo after this long
_PROFILE_MAX = 32767
_DRIVE_MODE_FORBIDDEN = 0x05  # bit0 reverse (we turn by geometry), bit2 time-based profile


# -- geometry (pure functions) --------------------------------------------------------------------


def _wrap360(angle: float) -> float:
    wrapped = angle % 360.0
    return 0.0 if wrapped >= 360.0 else wrapped  # -1e-15 % 360 == 360.0 in floating point


def angle_difference(a: float, b: float) -> float:
    """Signed shortest difference ``a - b`` in degrees, in ``[-180, 180)`` (360-degree wrap)."""
    return (a - b + 180.0) % 360.0 - 180.0


def motor_angle(resort: float, rotation_direction: int) -> float:
    """Motor angle ``[0, 360)`` for a resort-frame angle: ``(direction * angle) mod 360``."""
    return _wrap360(rotation_direction * resort)


def resort_angle(motor: float, rotation_direction: int) -> float:
    """Inverse of `motor_angle`: resort-frame angle ``[0, 360)`` of a motor angle."""
    return _wrap360(rotation_direction * motor)


def _goal_ticks(resort: float, rotation_direction: int) -> int:
    # Rounding 359.99 deg gives 4096: fold it back to 0 so the goal stays within 0..4095.
    return ct.degrees_to_ticks(motor_angle(resort, rotation_direction)) % ct.PULSES_PER_REV


def profile_time(pulses: float, velocity: int, acceleration: int) -> float:
    """Seconds the servo's velocity-based profile takes for a move (manual's timing formulas).

    Args:
        pulses: distance in pulses (4096 per turn).
        velocity: Profile Velocity register value (0.229 rpm units); 0 = no profile (returns 0).
        acceleration: Profile Acceleration register value; 0 = rectangular profile.
    """
    distance = abs(pulses)
    if velocity <= 0 or distance == 0:
        return 0.0
    if acceleration <= 0:
        return 64.0 * distance / velocity / 1000.0
    t1 = 64.0 * velocity / acceleration
    if (velocity / 64.0) * t1 >= distance:  # never reaches the profile velocity
        return 128.0 * math.sqrt(distance / acceleration) / 1000.0
    return (t1 + 64.0 * distance / velocity) / 1000.0


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveResult:
    """A move the servo confirmed within tolerance.

    Attributes:
        target: requested resort-frame angle, degrees ``[0, 360)``.
        position: confirmed resort-frame angle, degrees ``[0, 360)``.
        hotel: hotel now in position (None when the angle is between hotels).
        duration: seconds from the goal write to confirmation.
    """

    target: float
    position: float
    hotel: str | None
    duration: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Health:
    """One health reading of the servo, in user units.

    Attributes:
        temperature: degrees Celsius (146).
        voltage: input volts (144).
        current: amperes, signed (126).
        torque: Torque Enable (64).
        moving: Moving (122).
        hardware_errors: decoded Hardware Error Status (70), e.g. ``["overload"]``.
        warnings: readings outside the configured thresholds, one sentence each.
    """

    temperature: float
    voltage: float
    current: float
    torque: bool
    moving: bool
    hardware_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is neither a hardware error nor a warning."""
        return not self.hardware_errors and not self.warnings

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


# -- the driver -----------------------------------------------------------------------------------


class ResortDriver:
    """Drive one plate resort through an injected transport.

    Args:
        transport: the wire to the servo (`device_agent.transport.SdkTransport`).
        config: the resort's settings (hotels, geometry, speeds, tolerances, thresholds).
        sleep: how to wait between polls (tests may pass a faster one).
        clock: monotonic clock for timeouts and durations.
    """

    def __init__(
        self,
        transport: Transport,
        config: DeviceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.config = config
        self._sleep = sleep
        self._clock = clock
        self._abort = threading.Event()
        self._abort_reason = "emergency stop"
        self._motion = threading.Lock()
        self._opened = False
        self._configured = False
        self._speed = config.speed
        self._acceleration = config.acceleration
        self._velocity_limit = 0
        self._profile = (0, 0)

    def __repr__(self) -> str:
        return f"ResortDriver({self.config.name!r}, port={self.config.serial_port!r})"

    # -- connection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True after a successful `connect()` (settings applied) until `close()`."""
        return self._configured and self.transport.is_open

    @property
    def speed(self) -> float:
        """Carousel speed in use, deg/s (the config's until `set_speed`)."""
        return self._speed

    @property
    def acceleration(self) -> float:
        """Carousel acceleration in use, deg/s^2 (0 = rectangular profile)."""
        return self._acceleration

    def connect(self, *, configure: bool = True) -> None:
        """Open the port, check the model and apply the settings; a no-op when already done.

        Steps: ping (model must be 1020); if Operating Mode, Shutdown or Drive Mode differ, torque
        off and write them (EEPROM, only when needed: it wears); Profile Velocity/Acceleration
        from the config; torque on (goal = present position first, so nothing jumps). Every write
        is read back. A latched hardware error leaves torque off (`reboot()` clears it) instead
        of failing, so health can still be read and the servo rebooted.

        Args:
            configure: False only opens and pings (for read-only diagnostics, e-stop).

        Raises:
            ConfigurationError: wrong model, baud rate refused, or a setting did not stick.
            PortLostError: the serial device is missing.
            CommunicationError: the servo does not answer.
        """
        if not self.transport.is_open:
            self._opened = self._configured = False
            self.transport.open()
        if not self._opened:
            model = self.transport.ping()
            if model != ct.MODEL_NUMBER_XM430_W350:
                raise ConfigurationError(
                    f"{self.config.name}: servo id {self.config.motor_id} on "
                    f"{self.config.serial_port} is model {model}, expected "
                    f"{ct.MODEL_NUMBER_XM430_W350} (XM430-W350)"
                )
            self._opened = True
        if configure and not self._configured:
            self._apply_settings()
            self._configured = True
            log.info("%s: connected on %s", self.config.name, self.config.serial_port)

    def reconnect(self) -> None:
        """Rebuild the port object (recovery after a USB replug) and connect again."""
        self._opened = self._configured = False
        self.transport.reopen()
        self.connect()

    def close(self) -> None:
        """Close the port. Torque stays as it is (the carousel keeps holding its position)."""
        self._opened = self._configured = False
        self.transport.close()

    def _apply_settings(self) -> None:
        t = self.transport
        faults = t.read("hardware_error_status")
        self._velocity_limit = t.read("velocity_limit")
        drive_mode = t.read("drive_mode")
        wanted = {
            "operating_mode": ct.MODE_POSITION,
            "shutdown": ct.SHUTDOWN_ALL,
            "drive_mode": drive_mode & ~_DRIVE_MODE_FORBIDDEN,
        }
        changes = {name: v for name, v in wanted.items() if t.read(name) != v}
        torque = t.read("torque_enable")
        if changes:
            if torque:
                self._write_verified("torque_enable", 0)
                torque = 0
            for name, value in changes.items():
                self._write_verified(name, value)
        self._write_profile(self._speed, self._acceleration)
        if faults:
            log.warning(
                "%s: hardware error %s latched: torque stays off until reboot",
                self.config.name,
                ", ".join(ct.decode_hardware_error(faults)),
            )
            return
        if not torque:
            self._torque_on()

    def _torque_on(self, *, abortable: bool = False) -> None:
        t = self.transport
        # With torque off Present Position is a multi-turn count; torque-on in position mode
        # makes it single-turn absolute (count mod 4096): hold exactly there, nothing jumps.
        present = t.read("present_position")
        self._write_verified("goal_position", present % ct.PULSES_PER_REV)
        if abortable:
            self._check_abort()
        t.write("torque_enable", 1)
        if t.read("torque_enable") != 1:
            self._raise_if_faulted("torque on")
            raise ConfigurationError(f"{self.config.name}: Torque Enable did not stick")

    def _write_verified(self, name: str, value: int) -> None:
        self.transport.write(name, value)
        back = self.transport.read(name)
        if back != value:
            raise ConfigurationError(
                f"{self.config.name}: wrote {name}={value} but the servo reads back {back}"
            )

    def _profile_units(self, speed: float, acceleration: float) -> tuple[int, int]:
        if not (math.isfinite(speed) and speed > 0):
            raise ConfigurationError(f"speed must be a positive number of deg/s, got {speed}")
        if not (math.isfinite(acceleration) and acceleration >= 0):
            raise ConfigurationError(
                f"acceleration must be >= 0 deg/s^2 (0 = rectangular), got {acceleration}"
            )
        velocity = max(1, round(speed / ct.VELOCITY_DEG_PER_S))
        if self._velocity_limit and velocity > self._velocity_limit:
            log.warning(
                "%s: speed %.1f deg/s is above the servo's Velocity Limit (%.1f deg/s): clamped",
                self.config.name,
                speed,
                self._velocity_limit * ct.VELOCITY_DEG_PER_S,
            )
            velocity = self._velocity_limit
        accel = 0 if acceleration == 0 else max(1, round(acceleration / ct.ACCEL_DEG_PER_S2))
        return min(velocity, _PROFILE_MAX), min(accel, _PROFILE_MAX)

    def _write_profile(self, speed: float, acceleration: float) -> None:
        velocity, accel = self._profile_units(speed, acceleration)
        self._write_verified("profile_acceleration", accel)
        self._write_verified("profile_velocity", velocity)
        self._profile = (velocity, accel)

    def _require(self, *, configured: bool = True) -> None:
        if not self.transport.is_open or not (self._configured if configured else self._opened):
            raise NotConnectedError(f"{self.config.name}: not connected (call connect() first)")

    # -- motion -----------------------------------------------------------------------------------

    def activate_hotel(self, hotel: str) -> MoveResult:
        """Turn the carousel so `hotel` is in the access position.

        Raises:
            ConfigurationError: unknown hotel.
            MoveTimeoutError, PositionError, MotorFaultError, CommunicationError,
            MotionAbortedError: the move did not end confirmed in position.
        """
        return self._move(self.config.hotel_angle(hotel))

    def go_home(self) -> MoveResult:
        """Move to resort angle 0 (hotel A only when ``offset_angle`` is 0)."""
        return self._move(0.0)

    def move_to_angle(self, angle: float) -> MoveResult:
        """Move to a resort-frame angle in degrees (taken modulo 360)."""
        try:
            angle = float(angle)
        except (TypeError, ValueError):
            raise ConfigurationError(f"angle must be a number of degrees, got {angle!r}") from None
        if not math.isfinite(angle):
            raise ConfigurationError(f"angle must be a finite number of degrees, got {angle}")
        return self._move(angle)

    def set_speed(self, speed: float, acceleration: float | None = None) -> None:
        """Set the carousel speed (deg/s) and optionally acceleration (deg/s^2, 0 = rectangular).

        Kept for this driver's life (re-applied after reboot/reconnect), not written back to the
        inventory.
        """
        self._require()
        accel = self._acceleration if acceleration is None else float(acceleration)
        self._write_profile(float(speed), accel)
        self._speed, self._acceleration = float(speed), accel

    def estimate_move_time(self, from_angle: float, to_angle: float) -> float:
        """Seconds the current profile needs between two resort angles (no seam crossing)."""
        d = self.config.rotation_direction
        pulses = _goal_ticks(to_angle, d) - _goal_ticks(from_angle, d)
        return profile_time(pulses, *self._profile)

    def _move(self, angle: float) -> MoveResult:
        self._require()
        target = _wrap360(angle)
        goal = _goal_ticks(target, self.config.rotation_direction)
        with self._motion:
            self._abort.clear()
            self._abort_reason = "emergency stop"
            try:
                self._prepare_motion()
            except MotionAbortedError:
                self._safe_torque_off()
                raise
            started = self._clock()
            log.info("%s: moving to %.2f deg (goal %d)", self.config.name, target, goal)
            try:
                self._check_abort()
                self.transport.write("goal_position", goal)
                if self.transport.last_alert:
                    self._raise_if_faulted("goal write")
                return self._wait(target, started)
            except MotionAbortedError:
                if self._abort_reason == "emergency stop":
                    # The stop may have landed between two of our writes (say, before a torque-on
                    # of this move): say it again so torque is certainly off.
                    self._safe_torque_off()
                raise
            except (MoveTimeoutError, CommunicationError) as exc:
                if not isinstance(exc, PortLostError):
                    self._safe_torque_off()
                raise

    def _prepare_motion(self) -> None:
        self._raise_if_faulted("before the move")
        if not self.transport.read("torque_enable"):
            log.info("%s: torque was off, enabling it", self.config.name)
            self._torque_on(abortable=True)

    def _wait(self, target: float, started: float) -> MoveResult:
        deadline = started + self.config.move_timeout
        tolerance = self.config.position_tolerance
        still = 0
        while True:
            moving = self._poll("moving")
            status = self._poll("moving_status")
            position = self._position(self._poll("present_position"))
            error = angle_difference(position, target)
            if not moving and not status & ct.MOVING_STATUS_PROFILE_ONGOING:
                if abs(error) <= tolerance:
                    duration = self._clock() - started
                    hotel = self._hotel_at(position)
                    log.info(
                        "%s: at %.2f deg (%s) after %.2f s",
                        self.config.name,
                        position,
                        hotel or "no hotel",
                        duration,
                    )
                    return MoveResult(target, position, hotel, duration)
                still += 1
                if still >= SETTLE_POLLS:
                    raise PositionError(
                        f"{self.config.name}: move to {target:.2f} deg ended at {position:.2f} "
                        f"deg ({error:+.2f} deg, tolerance {tolerance} deg)"
                    )
            else:
                still = 0
            if self._clock() >= deadline:
                raise MoveTimeoutError(
                    f"{self.config.name}: move to {target:.2f} deg not done after "
                    f"{self.config.move_timeout} s (at {position:.2f} deg: stalled or blocked); "
                    "torque switched off"
                )
            self._sleep(POLL_INTERVAL)

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise MotionAbortedError(f"{self.config.name}: move aborted by {self._abort_reason}")

    def _poll(self, name: str) -> int:
        """One read of a running move: aborts first, then decodes an alert."""
        self._check_abort()
        value = self.transport.read(name)
        if self.transport.last_alert:
            self._raise_if_faulted("move")
        return value

    def _raise_if_faulted(self, during: str) -> None:
        bits = self.transport.read("hardware_error_status")
        if bits:
            names = ct.decode_hardware_error(bits)
            self._safe_torque_off()
            raise MotorFaultError(
                f"{self.config.name}: hardware error {', '.join(names) or hex(bits)} ({during}); "
                "torque is off until reboot",
                bits=bits,
                names=names,
            )

    def _safe_torque_off(self) -> None:
        try:
            self.transport.write("torque_enable", 0)
        except DeviceError as exc:
            log.warning("%s: could not switch torque off: %s", self.config.name, exc)

    # -- stops ------------------------------------------------------------------------------------

    def emergency_stop(self) -> None:
        """Torque off now. Safe from another thread while a move waits: the move then raises
        `MotionAbortedError`, and the torque write goes out between two of its transactions.

        Raises:
            CommunicationError: the torque-off write was not acknowledged (retried once).
        """
        self._abort_reason = "emergency stop"
        self._abort.set()
        try:
            self.transport.write("torque_enable", 0)
        except PortLostError:
            raise
        except CommunicationError:
            self.transport.write("torque_enable", 0)
        log.warning("%s: emergency stop: torque off", self.config.name)

    def halt(self) -> None:
        """Controlled stop: goal = present position (torque stays on); a waiting move aborts."""
        if not (self._abort.is_set() and self._abort_reason == "emergency stop"):
            self._abort_reason = "halt"  # an e-stop already under way keeps precedence
        self._abort.set()
        present = self.transport.read("present_position")
        self.transport.write("goal_position", min(max(present, 0), ct.PULSES_PER_REV - 1))
        log.info("%s: halted at %.2f deg", self.config.name, self._position(present))

    def reboot(self) -> Health:
        """REBOOT the servo (clears latched hardware errors), wait, re-apply settings.

        Returns:
            Health after the reboot.

        Raises:
            CommunicationError: the servo did not answer within a few seconds.
        """
        self._require(configured=False)
        self.transport.reboot()
        self._configured = False
        self._sleep(REBOOT_SILENCE)
        deadline = self._clock() + REBOOT_TIMEOUT
        while True:
            try:
                self.transport.ping()
                break
            except PortLostError:
                raise
            except CommunicationError:
                if self._clock() >= deadline:
                    raise
                self._sleep(0.1)
        self._apply_settings()
        self._configured = True
        log.info("%s: rebooted", self.config.name)
        return self.request_health()

    # -- queries ----------------------------------------------------------------------------------

    def _position(self, ticks: int) -> float:
        return resort_angle(ct.ticks_to_degrees(ticks), self.config.rotation_direction)

    def _hotel_at(self, position: float) -> str | None:
        best, best_error = None, math.inf
        for hotel in self.config.hotels:
            error = abs(angle_difference(position, self.config.hotel_angle(hotel)))
            if error < best_error:
                best, best_error = hotel, error
        return best if best_error <= self.config.position_tolerance else None

    def request_position(self) -> float:
        """Present resort-frame angle in degrees ``[0, 360)`` (valid even with an alert)."""
        self._require(configured=False)
        return self._position(self.transport.read("present_position"))

    def request_active_hotel(self) -> str | None:
        """The hotel within `position_tolerance` of the present angle (360-degree wrap), or None."""
        return self._hotel_at(self.request_position())

    def request_health(self) -> Health:
        """Temperature, voltage, current, torque, moving, decoded hardware errors, warnings."""
        self._require(configured=False)
        t, c = self.transport, self.config
        temperature = float(t.read("present_temperature"))
        voltage = round(t.read("present_input_voltage") * ct.VOLTAGE_V, 2)
        current = round(t.read("present_current") * ct.CURRENT_A, 5)
        torque = bool(t.read("torque_enable"))
        moving = bool(t.read("moving"))
        errors = ct.decode_hardware_error(t.read("hardware_error_status"))
        warnings = []
        if temperature > c.max_temperature:
            warnings.append(f"temperature {temperature:.0f} C above {c.max_temperature:.0f} C")
        if voltage < c.min_voltage:
            warnings.append(f"voltage {voltage:.1f} V below {c.min_voltage:.1f} V")
        if voltage > c.max_voltage:
            warnings.append(f"voltage {voltage:.1f} V above {c.max_voltage:.1f} V")
        if abs(current) > c.max_current:
            warnings.append(f"current {abs(current):.2f} A above {c.max_current:.2f} A")
        return Health(temperature, voltage, current, torque, moving, errors, warnings)


def open_driver(config: DeviceConfig, *, port_factory: Any = None) -> ResortDriver:
    """Build the SDK transport for ``config.serial_port`` and return a connected driver.

    Raises:
        PortLostError, CommunicationError, ConfigurationError: see `ResortDriver.connect`.
    """
    transport = SdkTransport(
        config.serial_port, config.baudrate, config.motor_id, port_factory=port_factory
    )
    driver = ResortDriver(transport, config)
    try:
        driver.connect()
    except BaseException:
        transport.close()
        raise
    return driver
