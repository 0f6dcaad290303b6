"""What the driver makes the servo hold before it may move: EEPROM checks and RAM settings.

Reference section 8.8, steps 2 and 3. At connect (torque is switched off only when an EEPROM item
must change, and never switched on here):

* EEPROM, read in one span and written only where it differs (it wears): Operating Mode 5
  (current-based position: the motor output is capped at Goal Current), Drive Mode with bits
  0/2/3 clear (bit 3, "torque on by goal update", would let a goal write during an e-stop turn the
  torque back on), Startup Configuration 0 (no torque at boot, fw >= 45), Shutdown = every error
  bit, Homing Offset as configured. Current Limit must allow the configured `torque_limit` and
  PWM Limit must not be 0; those two are checked, never written.
* RAM (`RamSettings`): Profile Acceleration/Velocity, Goal Current = the torque cap, Bus Watchdog
  off, and LED on as the *marker*: a servo that lost power (or was rebooted by someone else) while
  the USB link stayed up comes back with every RAM item at its default, so LED reads 0 and the
  driver knows to re-apply everything before the next move (`needs_reapply`).

Every write here is read back.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from device_agent import control_table as ct
from device_agent.errors import ConfigurationError
from device_agent.settings import DeviceConfig
from device_agent.transport import Transport

__all__ = [
    "STARTUP_CONFIG_FIRMWARE",
    "RamSettings",
    "apply_ram",
    "check_eeprom",
    "profile_units",
    "torque_cap",
    "write_verified",
]

log = logging.getLogger(__name__)

STARTUP_CONFIG_FIRMWARE = 45  # Startup Configuration (60) and Drive Mode bit 3 exist from here
_PROFILE_MAX = 32767
_MARKER = 1  # LED value the driver leaves on the servo (0 after power-on or reboot)


@dataclass(frozen=True, slots=True)
class RamSettings:
    """The RAM items a move depends on, in register units."""

    profile_velocity: int
    profile_acceleration: int
    goal_current: int

    def mismatches(self, ram: dict[str, int]) -> list[str]:
        """`item: read X, want Y` for each item of a `read_span("torque_enable", ...)` that is
        not as configured (the marker and an armed or expired watchdog included)."""
        wanted = {
            "profile_velocity": self.profile_velocity,
            "profile_acceleration": self.profile_acceleration,
            "goal_current": self.goal_current,
            "led": _MARKER,
            "bus_watchdog": 0,
        }
        return [f"{k}: read {ram[k]}, want {v}" for k, v in wanted.items() if ram.get(k) != v]

    @staticmethod
    def lost_power(ram: dict[str, int]) -> bool:
        """True when the marker is gone: the servo's RAM was reset (power cycle or reboot)."""
        return ram.get("led") != _MARKER


def write_verified(t: Transport, name: str, value: int, who: str) -> None:
    """Write one item and read it back.

    Raises:
        ConfigurationError: the servo reads back another value.
    """
    t.write(name, value)
    back = t.read(name)
    if back != value:
        raise ConfigurationError(f"{who}: wrote {name}={value} but the servo reads back {back}")


def torque_cap(config: DeviceConfig) -> int:
    """Goal Current (2.69 mA units) for the resort's `torque_limit` (amperes)."""
    return max(1, round(config.torque_limit / ct.CURRENT_A))


def profile_units(
    who: str, speed: float, acceleration: float, velocity_limit: int
) -> tuple[int, int]:
    """Profile Velocity and Acceleration register values for deg/s and deg/s^2.

    Profile Velocity is clamped to the servo's Velocity Limit (`velocity_limit`, 0 = unknown).

    Raises:
        ConfigurationError: speed not positive, or acceleration negative.
    """
    if not (math.isfinite(speed) and speed > 0):
        raise ConfigurationError(f"speed must be a positive number of deg/s, got {speed}")
    if not (math.isfinite(acceleration) and acceleration >= 0):
        raise ConfigurationError(
            f"acceleration must be >= 0 deg/s^2 (0 = rectangular), got {acceleration}"
        )
    velocity = max(1, round(speed / ct.VELOCITY_DEG_PER_S))
    if velocity_limit and velocity > velocity_limit:
        log.warning(
            "%s: speed %.1f deg/s is above the servo's Velocity Limit (%.1f deg/s): clamped",
            who,
            speed,
            velocity_limit * ct.VELOCITY_DEG_PER_S,
        )
        velocity = velocity_limit
    accel = 0 if acceleration == 0 else max(1, round(acceleration / ct.ACCEL_DEG_PER_S2))
    return min(velocity, _PROFILE_MAX), min(accel, _PROFILE_MAX)


def check_eeprom(t: Transport, config: DeviceConfig, who: str) -> dict[str, int]:
    """Verify the EEPROM (write what differs, torque off first); return the span read.

    Raises:
        ConfigurationError: the servo cannot give the configured torque cap or has no output, or
            a write did not stick.
    """
    eeprom = t.read_span("firmware_version", "hardware_error_status")
    cap = torque_cap(config)
    if eeprom["current_limit"] < cap:
        raise ConfigurationError(
            f"{who}: torque_limit {config.torque_limit:g} A is above the servo's Current Limit "
            f"{eeprom['current_limit'] * ct.CURRENT_A:.2f} A (EEPROM 38); lower torque_limit in "
            "the inventory or raise the servo's Current Limit"
        )
    if eeprom["pwm_limit"] == 0:
        raise ConfigurationError(f"{who}: the servo's PWM Limit (EEPROM 36) is 0: it cannot move")
    wanted = {
        "operating_mode": ct.MODE_CURRENT_POSITION,  # first: a mode change resets RAM items
        "drive_mode": eeprom["drive_mode"] & ~ct.DRIVE_MODE_BITS,
        "shutdown": ct.SHUTDOWN_ALL,
        "homing_offset": ct.degrees_to_ticks(config.homing_offset),
    }
    if eeprom["firmware_version"] >= STARTUP_CONFIG_FIRMWARE:
        wanted["startup_configuration"] = 0
    changes = {name: value for name, value in wanted.items() if eeprom[name] != value}
    if changes:
        if eeprom["torque_enable"]:
            write_verified(t, "torque_enable", 0, who)
        for name, value in changes.items():
            log.info("%s: EEPROM %s %s -> %s", who, name, eeprom[name], value)
            write_verified(t, name, value, who)
            eeprom[name] = value
        eeprom["torque_enable"] = 0
    return eeprom


def apply_ram(t: Transport, ram: RamSettings, who: str) -> dict[str, int]:
    """Write the RAM settings, the marker and a cleared watchdog; verify them in one read.

    Returns:
        the span Torque Enable .. Profile Velocity as read back.

    Raises:
        ConfigurationError: a setting did not stick.
    """
    for name, value in (
        ("bus_watchdog", 0),  # also clears an expired watchdog (-1)
        ("profile_acceleration", ram.profile_acceleration),
        ("profile_velocity", ram.profile_velocity),
        ("goal_current", ram.goal_current),
        ("led", _MARKER),
    ):
        t.write(name, value)
    back = t.read_span("torque_enable", "profile_velocity")
    wrong = ram.mismatches(back)
    if wrong:
        raise ConfigurationError(f"{who}: RAM settings did not stick ({'; '.join(wrong)})")
    return back
