"""The SQL building blocks the registry's operations share: records, keys, history rows."""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.errors import PlateError
from fleet.core.plates.model import Plate, Reservation, RoomRecord
from fleet.core.plates.schema import history, plates, rooms

__all__ = [
    "aware",
    "log_change",
    "now",
    "record",
    "room_key",
    "room_of",
    "still_held",
    "upsert_plate",
    "where",
]


def now() -> datetime.datetime:
    """The time written into the registry (UTC)."""
    return datetime.datetime.now(datetime.UTC)


def aware(value: datetime.datetime | None) -> datetime.datetime | None:
    """SQLite returns naive datetimes for what was written as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def record(row: Any) -> RoomRecord:
    """A `rooms` row as a `RoomRecord`."""
    return RoomRecord(
        resort=row.resort,
        hotel=row.hotel,
        room=row.room,
        state=row.state,
        plate=row.plate_id,
        handoff=row.handoff,
        changed_at=aware(row.changed_at),
    )


def where(room: RoomRecord | Reservation) -> str:
    """`ra hotel B room 3`, for messages."""
    return f"{room.resort} hotel {room.hotel} room {room.room}"


def room_key(room: RoomRecord | Reservation) -> Any:
    """The WHERE clause selecting `room`'s row."""
    return and_(
        rooms.c.resort == room.resort, rooms.c.hotel == room.hotel, rooms.c.room == room.room
    )


def still_held(reservation: Reservation) -> Any:
    """The WHERE clause selecting `reservation`'s room while it is still that hand-off's."""
    return and_(
        room_key(reservation), rooms.c.state == "reserved", rooms.c.token == reservation.token
    )


async def room_of(c: AsyncConnection, plate_id: str) -> RoomRecord | None:
    """The room recording `plate_id` (any state), or None."""
    row = (await c.execute(select(rooms).where(rooms.c.plate_id == plate_id))).first()
    return record(row) if row is not None else None


async def upsert_plate(c: AsyncConnection, plate: Plate) -> None:
    """Record `plate`; what is known about a plate seen before is only replaced, never erased.

    Raises:
        PlateError: a concurrent transaction recorded the same new plate first.
    """
    known = (
        await c.execute(select(plates.c.plate_id).where(plates.c.plate_id == plate.plate_id))
    ).first()
    values = {"labware": plate.labware, "owner": plate.owner, "metadata": plate.metadata}
    if known is None:
        try:
            await c.execute(insert(plates).values(plate_id=plate.plate_id, **values))
        except IntegrityError as exc:  # a concurrent store of the same new plate came first
            raise PlateError(f"plate {plate.plate_id} is already in the fleet") from exc
    elif plate.labware or plate.owner or plate.metadata:
        await c.execute(update(plates).where(plates.c.plate_id == plate.plate_id).values(**values))


async def log_change(
    c: AsyncConnection,
    action: str,
    place: RoomRecord | Reservation,
    from_state: str | None,
    to_state: str,
    who: str,
    flow_run_id: str | None,
    *,
    plate: str | None,
) -> None:
    """Write one history row (in the caller's transaction)."""
    await c.execute(
        insert(history).values(
            at=now(),
            action=action,
            plate_id=plate,
            resort=place.resort,
            hotel=place.hotel,
            room=place.room,
            from_state=from_state,
            to_state=to_state,
            who=who,
            flow_run_id=flow_run_id,
        )
    )
