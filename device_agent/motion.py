"""Supervision of one running move: the poll's reading, jam detection and the move's deadline.

The driver polls a running move every `POLL_INTERVAL` seconds with one span read (Moving ..
Present Position) and hands each reading to a `JamDetector`. A jam is either the servo's own
following-error bit (Moving Status bit 3) on `FOLLOWING_POLLS` polls in a row, or the current held
at the move's cap (current-based position mode) while the position gains fewer than
`JAM_PROGRESS_PULSES` in `JAM_WINDOW` seconds (a jam is detected long before the
servo's own Overload, which needs seconds). The deadline of a move comes from its profile estimate
(`move_deadline`), never longer than the resort's `move_timeout`.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_agent import control_table as ct

__all__ = [
    "FOLLOWING_POLLS",
    "JAM_PROGRESS_PULSES",
    "JAM_WINDOW",
    "POLL_INTERVAL",
    "JamDetector",
    "PollReading",
    "move_deadline",
]

POLL_INTERVAL = 0.02  # seconds between polls of a running move
FOLLOWING_POLLS = 3  # polls in a row with the following-error bit: a jam (~60 ms)
JAM_WINDOW = 0.15  # seconds at the current cap ...
JAM_PROGRESS_PULSES = 3  # ... with less progress than this (0.26 deg): a jam
AT_CAP = 0.9  # |current| at or above this fraction of the cap counts as "at the cap"
DEADLINE_FACTOR = 1.5  # a move may take this much longer than its profile estimate ...
DEADLINE_MARGIN = 1.0  # ... plus this many seconds


def move_deadline(estimate: float, move_timeout: float) -> float:
    """Seconds a move may take: its profile estimate with margin, at most `move_timeout`."""
    return min(move_timeout, estimate * DEADLINE_FACTOR + DEADLINE_MARGIN)


@dataclass(frozen=True, slots=True)
class PollReading:
    """One poll of a running move (raw units from the span Moving .. Present Position)."""

    moving: bool
    profile_ongoing: bool
    following_error: bool
    current: int  # Present Current, 2.69 mA units, signed
    position: int  # Present Position, pulses, signed (multi-turn in mode 5)

    @classmethod
    def from_span(cls, span: dict[str, int]) -> PollReading:
        """Decode `transport.read_span("moving", "present_position")`."""
        status = span["moving_status"]
        return cls(
            moving=bool(span["moving"]),
            profile_ongoing=bool(status & ct.MOVING_STATUS_PROFILE_ONGOING),
            following_error=bool(status & ct.MOVING_STATUS_FOLLOWING_ERROR),
            current=span["present_current"],
            position=span["present_position"],
        )

    @property
    def ended(self) -> bool:
        """The servo considers the move over (neither Moving nor a profile under way)."""
        return not self.moving and not self.profile_ongoing


class JamDetector:
    """Tells a jammed move from a running one, one poll at a time.

    Args:
        cap: the move's current cap (Goal Current, 2.69 mA units).
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._following = 0
        self._at_cap_since: tuple[float, int] | None = None

    def update(self, now: float, reading: PollReading) -> str | None:
        """Feed one poll taken at `now` (seconds); returns why the move is jammed, or None."""
        self._following = self._following + 1 if reading.following_error else 0
        if self._following >= FOLLOWING_POLLS:
            return "the servo reports a following error"
        if self.cap > 0 and abs(reading.current) >= AT_CAP * self.cap:
            if self._at_cap_since is None:
                self._at_cap_since = (now, reading.position)
            else:
                since, position = self._at_cap_since
                if abs(reading.position - position) >= JAM_PROGRESS_PULSES:
                    self._at_cap_since = (now, reading.position)
                elif now - since >= JAM_WINDOW:
                    return (
                        f"no progress for {now - since:.2f} s at the current cap "
                        f"({self.cap * ct.CURRENT_A:.2f} A)"
                    )
        else:
            self._at_cap_since = None
        return None
