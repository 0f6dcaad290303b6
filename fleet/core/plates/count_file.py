"""A physical inventory count as CSV: reading one (line-numbered errors) and writing one.

Columns: `resort,hotel,room,plate` and optionally `labware,owner`. Every row is an occupied
room; rooms not listed are empty. `fleet plates import` applies a file all or nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleet.core.errors import PlateError
from fleet.core.plates.model import Plate, RoomRecord, check_plate_id
from fleet.core.plates.operator_tools import Counted

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["COLUMNS", "parse_count", "write_count"]

#: Required columns, then the optional ones.
COLUMNS = ("resort", "hotel", "room", "plate")
OPTIONAL = ("labware", "owner")


def parse_count(text: str, source: str, inv: Inventory) -> list[Counted]:
    """The rows of a count file, checked against the inventory's resorts, hotels and rooms.

    Raises:
        PlateError: every problem, one line each as `FILE:LINE: column: reason` (nothing read
            is applied).
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS + OPTIONAL]
    if missing or unknown:
        wants = ", ".join(COLUMNS) + f" (optional: {', '.join(OPTIONAL)})"
        raise PlateError(
            f"{source}:1: header must name the columns {wants}, got {', '.join(header)}"
        )
    resorts = {r.name: r for r in inv.resorts}
    rows: list[Counted] = []
    problems: list[str] = []
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        try:
            rows.append(_row(row, resorts))
        except PlateError as exc:
            problems.append(f"{source}:{line}: {exc}")
    if problems:
        raise PlateError("\n".join(problems))
    return rows


def _row(row: dict[str, str], resorts: dict[str, Any]) -> Counted:
    resort = resorts.get(row["resort"])
    if resort is None:
        raise PlateError(f"resort: unknown resort {row['resort']!r} (known: {', '.join(resorts)})")
    if row["hotel"] not in resort.hotels:
        raise PlateError(
            f"hotel: {resort.name} has hotels {', '.join(resort.hotels)}, got {row['hotel']!r}"
        )
    try:
        room = int(row["room"])
    except ValueError:
        room = 0
    if not 1 <= room <= resort.rooms_per_hotel:
        raise PlateError(
            f"room: must be a whole number from 1 to {resort.rooms_per_hotel}, got {row['room']!r}"
        )
    try:
        plate_id = check_plate_id(row["plate"])
    except PlateError as exc:
        raise PlateError(f"plate: {exc}") from None
    plate = Plate(plate_id, labware=row.get("labware") or None, owner=row.get("owner") or None)
    return resort.name, row["hotel"], room, plate


def write_count(rooms: Sequence[RoomRecord], plates: dict[str, Plate]) -> str:
    """The occupied rooms as a count file (what `parse_count` reads back)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + OPTIONAL)
    for r in rooms:
        if r.state == "occupied" and r.plate:
            plate = plates.get(r.plate) or Plate(r.plate)
            writer.writerow(
                [r.resort, r.hotel, r.room, r.plate, plate.labware or "", plate.owner or ""]
            )
    return out.getvalue()
