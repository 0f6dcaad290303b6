"""The driver's moves: to a hotel, home or an angle, with the checks before torque-on and the poll.

A move re-checks everything before it energises the motor (`_prepare_motion`), arms the servo's
Bus Watchdog for its duration, writes the goal and polls until the carousel is confirmed within
tolerance (`_wait`), watching for jams and its deadline (`device_agent.motion`). Any other ending
raises, with torque off where the motor could still push.
"""

from __future__ import annotations

import logging
import math

from device_agent import control_table as ct
from device_agent import servo_config
from device_agent.driver.stops import DriverStops
from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    HomingError,
    JamError,
    MotionAbortedError,
    MoveTimeoutError,
    PortLostError,
    PositionError,
    WatchdogExpiredError,
    WriteRejectedError,
)
from device_agent.geometry import angle_difference, goal_ticks, profile_time, wrap360
from device_agent.motion import POLL_INTERVAL, JamDetector, PollReading, move_deadline
from device_agent.results import MoveResult

__all__ = ["SETTLE_POLLS", "WATCHDOG_UNITS", "DriverMoves"]

log = logging.getLogger(__name__)

SETTLE_POLLS = 3  # still polls outside tolerance before a move counts as ended short
#: Bus Watchdog armed for a move: 25 x 20 ms = 0.5 s without a packet stops the servo; the move
#: polls every 20 ms, so a healthy host refreshes it 25 times over.
WATCHDOG_UNITS = 25


class DriverMoves(DriverStops):
    """The moves of `ResortDriver` and their supervision."""

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
                    self.transport.write_once("goal_position", goal)
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
