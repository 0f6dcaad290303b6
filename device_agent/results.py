"""What the driver returns: a confirmed move and a health reading, in user units."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Health", "MoveResult"]


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
