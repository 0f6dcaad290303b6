"""The records of the plate registry: rooms, plates, reservations and history entries."""

from __future__ import annotations

import datetime
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fleet.core.errors import PlateError

__all__ = [
    "HANDOFF_KINDS",
    "PLATE_ID_PATTERN",
    "ROOM_STATES",
    "HandoffKind",
    "HistoryEntry",
    "Plate",
    "Reservation",
    "RoomRecord",
    "RoomState",
    "check_plate_id",
]

RoomState = Literal["free", "reserved", "occupied", "uncertain"]
ROOM_STATES: tuple[RoomState, ...] = ("free", "reserved", "occupied", "uncertain")
HandoffKind = Literal["store", "retrieve"]
HANDOFF_KINDS: tuple[HandoffKind, ...] = ("store", "retrieve")

#: A plate id is its barcode: 1-64 letters, digits, '-', '_', '.' or ':', starting with a letter
#: or digit.
PLATE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_PLATE_ID = re.compile(PLATE_ID_PATTERN)


def check_plate_id(plate_id: str) -> str:
    """`plate_id` if it matches `PLATE_ID_PATTERN`.

    Raises:
        PlateError: it does not (the message names the rule).
    """
    if not isinstance(plate_id, str) or not _PLATE_ID.match(plate_id):
        raise PlateError(
            f"plate id {plate_id!r}: must be 1-64 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return plate_id


@dataclass(frozen=True)
class Plate:
    """A plate: its barcode and what the lab knows about it."""

    plate_id: str
    labware: str | None = None
    owner: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    arrived_at: datetime.datetime | None = None


@dataclass(frozen=True)
class RoomRecord:
    """One room and what is (or may be) in it."""

    resort: str
    hotel: str
    room: int
    state: RoomState
    plate: str | None = None
    handoff: HandoffKind | None = None
    changed_at: datetime.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `plate, resort, hotel, room, state` first."""
        out = {
            "plate": self.plate,
            "resort": self.resort,
            "hotel": self.hotel,
            "room": self.room,
            "state": self.state,
            "handoff": self.handoff,
        }
        out["changed_at"] = self.changed_at.isoformat() if self.changed_at else None
        return out


@dataclass(frozen=True)
class Reservation:
    """A room held for one hand-off: who holds it is named by `token`."""

    kind: HandoffKind
    plate: str
    resort: str
    hotel: str
    room: int
    token: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


@dataclass(frozen=True)
class HistoryEntry:
    """One change of the registry: what, where, who, when and which flow run."""

    at: datetime.datetime
    action: str
    plate: str | None
    resort: str
    hotel: str
    room: int
    from_state: str | None
    to_state: str
    who: str
    flow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out
