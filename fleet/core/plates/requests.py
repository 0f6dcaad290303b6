"""Checking a store or retrieve request before anything starts: the inventory, then the registry.

Both checks only read. The CLI and the client run them before they look for a server or start a
flow, so a bad request is refused in one line (`PlateError`, exit 2) with nothing moved or
changed; the hand-off flow checks again in the transaction that reserves the room.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleet.core.errors import PlateError
from fleet.core.plates.model import check_plate_id

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory
    from fleet.core.plates.registry import PlateRegistry

__all__ = ["check_request", "check_with_registry"]


def check_request(
    inv: Inventory, plate: str, *, resort: str | None = None, hotel: str | None = None
) -> None:
    """The plate id, and the resort and hotel (when given) exist in `inv`.

    Raises:
        PlateError: the first problem, naming the field and what is allowed.
    """
    check_plate_id(plate)
    if resort is not None:
        known = [r.name for r in inv.resorts]
        if resort not in known:
            raise PlateError(f"resort: {resort!r} is not in the fleet; known: {', '.join(known)}")
        hotels = list(inv.resort(resort).hotels)
        if hotel is not None and hotel not in hotels:
            raise PlateError(f"hotel: {resort} has hotels {', '.join(hotels)}, got {hotel!r}")
    elif hotel is not None and not any(hotel in r.hotels for r in inv.resorts):
        raise PlateError(f"hotel: no resort of the fleet has a hotel {hotel!r}")


async def check_with_registry(
    registry: PlateRegistry,
    inv: Inventory,
    kind: str,
    plate: str,
    *,
    resort: str | None = None,
    hotel: str | None = None,
) -> None:
    """What the registry says now: a stored plate is not in the fleet yet and a free room is
    there (in `resort`/`hotel` when given); a retrieved plate occupies a room.

    Raises:
        PlateError: the request cannot succeed now.
    """
    here = await registry.where(plate)
    if kind == "retrieve":
        if here is None:
            raise PlateError(f"plate {plate} is not in the fleet")
        if here.state != "occupied":
            raise PlateError(
                f"plate {plate} is in {here.resort} hotel {here.hotel} room {here.room} "
                f"but {here.state}"
            )
        return
    if here is not None:
        raise PlateError(
            f"plate {plate} is already in {here.resort} hotel {here.hotel} room {here.room} "
            f"({here.state})"
        )
    resorts = [resort] if resort is not None else [r.name for r in inv.resorts if r.active]
    free = [
        r
        for name in resorts
        for r in await registry.rooms(resort=name, state="free")
        if hotel is None or r.hotel == hotel
    ]
    if not free:
        where = (resort or "the fleet") + (f" hotel {hotel}" if hotel else "")
        raise PlateError(f"no free room in {where}")
