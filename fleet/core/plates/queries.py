"""What the registry can be asked: where a plate is, the rooms, a plate's record and history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from fleet.core.plates.leases import HandoffLeases
from fleet.core.plates.model import HistoryEntry, Plate, RoomRecord, RoomState, check_plate_id
from fleet.core.plates.rows import aware, now, record, room_of
from fleet.core.plates.schema import history, plates, rooms

__all__ = ["RegistryQueries"]


class RegistryQueries(HandoffLeases):
    """Queries (part of `PlateRegistry`): none changes anything, except that each first ends the
    hand-offs whose waiter is gone (`HandoffLeases.expire_handoffs`), so no answer shows one as
    in progress."""

    engine: AsyncEngine

    async def where(self, plate_id: str) -> RoomRecord | None:
        """The room recording `plate_id` (`occupied`, `reserved` or `uncertain`), or None."""
        check_plate_id(plate_id)
        await self.expire_handoffs()
        async with self.engine.connect() as c:
            return await room_of(c, plate_id)

    async def rooms(
        self, *, resort: str | None = None, state: RoomState | None = None
    ) -> list[RoomRecord]:
        """Rooms in resort, hotel, room order (of one resort, in one state)."""
        query = select(rooms).order_by(rooms.c.resort, rooms.c.hotel, rooms.c.room)
        if resort is not None:
            query = query.where(rooms.c.resort == resort)
        if state is not None:
            query = query.where(rooms.c.state == state)
        await self.expire_handoffs()
        async with self.engine.connect() as c:
            return [record(r) for r in await c.execute(query)]

    async def plate(self, plate_id: str) -> Plate | None:
        """What the registry knows about `plate_id` (also after it left the fleet)."""
        async with self.engine.connect() as c:
            row = (await c.execute(select(plates).where(plates.c.plate_id == plate_id))).first()
        if row is None:
            return None
        return Plate(
            row.plate_id, row.labware, row.owner, dict(row.metadata or {}), aware(row.arrived_at)
        )

    async def handoff_run(self, plate_id: str) -> tuple[RoomRecord, str | None] | None:
        """The room of `plate_id`'s hand-off in progress and the flow run waiting on it.

        None when no hand-off of the plate is in progress (its room is not `reserved`).
        """
        check_plate_id(plate_id)
        await self.expire_handoffs()
        async with self.engine.connect() as c:
            row = (await c.execute(select(rooms).where(rooms.c.plate_id == plate_id))).first()
        if row is None or row.state != "reserved":
            return None
        return record(row), row.waiter_run

    async def history(self, plate_id: str) -> list[HistoryEntry]:
        """Every change that involved `plate_id`, oldest first."""
        query = select(history).where(history.c.plate_id == plate_id).order_by(history.c.id)
        async with self.engine.connect() as c:
            return [
                HistoryEntry(
                    at=aware(r.at) or now(),
                    action=r.action,
                    plate=r.plate_id,
                    resort=r.resort,
                    hotel=r.hotel,
                    room=r.room,
                    from_state=r.from_state,
                    to_state=r.to_state,
                    who=r.who,
                    flow_run_id=r.flow_run_id,
                )
                for r in await c.execute(query)
            ]
