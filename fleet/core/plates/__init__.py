"""The plate registry: which plate is in which room of which resort, with its history.

Every room of every resort (hotels x `rooms_per_hotel`, rooms numbered from 1) is `free`,
`reserved` (a hand-off is in progress), `occupied` (by one plate) or `uncertain` (a hand-off was
interrupted: nobody knows). A plate is in at most one room and a room holds at most one plate;
the database enforces both. Every change is one transaction and writes a history row.

* `fleet.core.plates.registry.PlateRegistry`: the operations (reserve, confirm, abort, interrupt,
  resolve, queries, import and export).
* `fleet.core.plates.database`: the engine for a URL and the schema migrations (Alembic).
* `fleet.core.plates.model`: the records the registry returns.
"""

from __future__ import annotations

from fleet.core.plates.model import (
    HANDOFF_KINDS,
    PLATE_ID_PATTERN,
    ROOM_STATES,
    HistoryEntry,
    Plate,
    Reservation,
    RoomRecord,
)
from fleet.core.plates.registry import PlateRegistry

__all__ = [
    "HANDOFF_KINDS",
    "PLATE_ID_PATTERN",
    "ROOM_STATES",
    "HistoryEntry",
    "Plate",
    "PlateRegistry",
    "Reservation",
    "RoomRecord",
]
