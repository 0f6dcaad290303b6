"""Physics of the emulated XM430-W350: the motion profile, the shaft and what holds it back.

`plan_profile` turns Profile Velocity/Acceleration into a trajectory (the e-Manual's formulas).
`Motion` owns the shaft and the move it is making: Present Position and Velocity at any instant,
stopping (torque off, a fault, the bus watchdog) and blocking (the ``stall`` and ``jam`` faults, a
Goal Current too low to follow the profile in mode 5). Positions are in the Present Position frame
(pulses, Homing Offset and Drive Mode reverse applied), times in seconds of the model's clock.

The currents are the model's own numbers, not measurements: `CRUISE_CURRENT` units while moving
at constant velocity, `RAMP_CURRENT` more while accelerating (less while decelerating),
`HOLD_CURRENT` at rest, `STALL_CURRENT` against a ``stall``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from device_agent import control_table as ct

__all__ = [
    "CRUISE_CURRENT",
    "HOLD_CURRENT",
    "RAMP_CURRENT",
    "STALL_CURRENT",
    "STALL_FRACTION",
    "Block",
    "Motion",
    "Profile",
    "plan_profile",
]

STALL_FRACTION = 0.4  # a move started under ``stall`` stops this far along its path
CRUISE_CURRENT = 60  # Present Current units at constant velocity
RAMP_CURRENT = 40  # added while accelerating, subtracted while decelerating
HOLD_CURRENT = 4  # at rest with torque on
STALL_CURRENT = 900  # against a ``stall`` (a soft obstruction: never trips Overload)

# Why a move is held back: the ``stall`` fault (stops partway), the ``jam`` fault (cannot leave
# where it is), or ``cap``: Goal Current in mode 5 below what the profile needs.
Block = Literal["stall", "jam", "cap"]


@dataclass(slots=True)
class Profile:
    """A planned move, in present-position pulses and seconds."""

    start: float  # position at t0
    target: float
    t0: float
    t1: float  # acceleration time, s (0 = rectangular)
    t3: float  # total time, s
    v_peak: float  # pulses/s (>= 0)
    kind: int  # Moving Status profile-type bits (0x30/0x20/0x10/0x00)

    @property
    def direction(self) -> int:
        """+1 towards larger positions, -1 towards smaller."""
        return 1 if self.target >= self.start else -1

    @property
    def end(self) -> float:
        """When the trajectory reaches its target."""
        return self.t0 + self.t3

    def at(self, now: float) -> tuple[float, float]:
        """Position and velocity (pulses, pulses/s) at `now`."""
        dist = abs(self.target - self.start)
        t = now - self.t0
        if t >= self.t3:
            return self.target, 0.0
        if t <= 0:
            return self.start, 0.0
        v, t1, t3 = self.v_peak, self.t1, self.t3
        if t1 <= 0:  # rectangular
            s, vel = v * t, v
        else:
            a = v / t1
            if t < t1:
                s, vel = 0.5 * a * t * t, a * t
            elif t <= t3 - t1:
                s, vel = 0.5 * v * t1 + v * (t - t1), v
            else:
                r = t3 - t
                s, vel = dist - 0.5 * a * r * r, a * r
        return self.start + self.direction * min(s, dist), self.direction * vel

    def ramp(self, now: float) -> int:
        """+1 while accelerating, -1 while decelerating, 0 otherwise."""
        if self.t1 <= 0:
            return 0
        t = now - self.t0
        if 0 <= t < self.t1:
            return 1
        if self.t3 - self.t1 < t < self.t3:
            return -1
        return 0

    @property
    def peak_current(self) -> int:
        """The largest current magnitude the model draws along this profile."""
        return CRUISE_CURRENT + (RAMP_CURRENT if self.t1 > 0 else 0)


def plan_profile(
    start: float,
    target: float,
    pv: int,
    pa: int,
    now: float,
    vmax: int,
    time_based: bool = False,
) -> Profile:
    """Plan a profile (the e-Manual's trapezoid and triangle cases).

    Velocity-based: t1 = 64*PV/PA ms, t2 = 64*dPos/PV ms, trapezoid t3 = t1 + t2; triangle when
    the move is too short (t3 = 128*sqrt(dPos/PA) ms); PA = 0 is rectangular; PV = 0 is a step at
    `vmax`. Time-based (Drive Mode bit 2): the move lasts PV ms, accelerating for
    min(PA, PV/2) ms.
    """
    dist = abs(target - start)
    if time_based and pv > 0:
        t3 = pv / 1000.0
        t1 = min(pa, pv / 2.0) / 1000.0
        v_peak = dist / (t3 - t1) if t3 > t1 else 0.0
        kind = 0x10 if t1 == 0 else 0x20 if t1 * 2 >= t3 else 0x30
        return Profile(start, target, now, t1, t3, v_peak, kind)
    kind_none = pv == 0
    pv = vmax if pv == 0 else min(pv, vmax) if vmax > 0 else pv
    pv = max(pv, 1)
    v = pv / 64.0 * 1000.0  # pulses/s
    if dist == 0:
        return Profile(start, target, now, 0.0, 0.0, 0.0, 0x00 if kind_none else 0x10)
    if pa == 0 or kind_none:
        t3 = dist / v
        return Profile(start, target, now, 0.0, t3, v, 0x00 if kind_none else 0x10)
    t1 = 64.0 * pv / pa / 1000.0
    if (pv / 64.0) * (t1 * 1000.0) >= dist:  # triangle
        t3 = 128.0 * math.sqrt(dist / pa) / 1000.0
        v_peak = math.sqrt(pa * dist) / 64.0 * 1000.0
        return Profile(start, target, now, t3 / 2.0, t3, v_peak, 0x20)
    t3 = t1 + dist / v
    return Profile(start, target, now, t1, t3, v, 0x30)


class Motion:
    """The shaft and the move it is making.

    Args:
        frame: returns (sign, Homing Offset) of the Present Position frame: sign -1 when Drive
            Mode bit 0 (reverse) is set. Present Position = sign * shaft + offset.

    Attributes:
        shaft: the physical angle in pulses (continuous, counts turns).
        profile: the move under way (None at rest).
        limit: where the move is held back (None: free), in present-frame pulses.
        block: why it is held back.
        last_kind: Moving Status profile-type bits of the latest move.
    """

    def __init__(self, frame: Callable[[], tuple[int, int]]) -> None:
        self._frame = frame
        self.shaft = 0.0
        self.profile: Profile | None = None
        self.limit: float | None = None
        self.block: Block | None = None
        self.last_kind = 0

    # ------------------------------------------------------------------ frames

    def static(self) -> float:
        """Present Position of the shaft at rest."""
        sign, offset = self._frame()
        return sign * self.shaft + offset

    def place(self, present: float) -> None:
        """Put the shaft where Present Position reads `present`."""
        sign, offset = self._frame()
        self.shaft = (present - offset) * sign

    def reframe(self) -> None:
        """Make Present Position single-turn absolute (0..4095 + Homing Offset)."""
        sign, _ = self._frame()
        self.shaft = sign * ((sign * self.shaft) % ct.PULSES_PER_REV)

    # ------------------------------------------------------------------ state at an instant

    def present(self, now: float) -> float:
        """Present Position at `now` (pulses, fractional)."""
        prof = self.profile
        if prof is None:
            return self.static()
        pos = prof.at(now)[0]
        if self.limit is not None and prof.direction * (pos - self.limit) > 0:
            return self.limit
        return pos

    def held(self, now: float) -> bool:
        """True while the move is held at its limit: the shaft stopped short of a pending goal."""
        prof = self.profile
        if prof is None or self.limit is None:
            return False
        return prof.direction * (prof.at(now)[0] - self.limit) >= 0

    def velocity(self, now: float) -> float:
        """Present Velocity at `now` (pulses/s, signed)."""
        if self.profile is None or self.held(now):
            return 0.0
        return self.profile.at(now)[1]

    def moving(self, now: float) -> bool:
        """True while a profile runs or a held-back move still has its goal pending."""
        prof = self.profile
        return prof is not None and (self.limit is not None or now < prof.end)

    def drive_current(self, now: float) -> int:
        """The current magnitude the free move draws at `now` (0 when not moving)."""
        prof = self.profile
        if prof is None or now >= prof.end:
            return 0
        return CRUISE_CURRENT + RAMP_CURRENT * prof.ramp(now)

    # ------------------------------------------------------------------ changes

    def settle(self, now: float) -> None:
        """Fold a finished, free move into the position at rest."""
        prof = self.profile
        if prof is not None and self.limit is None and now >= prof.end:
            self.place(prof.target)
            self.profile = None

    def stop(self, now: float) -> None:
        """Stop where the shaft is at `now` (abruptly: torque off, a fault, the watchdog)."""
        self.place(self.present(now))
        self.profile = None
        self.limit = None
        self.block = None

    def start(self, prof: Profile, block: Block | None) -> None:
        """Run `prof`, held back by `block` (a zero-length move is never held)."""
        self.profile = prof
        self.last_kind = prof.kind
        if block is None or prof.target == prof.start:
            self.limit = self.block = None
        elif block == "stall":
            self.limit = prof.start + STALL_FRACTION * (prof.target - prof.start)
            self.block = block
        else:
            self.limit = prof.start
            self.block = block

    def hold_here(self, now: float, block: Block) -> None:
        """Hold a move under way where the shaft is at `now` (no effect at rest)."""
        if self.moving(now):
            self.limit = self.present(now)
            self.block = block
