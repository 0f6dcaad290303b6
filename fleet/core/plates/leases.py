"""Hand-off leases: a reserved room is kept only while the flow run waiting on it is alive.

A reservation carries a lease (`lease_until`) that its waiter renews every third of it
(`renew`). When the waiter dies (its process killed, its host powered off), nothing ends the
hand-off; `expire_handoffs` does, the next time anyone asks the registry anything: a room whose
lease ran out becomes `uncertain` when it was presented (the hotel turned to the access
position: the plate may have been put in or taken out), and returns to its state before the
reservation when it was not (nothing can have happened to it). Every registry operation and query
runs `expire_handoffs` first, so no answer shows a dead hand-off as in progress for longer than
the lease. The lease is counted with the clocks of the hosts that write it: keep them in step
(NTP), as for the resort locks' leases.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from fleet.core.plates.model import Reservation, RoomRecord
from fleet.core.plates.notices import ChangeNotices
from fleet.core.plates.rows import log_change, now, record, room_key, still_held
from fleet.core.plates.schema import rooms

__all__ = ["ABORTED", "ENDED", "WAITER_LOST", "HandoffLeases", "lease_end"]

#: What ending a hand-off that did not happen leaves in the room, by hand-off kind.
ABORTED: dict[str, dict[str, Any]] = {
    "store": {"state": "free", "plate_id": None},
    "retrieve": {"state": "occupied"},
}
#: The history action of a hand-off whose waiter's lease ran out.
WAITER_LOST = "{kind}-waiter-lost"

#: Columns cleared whenever a hand-off ends.
ENDED: dict[str, Any] = {"token": None, "waiter_run": None, "lease_until": None, "presented": False}


def lease_end(seconds: float) -> datetime.datetime:
    """When a lease of `seconds` taken now runs out."""
    return now() + datetime.timedelta(seconds=seconds)


class HandoffLeases(ChangeNotices):
    """The leases of hand-offs in progress (part of `PlateRegistry`)."""

    engine: AsyncEngine

    async def renew(self, reservation: Reservation, seconds: float) -> bool:
        """Extend `reservation`'s lease by `seconds` from now; False when it is no longer the
        room's hand-off (ended, or expired because its waiter was silent too long)."""
        async with self.engine.begin() as c:
            result = await c.execute(
                update(rooms).where(still_held(reservation)).values(lease_until=lease_end(seconds))
            )
        return bool(result.rowcount == 1)

    async def mark_presented(self, reservation: Reservation) -> bool:
        """Record that `reservation`'s room is at the access position (False: not its hand-off)."""
        async with self.engine.begin() as c:
            result = await c.execute(
                update(rooms)
                .where(still_held(reservation))
                .values(presented=True, changed_at=now())
            )
        return bool(result.rowcount == 1)

    async def expire_handoffs(self, *, who: str = "plate registry") -> list[RoomRecord]:
        """End every hand-off whose lease ran out (see the module); the rooms it changed."""
        stamp = now()
        expired = (rooms.c.state == "reserved") & (rooms.c.lease_until < stamp)
        async with self.engine.connect() as c:
            if (await c.execute(select(rooms.c.room).where(expired).limit(1))).first() is None:
                return []
        changed: list[RoomRecord] = []
        async with self.engine.begin() as c:
            for row in (await c.execute(select(rooms).where(expired))).all():
                held = Reservation(row.handoff, row.plate_id, row.resort, row.hotel, row.room,
                                   row.token)  # fmt: skip
                values = {"state": "uncertain"} if row.presented else dict(ABORTED[row.handoff])
                handoff = row.handoff if row.presented else None
                result = await c.execute(
                    update(rooms)
                    .where(room_key(held), rooms.c.token == row.token, expired)
                    .values(**values, **ENDED, handoff=handoff, changed_at=stamp)
                )
                if result.rowcount != 1:
                    continue
                await log_change(
                    c, WAITER_LOST.format(kind=row.handoff), held, "reserved", values["state"],
                    who, row.waiter_run, plate=row.plate_id,
                )  # fmt: skip
                changed.append(record((await c.execute(select(rooms).where(room_key(held)))).one()))
        await self._changed(r.resort for r in changed)
        return changed
