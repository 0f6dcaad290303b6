"""What an operator does by hand: resolve an uncertain room, replace the occupancy by a count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from fleet.core.errors import PlateError
from fleet.core.plates.leases import HandoffLeases
from fleet.core.plates.model import Plate, RoomRecord, check_plate_id
from fleet.core.plates.rows import log_change, now, record, room_key, room_of, upsert_plate, where
from fleet.core.plates.schema import rooms

__all__ = ["OperatorTools"]

#: One line of a physical count: resort, hotel, room and the plate in it.
Counted = tuple[str, str, int, Plate]


class OperatorTools(HandoffLeases):
    """Changes an operator makes after looking at the hardware (part of `PlateRegistry`)."""

    engine: AsyncEngine

    async def resolve(
        self, resort: str, hotel: str, room: int, *, occupied_by: str | None, who: str
    ) -> RoomRecord:
        """An operator looked: the room holds `occupied_by` (a plate id) or nothing (None).

        Raises:
            PlateError: no such room, the room is not `uncertain`, or the plate is recorded in
                another room (nothing changed).
        """
        if occupied_by is not None:
            check_plate_id(occupied_by)
        await self.expire_handoffs(who=who)
        async with self.engine.begin() as c:
            row = (
                await c.execute(
                    select(rooms).where(
                        rooms.c.resort == resort, rooms.c.hotel == hotel, rooms.c.room == room
                    )
                )
            ).first()
            if row is None:
                raise PlateError(f"no room {resort} hotel {hotel} room {room} in the registry")
            current = record(row)
            if current.state != "uncertain":
                raise PlateError(f"{where(current)} is {current.state}, not uncertain")
            if occupied_by is not None:
                elsewhere = await room_of(c, occupied_by)
                if elsewhere is not None and elsewhere != current:
                    raise PlateError(f"plate {occupied_by} is recorded in {where(elsewhere)}")
                await upsert_plate(c, Plate(occupied_by))
                values: dict[str, Any] = {"state": "occupied", "plate_id": occupied_by}
            else:
                values = {"state": "free", "plate_id": None}
            await c.execute(
                update(rooms)
                .where(room_key(current))
                .values(**values, handoff=None, token=None, changed_at=now())
            )
            await log_change(
                c,
                "resolved-occupied" if occupied_by else "resolved-empty",
                current,
                "uncertain",
                values["state"],
                who,
                None,
                plate=occupied_by or current.plate,
            )
            resolved = record((await c.execute(select(rooms).where(room_key(current)))).one())
        await self._changed([resolved.resort])
        return resolved

    async def replace_occupancy(self, occupied: Sequence[Counted], *, who: str) -> int:
        """A physical count: exactly these rooms hold these plates, every other room is free.

        All or nothing, in one transaction; refused while a hand-off is in progress. Returns how
        many rooms are occupied now.

        Raises:
            PlateError: a room not in the registry, a plate or room listed twice, or a hand-off
                in progress (nothing changed).
        """
        listed = _check_count(occupied)
        await self.expire_handoffs(who=who)
        async with self.engine.begin() as c:
            current = {
                (r.resort, r.hotel, r.room): record(r) for r in await c.execute(select(rooms))
            }
            busy = [r for r in current.values() if r.state == "reserved"]
            if busy:
                raise PlateError(f"a hand-off is in progress in {where(busy[0])}: count after it")
            unknown = sorted(listed - set(current))
            if unknown:
                resort, hotel, room = unknown[0]
                raise PlateError(f"no room {resort} hotel {hotel} room {room} in the registry")
            stamp = now()
            await c.execute(
                update(rooms)
                .where(rooms.c.state != "free")
                .values(state="free", plate_id=None, handoff=None, token=None, changed_at=stamp)
            )
            for resort, hotel, room, plate in occupied:
                await upsert_plate(c, plate)
                before = current[(resort, hotel, room)]
                await c.execute(
                    update(rooms)
                    .where(room_key(before))
                    .values(state="occupied", plate_id=plate.plate_id, changed_at=stamp)
                )
                if (before.state, before.plate) != ("occupied", plate.plate_id):
                    await log_change(
                        c, "counted", before, before.state, "occupied", who, None,
                        plate=plate.plate_id,
                    )  # fmt: skip
            for key, before in current.items():
                if before.state != "free" and key not in listed:
                    await log_change(
                        c, "counted-empty", before, before.state, "free", who, None,
                        plate=before.plate,
                    )  # fmt: skip
        await self._changed(resort for resort, _, _ in current)
        return len(occupied)


def _check_count(occupied: Sequence[Counted]) -> set[tuple[str, str, int]]:
    rooms_seen: set[tuple[str, str, int]] = set()
    plates_seen: set[str] = set()
    for resort, hotel, room, plate in occupied:
        check_plate_id(plate.plate_id)
        if (resort, hotel, room) in rooms_seen:
            raise PlateError(f"{resort} hotel {hotel} room {room} is listed twice")
        if plate.plate_id in plates_seen:
            raise PlateError(f"plate {plate.plate_id} is listed twice")
        rooms_seen.add((resort, hotel, room))
        plates_seen.add(plate.plate_id)
    return rooms_seen
