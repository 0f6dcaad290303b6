"""The plate-resort driver: one XM430-W350 turning a carousel of hotels, in user units.

`ResortDriver` is a plain class over an injected `Transport` (the real SDK wire, or the SDK over the
emulator's in-memory port in tests). It speaks degrees of the carousel ("resort frame"), seconds,
volts, amperes and degrees Celsius; ticks and registers stay in the private helpers. Geometry
(hotel angles, the 0..4095 goal window that never crosses the seam) is in `device_agent.geometry`.

Safety rules (reference section 8.8), each enforced here:

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

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from device_agent import control_table as ct
from device_agent import servo_config
from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    HomingError,
    JamError,
    MotionAbortedError,
    MotorFaultError,
    MoveTimeoutError,
    NotConnectedError,
    PortLostError,
    PositionError,
    WatchdogExpiredError,
    WriteRejectedError,
)
from device_agent.geometry import (
    angle_difference,
    goal_ticks,
    motor_angle,
    profile_time,
    resort_angle,
    wrap360,
)
from device_agent.motion import POLL_INTERVAL, JamDetector, PollReading, move_deadline
from device_agent.results import Health, MoveResult
from device_agent.settings import DeviceConfig
from device_agent.transport import SdkTransport, Transport

__all__ = [
    "POLL_INTERVAL",
    "WATCHDOG_UNITS",
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

SETTLE_POLLS = 3  # still polls outside tolerance before a move counts as ended short
REBOOT_SILENCE = 0.5  # the servo is silent ~0.4 s after REBOOT
REBOOT_TIMEOUT = 5.0  # give up pinging a rebooting servo after this long
#: Bus Watchdog armed for a move: 25 x 20 ms = 0.5 s without a packet stops the servo; the move
#: polls every 20 ms, so a healthy host refreshes it 25 times over.
WATCHDOG_UNITS = 25

Interlock = Callable[[], None]


# -- the driver -----------------------------------------------------------------------------------


class ResortDriver:
    """Drive one plate resort through an injected transport.

    Args:
        transport: the wire to the servo (`device_agent.transport.SdkTransport`).
        config: the resort's settings (hotels, geometry, speeds, tolerances, thresholds).
        sleep: how to wait between polls (tests may pass a faster one).
        clock: monotonic clock for timeouts and durations.
        interlock: called right before torque is switched on; raises (e.g.
            `EmergencyStopError`) to refuse it. The agent passes its e-stop latches here.
    """

    def __init__(
        self,
        transport: Transport,
        config: DeviceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        interlock: Interlock | None = None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.interlock = interlock
        self._sleep = sleep
        self._clock = clock
        self._abort = threading.Event()
        self._abort_reason = "emergency stop"
        self._motion = threading.Lock()
        self._gate = threading.Lock()  # torque-on vs emergency stop
        self._opened = False
        self._configured = False
        self._speed = config.speed
        self._acceleration = config.acceleration
        self._velocity_limit = 0
        self._ram = servo_config.RamSettings(0, 0, servo_config.torque_cap(config))
        self._seam = max(1, ct.degrees_to_ticks(config.position_tolerance))
        self.power_losses = 0  # RAM resets noticed while connected (power blips, foreign reboots)

    def __repr__(self) -> str:
        return f"ResortDriver({self.config.name!r}, port={self.config.serial_port!r})"

    @property
    def _who(self) -> str:
        return self.config.name

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
        """Open the port, check the model, verify EEPROM and apply the RAM settings.

        Never switches torque on (a move does). Torque is switched off only when an EEPROM item
        must be rewritten. A latched hardware error is left for `reboot()`, so health can still
        be read. A no-op when already done.

        Args:
            configure: False only opens and pings (read-only diagnostics, e-stop, reboot).

        Raises:
            ConfigurationError: wrong model, baud rate refused, a setting did not stick, or the
                servo cannot give the configured torque cap.
            PortLostError: the serial device is missing.
            PortBusyError: another process holds the serial port.
            CommunicationError: the servo does not answer.
        """
        if not self.transport.is_open:
            self._opened = self._configured = False
            self.transport.open()
        if not self._opened:
            model = self.transport.ping()
            if model != ct.MODEL_NUMBER_XM430_W350:
                raise ConfigurationError(
                    f"{self._who}: servo id {self.config.motor_id} on "
                    f"{self.config.serial_port} is model {model}, expected "
                    f"{ct.MODEL_NUMBER_XM430_W350} (XM430-W350)"
                )
            self._opened = True
        if configure and not self._configured:
            self._configure()
            self._configured = True
            log.info("%s: connected on %s", self._who, self.config.serial_port)

    def reconnect(self) -> None:
        """Rebuild the port object (recovery after a USB replug) and connect again (no torque)."""
        self._opened = self._configured = False
        self.transport.reopen()
        self.connect()

    def close(self) -> None:
        """Close the port. Torque stays as it is (the carousel keeps holding its position)."""
        self._opened = self._configured = False
        self.transport.close()

    def _configure(self) -> None:
        eeprom = servo_config.check_eeprom(self.transport, self.config, self._who)
        self._velocity_limit = eeprom["velocity_limit"]
        if eeprom["hardware_error_status"]:
            log.warning(
                "%s: hardware error %s latched: torque stays off until reboot",
                self._who,
                ", ".join(ct.decode_hardware_error(eeprom["hardware_error_status"])),
            )
        self._ram = self._ram_settings(self._speed, self._acceleration)
        servo_config.apply_ram(self.transport, self._ram, self._who)

    def _ram_settings(self, speed: float, acceleration: float) -> servo_config.RamSettings:
        velocity, accel = servo_config.profile_units(
            self._who, speed, acceleration, self._velocity_limit
        )
        return servo_config.RamSettings(velocity, accel, servo_config.torque_cap(self.config))

    def _require(self, *, configured: bool = True) -> None:
        if not self.transport.is_open or not (self._configured if configured else self._opened):
            raise NotConnectedError(f"{self._who}: not connected (call connect() first)")

    # -- motion -----------------------------------------------------------------------------------

    def activate_hotel(self, hotel: str) -> MoveResult:
        """Turn the carousel so `hotel` is in the access position.

        Raises:
            ConfigurationError: unknown hotel.
            MoveTimeoutError, PositionError, MotorFaultError, CommunicationError, JamError,
            WatchdogExpiredError, HomingError, MotionAbortedError: the move did not end
            confirmed in position.
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

        Kept for this driver's life (re-applied after reboot/reconnect/power loss), not written
        back to the inventory.
        """
        self._require()
        accel = self._acceleration if acceleration is None else float(acceleration)
        ram = self._ram_settings(float(speed), accel)
        servo_config.write_verified(
            self.transport, "profile_acceleration", ram.profile_acceleration, self._who
        )
        servo_config.write_verified(
            self.transport, "profile_velocity", ram.profile_velocity, self._who
        )
        self._ram = ram
        self._speed, self._acceleration = float(speed), accel

    def estimate_move_time(self, from_angle: float, to_angle: float) -> float:
        """Seconds the current profile needs between two resort angles (no seam crossing)."""
        d = self.config.rotation_direction
        pulses = goal_ticks(to_angle, d) - goal_ticks(from_angle, d)
        return profile_time(pulses, self._ram.profile_velocity, self._ram.profile_acceleration)

    def _move(self, angle: float) -> MoveResult:
        self._require()
        target = wrap360(angle)
        goal = goal_ticks(target, self.config.rotation_direction)
        with self._motion:
            self._abort.clear()
            self._abort_reason = "emergency stop"
            armed = False
            try:
                present = self._prepare_motion()
                self._check_abort()
                self.transport.write("bus_watchdog", WATCHDOG_UNITS)
                armed = True
                ram = self._ram
                estimate = profile_time(
                    goal - present, ram.profile_velocity, ram.profile_acceleration
                )
                budget = move_deadline(estimate, self.config.move_timeout)
                log.info(
                    "%s: moving to %.2f deg (goal %d, about %.2f s)",
                    self._who,
                    target,
                    goal,
                    estimate,
                )
                self._check_abort()
                started = self._clock()
                try:
                    self.transport.write("goal_position", goal)
                except WriteRejectedError:
                    self._raise_if_watchdog_expired(target)
                    raise
                if self.transport.last_alert:
                    self._raise_if_faulted("goal write")
                return self._wait(target, goal, started, budget, estimate)
            except MotionAbortedError:
                if self._abort_reason == "emergency stop":
                    # The stop may have landed between two of our writes: say it again so
                    # torque is certainly off.
                    self._safe_torque_off()
                raise
            except (MoveTimeoutError, CommunicationError, WriteRejectedError) as exc:
                if not isinstance(exc, PortLostError):
                    self._safe_torque_off()
                raise
            finally:
                if armed:
                    self._disarm_watchdog()

    def _prepare_motion(self) -> int:
        """Everything before the goal write; returns the present position (pulses)."""
        t = self.transport
        if self.interlock is not None:
            self.interlock()
        ram = t.read_span("torque_enable", "profile_velocity")
        if ram["hardware_error_status"] or t.last_alert:
            self._raise_if_faulted("before the move")
        if servo_config.RamSettings.lost_power(ram):
            self.power_losses += 1
            log.warning(
                "%s: the servo's RAM settings were reset (power loss or reboot while the link "
                "stayed up): re-applying them before the move",
                self._who,
            )
            ram = servo_config.apply_ram(t, self._ram, self._who)
        elif wrong := self._ram.mismatches(ram):
            log.warning("%s: re-applying RAM settings (%s)", self._who, "; ".join(wrong))
            ram = servo_config.apply_ram(t, self._ram, self._who)
        if ram["torque_enable"]:
            return t.read("present_position")
        log.info("%s: torque is off, enabling it for the move", self._who)
        return self._enable_torque()

    def _enable_torque(self) -> int:
        """Goal = present (read back), then torque on if the interlock allows; returns present."""
        t = self.transport
        present = t.read("present_position")
        if not self._in_window(present):
            turns = present / ct.PULSES_PER_REV
            raise HomingError(
                f"{self._who}: the motor's position count is {present} pulses "
                f"({turns:+.2f} turns): the carousel was turned across the 0/360 seam by hand "
                "while torque was off, and the driver will not wind it back. Turn it back by "
                "hand until `device-agent ctl position` reads between 0 and 360 deg, or power "
                "cycle the servo with the carousel in a known place and re-check the hotel angles"
            )
        servo_config.write_verified(t, "goal_position", present, self._who)
        with self._gate:
            self._check_abort()
            if self.interlock is not None:
                self.interlock()
            t.write("torque_enable", 1)
        if t.read("torque_enable") != 1:
            self._raise_if_faulted("torque on")
            raise ConfigurationError(f"{self._who}: Torque Enable did not stick")
        held, goal = t.read("present_position"), t.read("goal_position")
        if abs(held - goal) > self._seam:
            self._safe_torque_off()
            raise ConfigurationError(
                f"{self._who}: after torque-on the goal ({goal}) and the position ({held}) "
                "differ: torque switched off"
            )
        return held

    def _in_window(self, ticks: int) -> bool:
        """Inside the 0..4095 window (with the position tolerance): the software angle limit."""
        return -self._seam <= ticks <= ct.PULSES_PER_REV - 1 + self._seam

    def _wait(
        self, target: float, goal: int, started: float, budget: float, estimate: float
    ) -> MoveResult:
        deadline = started + budget
        tolerance = self.config.position_tolerance
        jams = JamDetector(self._ram.goal_current)
        still = 0
        while True:
            self._check_abort()
            reading = PollReading.from_span(self.transport.read_span("moving", "present_position"))
            if self.transport.last_alert:
                self._raise_if_faulted("move")
            position = self._position(reading.position)
            error = angle_difference(position, target)
            if reading.ended:
                if abs(error) <= tolerance:
                    duration = self._clock() - started
                    hotel = self._hotel_at(position)
                    log.info(
                        "%s: at %.2f deg (%s) after %.2f s",
                        self._who,
                        position,
                        hotel or "no hotel",
                        duration,
                    )
                    return MoveResult(target, position, hotel, duration)
                still += 1
                if still >= SETTLE_POLLS:
                    self._raise_if_watchdog_expired(target)
                    raise PositionError(
                        f"{self._who}: move to {target:.2f} deg ended at {position:.2f} "
                        f"deg ({error:+.2f} deg, tolerance {tolerance} deg)"
                    )
            else:
                still = 0
            jam = jams.update(self._clock(), reading)
            if jam is None and not self._in_window(reading.position):
                jam = "the carousel left the 0-360 deg window"  # software angle limit
            if jam is not None:
                self._stop_jammed()
                raise JamError(
                    f"{self._who}: carousel jammed at {position:.2f} deg on its way to "
                    f"{target:.2f} deg ({jam}); the motor was stopped and torque switched off. "
                    "Clear the obstruction, then move again",
                    position=position,
                    target=target,
                )
            if self._clock() >= deadline:
                self._raise_if_watchdog_expired(target)
                raise MoveTimeoutError(
                    f"{self._who}: move to {target:.2f} deg not done within its deadline of "
                    f"{budget:.1f} s (profile estimate {estimate:.2f} s; at {position:.2f} deg: "
                    "stalled or blocked); torque switched off"
                )
            self._sleep(POLL_INTERVAL)

    def _stop_jammed(self) -> None:
        """Hold where it is (goal = present), then torque off; best effort on each step."""
        try:
            self.transport.write("goal_position", self.transport.read("present_position"))
        except DeviceError as exc:
            log.warning("%s: could not hold the jammed motor: %s", self._who, exc)
        self._safe_torque_off()

    def _raise_if_watchdog_expired(self, target: float) -> None:
        try:
            expired = self.transport.read("bus_watchdog") == ct.BUS_WATCHDOG_EXPIRED
        except DeviceError:
            return
        if not expired:
            return
        self._safe_torque_off()
        self._disarm_watchdog()
        where = self._position(self.transport.read("present_position"))
        raise WatchdogExpiredError(
            f"{self._who}: the servo's bus watchdog expired during the move to {target:.2f} deg "
            f"(no packet for {WATCHDOG_UNITS * ct.BUS_WATCHDOG_UNIT:.1f} s): the servo stopped "
            f"at {where:.2f} deg; torque switched off"
        )

    def _disarm_watchdog(self) -> None:
        try:
            self.transport.write("bus_watchdog", 0)
        except DeviceError as exc:
            log.warning("%s: could not clear the bus watchdog: %s", self._who, exc)

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise MotionAbortedError(f"{self._who}: move aborted by {self._abort_reason}")

    def _raise_if_faulted(self, during: str) -> None:
        bits = self.transport.read("hardware_error_status")
        if bits:
            names = ct.decode_hardware_error(bits)
            self._safe_torque_off()
            raise MotorFaultError(
                f"{self._who}: hardware error {', '.join(names) or hex(bits)} ({during}); "
                "torque is off until reboot",
                bits=bits,
                names=names,
            )

    def _safe_torque_off(self) -> None:
        try:
            self.transport.write("torque_enable", 0)
        except DeviceError as exc:
            log.warning("%s: could not switch torque off: %s", self._who, exc)

    # -- stops ------------------------------------------------------------------------------------

    def emergency_stop(self) -> bool:
        """Torque off now; True once Torque Enable reads back 0.

        Safe from another thread while a move waits: the move then raises `MotionAbortedError`,
        and the torque write goes out between two of its transactions. Never raises: a stop that
        cannot be confirmed (link lost, no answer) returns False and the caller keeps trying.
        """
        with self._gate:
            self._abort_reason = "emergency stop"
            self._abort.set()
            for attempt in range(2):
                try:
                    self.transport.write("torque_enable", 0)
                    confirmed = self.transport.read("torque_enable") == 0
                except (PortLostError, NotConnectedError) as exc:
                    log.error("%s: emergency stop not confirmed: %s", self._who, exc)
                    return False
                except DeviceError as exc:
                    log.warning("%s: emergency stop attempt %d: %s", self._who, attempt + 1, exc)
                    continue
                if confirmed:
                    log.warning("%s: emergency stop: torque off (read back)", self._who)
                    return True
        log.error("%s: emergency stop not confirmed: Torque Enable does not read 0", self._who)
        return False

    def halt(self) -> None:
        """Controlled stop: goal = present position (torque stays on); a waiting move aborts."""
        if not (self._abort.is_set() and self._abort_reason == "emergency stop"):
            self._abort_reason = "halt"  # an e-stop already under way keeps precedence
        self._abort.set()
        present = self.transport.read("present_position")
        self.transport.write("goal_position", present)
        log.info("%s: halted at %.2f deg", self._who, self._position(present))

    def reboot(self) -> Health:
        """REBOOT the servo (clears latched hardware errors), wait, re-apply settings.

        Torque stays off afterwards (the next move switches it on).

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
        self._configure()
        self._configured = True
        log.info("%s: rebooted", self._who)
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

    def request_position_count(self) -> int:
        """Present Position in pulses, unwrapped (multi-turn while torque is off)."""
        self._require(configured=False)
        return self.transport.read("present_position")

    def request_active_hotel(self) -> str | None:
        """The hotel within `position_tolerance` of the present angle (360-degree wrap), or None."""
        return self._hotel_at(self.request_position())

    def request_torque(self) -> bool:
        """Torque Enable as the servo reads it."""
        self._require(configured=False)
        return bool(self.transport.read("torque_enable"))

    def request_health(self) -> Health:
        """Temperature, voltage, current, torque, moving, decoded hardware errors, warnings."""
        self._require(configured=False)
        t, c = self.transport, self.config
        state = t.read_span("torque_enable", "hardware_error_status")
        live = t.read_span("moving", "present_temperature")
        temperature = float(live["present_temperature"])
        voltage = round(live["present_input_voltage"] * ct.VOLTAGE_V, 2)
        current = round(live["present_current"] * ct.CURRENT_A, 5)
        errors = ct.decode_hardware_error(state["hardware_error_status"])
        warnings = []
        if temperature > c.max_temperature:
            warnings.append(f"temperature {temperature:.0f} C above {c.max_temperature:.0f} C")
        if voltage < c.min_voltage:
            warnings.append(f"voltage {voltage:.1f} V below {c.min_voltage:.1f} V")
        if voltage > c.max_voltage:
            warnings.append(f"voltage {voltage:.1f} V above {c.max_voltage:.1f} V")
        if abs(current) > c.max_current:
            warnings.append(f"current {abs(current):.2f} A above {c.max_current:.2f} A")
        return Health(
            temperature,
            voltage,
            current,
            bool(state["torque_enable"]),
            bool(live["moving"]),
            errors,
            warnings,
        )


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
