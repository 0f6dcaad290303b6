"""Carousel geometry and motion-profile timing: pure functions in degrees, pulses and seconds.

Hotel *i* sits at ``offset_angle + i * 360 / len(hotels)`` (resort frame). The motor angle is
``(rotation_direction * resort_angle) mod 360`` and the goal is that angle in pulses, ``0..4095``
(4096 per turn), so ``rotation_direction: -1`` turns the other way *without* negative goals. Every
move stays inside ``0..4095`` and never crosses the 0/360 seam, so a move from 350 to 10 degrees
goes the long way round (340 degrees): the carousel can never wind its cables up. That window is
the software angle limit of the driver (current-based position mode has none in firmware).
"""

from __future__ import annotations

import math

from device_agent import control_table as ct

__all__ = [
    "angle_difference",
    "goal_ticks",
    "motor_angle",
    "profile_time",
    "resort_angle",
    "wrap360",
]


def wrap360(angle: float) -> float:
    """`angle` in ``[0, 360)`` (a tiny negative float never wraps to 360.0)."""
    wrapped = angle % 360.0
    return 0.0 if wrapped >= 360.0 else wrapped  # -1e-15 % 360 == 360.0 in floating point


def angle_difference(a: float, b: float) -> float:
    """Signed shortest difference ``a - b`` in degrees, in ``[-180, 180)`` (360-degree wrap)."""
    return (a - b + 180.0) % 360.0 - 180.0


def motor_angle(resort: float, rotation_direction: int) -> float:
    """Motor angle ``[0, 360)`` for a resort-frame angle: ``(direction * angle) mod 360``."""
    return wrap360(rotation_direction * resort)


def resort_angle(motor: float, rotation_direction: int) -> float:
    """Inverse of `motor_angle`: resort-frame angle ``[0, 360)`` of a motor angle."""
    return wrap360(rotation_direction * motor)


def goal_ticks(resort: float, rotation_direction: int) -> int:
    """Goal Position (pulses, ``0..4095``) of a resort-frame angle."""
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
