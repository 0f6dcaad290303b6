"""`PlateRegistry`: the plate registry's operations, each one transaction with its history row.

A hand-off has two phases. `reserve_store` / `reserve_retrieve` hold a room (state `reserved`,
with a token naming the holder); the holder then ends it with `complete` (store: `occupied`;
retrieve: `free`), `abort` (the room as it was) or `interrupt` (`uncertain`: nobody knows what is
in the room until an operator resolves it, `OperatorTools.resolve`). Queries are in
`RegistryQueries` and never change anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fleet.core.errors import PlateError
from fleet.core.inventory.fleet_block import HANDOFF_LEASE
from fleet.core.plates.database import create_engine
from fleet.core.plates.leases import ABORTED, ENDED, lease_end
from fleet.core.plates.model import Plate, Reservation, RoomRecord, RoomState, check_plate_id
from fleet.core.plates.notices import OnChange
from fleet.core.plates.operator_tools import OperatorTools
from fleet.core.plates.queries import RegistryQueries
from fleet.core.plates.rows import (
    log_change,
    now,
    record,
    room_key,
    room_of,
    still_held,
    upsert_plate,
    where,
)
from fleet.core.plates.schema import plates, rooms

__all__ = ["Candidate", "PlateRegistry"]

#: Where a store may go: a resort and its hotels in the order to try (carousel order).
Candidate = tuple[str, Sequence[str]]

#: What `complete` and `abort` leave in the room, by hand-off kind.
_COMPLETED: dict[str, dict[str, Any]] = {
    "store": {"state": "occupied"},
    "retrieve": {"state": "free", "plate_id": None},
}


class PlateRegistry(RegistryQueries, OperatorTools):
    """The registry in the database at `url` (or on an engine the caller shares).

    Args:
        url: SQLAlchemy async URL, e.g. `sqlite+aiosqlite:///.fleet-state/plates.db`.
        engine: an engine to use instead of creating one from `url`.
        on_change: told which resorts' rooms changed after each change
            (`fleet.core.plates.notices`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        if engine is None:
            if url is None:
                raise ValueError("PlateRegistry needs a url or an engine")
            engine = create_engine(url)
        self.engine = engine
        self.on_change = on_change

    async def close(self) -> None:
        """Release the engine's connections."""
        await self.engine.dispose()

    async def sync_rooms(self, layout: Iterable[tuple[str, Sequence[str], int]]) -> int:
        """Add the free rooms of each `(resort, hotels, rooms_per_hotel)` that are missing.

        Rooms never disappear here (a plate may still be in one); returns how many were added.
        `on_change` is not told: new rooms are free, and every registry open adds the missing.
        """
        stamp = now()
        async with self.engine.begin() as c:
            existing = {
                (r.resort, r.hotel, r.room)
                for r in await c.execute(select(rooms.c.resort, rooms.c.hotel, rooms.c.room))
            }
            new = [
                {"resort": resort, "hotel": hotel, "room": n, "state": "free", "changed_at": stamp}
                for resort, hotels, count in layout
                for hotel in hotels
                for n in range(1, count + 1)
                if (resort, hotel, n) not in existing
            ]
            if new:  # another process may add the same rooms meanwhile: theirs stand
                result = await c.execute(_insert_missing(c.dialect.name), new)
                return max(result.rowcount, 0)
        return 0  # free rooms added: nothing to tell (`on_change` is about hand-offs)

    async def reserve_store(
        self,
        plate: Plate,
        candidates: Sequence[Candidate],
        *,
        who: str,
        flow_run_id: str | None = None,
        lease: float = HANDOFF_LEASE,
    ) -> Reservation:
        """Hold the first free room among `candidates` for storing `plate`, for `lease` seconds
        unless renewed (`renew`); `flow_run_id` is the run that waits on the hand-off.

        Raises:
            PlateError: bad plate id, the plate is already in the fleet, or no candidate has a
                free room (nothing changed).
        """
        check_plate_id(plate.plate_id)
        if not candidates:
            raise PlateError("no resort to store the plate in")
        await self.expire_handoffs(who=who)
        async with self.engine.begin() as c:
            here = await room_of(c, plate.plate_id)
            if here is not None:
                raise PlateError(
                    f"plate {plate.plate_id} is already in {where(here)} ({here.state})"
                )
            await upsert_plate(c, plate)
            holder = {"token": uuid.uuid4().hex, "waiter_run": flow_run_id,
                      "lease_until": lease_end(lease)}  # fmt: skip
            held = await _reserve_first_free(c, plate.plate_id, candidates, holder)
            if held is None:
                raise PlateError(f"no free room in {_describe(candidates)}")
            await log_change(
                c, "reserve-store", held, "free", "reserved", who, flow_run_id, plate=held.plate
            )
        await self._changed([held.resort])
        return held

    async def reserve_retrieve(
        self,
        plate_id: str,
        *,
        who: str,
        flow_run_id: str | None = None,
        lease: float = HANDOFF_LEASE,
    ) -> Reservation:
        """Hold the room `plate_id` occupies for taking it out (lease as for `reserve_store`).

        Raises:
            PlateError: bad or unknown plate id, or its room is not `occupied` (nothing changed).
        """
        check_plate_id(plate_id)
        await self.expire_handoffs(who=who)
        async with self.engine.begin() as c:
            here = await room_of(c, plate_id)
            if here is None:
                raise PlateError(f"plate {plate_id} is not in the fleet")
            if here.state != "occupied":
                raise PlateError(f"plate {plate_id} is in {where(here)} but {here.state}")
            token = uuid.uuid4().hex
            result = await c.execute(
                update(rooms)
                .where(room_key(here), rooms.c.state == "occupied")
                .values(
                    state="reserved",
                    handoff="retrieve",
                    token=token,
                    waiter_run=flow_run_id,
                    lease_until=lease_end(lease),
                    presented=False,
                    changed_at=now(),
                )
            )
            if result.rowcount != 1:
                raise PlateError(f"plate {plate_id}: its room changed meanwhile, try again")
            held = Reservation("retrieve", plate_id, here.resort, here.hotel, here.room, token)
            await log_change(
                c, "reserve-retrieve", held, "occupied", "reserved", who, flow_run_id,
                plate=plate_id,
            )  # fmt: skip
        await self._changed([held.resort])
        return held

    async def complete(
        self, reservation: Reservation, *, who: str, flow_run_id: str | None = None
    ) -> RoomRecord:
        """The hand-off happened: a stored plate occupies its room, a retrieved one left it."""
        return await self._end(
            reservation,
            _COMPLETED[reservation.kind],
            f"{reservation.kind}-confirmed",
            who,
            flow_run_id,
        )

    async def abort(
        self, reservation: Reservation, *, who: str, flow_run_id: str | None = None
    ) -> RoomRecord:
        """The hand-off did not happen: the room is as it was before the reservation."""
        return await self._end(
            reservation, ABORTED[reservation.kind], f"{reservation.kind}-aborted", who, flow_run_id
        )

    async def interrupt(
        self, reservation: Reservation, *, who: str, flow_run_id: str | None = None
    ) -> RoomRecord:
        """Nobody knows whether the hand-off happened (a timeout, a dead waiter): `uncertain`.

        The plate stays recorded in the room until an operator resolves it.
        """
        return await self._end(
            reservation,
            {"state": "uncertain"},
            f"{reservation.kind}-interrupted",
            who,
            flow_run_id,
        )

    async def _end(
        self,
        reservation: Reservation,
        values: dict[str, Any],
        action: str,
        who: str,
        flow_run_id: str | None,
    ) -> RoomRecord:
        """End `reservation` with `values` if it is still the room's hand-off; log it."""
        to_state: RoomState = values["state"]
        async with self.engine.begin() as c:
            result = await c.execute(
                update(rooms)
                .where(still_held(reservation))
                .values(**values, **ENDED, changed_at=now(),
                        handoff=None if to_state != "uncertain" else reservation.kind)
            )  # fmt: skip
            if result.rowcount != 1:
                raise PlateError(
                    f"plate {reservation.plate}: no {reservation.kind} hand-off of it is in "
                    f"progress in {where(reservation)}"
                )
            if action == "store-confirmed":
                await c.execute(
                    update(plates)
                    .where(plates.c.plate_id == reservation.plate)
                    .values(arrived_at=now())
                )
            await log_change(
                c, action, reservation, "reserved", to_state, who, flow_run_id,
                plate=reservation.plate,
            )  # fmt: skip
            room = record((await c.execute(select(rooms).where(room_key(reservation)))).one())
        await self._changed([room.resort])
        return room


def _insert_missing(dialect: str) -> Any:
    """INSERT into `rooms` that skips rows whose room already exists (SQLite, PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(rooms).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(rooms).on_conflict_do_nothing()


async def _reserve_first_free(
    c: AsyncConnection, plate_id: str, candidates: Sequence[Candidate], holder: dict[str, Any]
) -> Reservation | None:
    """Reserve the first free room among `candidates` for storing `plate_id`, or None."""
    for resort, hotels in candidates:
        for hotel in hotels:
            room = await _take_free_room(c, resort, hotel, plate_id, holder)
            if room is not None:
                return Reservation("store", plate_id, resort, hotel, room, holder["token"])
    return None


async def _take_free_room(
    c: AsyncConnection, resort: str, hotel: str, plate_id: str, holder: dict[str, Any]
) -> int | None:
    """Reserve the lowest free room of `resort`'s `hotel` for `plate_id`; its number, or None
    when the hotel has no free room.

    The update only takes a room that is still free; when a concurrent store took it first (on
    PostgreSQL the update waits for that transaction, then matches nothing), look again.
    """
    while True:
        free = (
            await c.execute(
                select(rooms.c.room)
                .where(rooms.c.resort == resort, rooms.c.hotel == hotel, rooms.c.state == "free")
                .order_by(rooms.c.room)
                .limit(1)
            )
        ).first()
        if free is None:
            return None
        try:
            result = await c.execute(
                update(rooms)
                .where(
                    rooms.c.resort == resort,
                    rooms.c.hotel == hotel,
                    rooms.c.room == free.room,
                    rooms.c.state == "free",
                )
                .values(
                    state="reserved",
                    plate_id=plate_id,
                    handoff="store",
                    presented=False,
                    changed_at=now(),
                    **holder,
                )
            )
        except IntegrityError as exc:
            raise PlateError(f"plate {plate_id} is already in the fleet") from exc
        if result.rowcount == 1:
            return int(free.room)


def _describe(candidates: Sequence[Candidate]) -> str:
    return ", ".join(
        f"{resort} hotel {hotels[0]}" if len(hotels) == 1 else resort
        for resort, hotels in candidates
    )
