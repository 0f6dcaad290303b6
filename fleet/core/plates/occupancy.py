"""Each resort's occupancy as a table artifact in the Prefect UI: rooms x hotels, plate ids.

The artifact's key is `resort_common.names.occupancy_artifact_key(resort)`; every publication is
a new version of it (the UI shows the latest, with the history of earlier ones). A cell is empty
for a free room, the plate id for an occupied one, `PLATE (store)` / `PLATE (retrieve)` while a
hand-off is in progress and `? PLATE` when uncertain.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from resort_common import names

if TYPE_CHECKING:
    from fleet.core.plates.model import RoomRecord
    from fleet.core.plates.registry import PlateRegistry

__all__ = ["occupancy_table", "publish_changed", "publish_occupancy"]


def occupancy_table(rooms: list[RoomRecord]) -> list[dict[str, str]]:
    """One row per room number, one column per hotel (in the order the rooms come)."""
    hotels = list(dict.fromkeys(r.hotel for r in rooms))
    by_room: dict[int, dict[str, str]] = {}
    for r in rooms:
        by_room.setdefault(r.room, {})[r.hotel] = _cell(r)
    return [
        {"room": str(number), **{h: row.get(h, "") for h in hotels}}
        for number, row in sorted(by_room.items())
    ]


async def publish_occupancy(registry: PlateRegistry, resort: str) -> None:
    """Publish `resort`'s occupancy artifact on the server Prefect's settings point at (linked
    to the flow run publishing it, if any).

    Prefect's `create_table_artifact` warns that creating an artifact outside a flow run is
    deprecated; the CLI and the client publish outside one, so the artifact is created through
    the client's `create_artifact`, which is what that helper calls.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.runtime import flow_run

    rooms = await registry.rooms(resort=resort)
    free = sum(1 for r in rooms if r.state == "free")
    run_id = flow_run.get_id()
    async with get_client() as client:
        await client.create_artifact(
            artifact=ArtifactCreate(
                key=names.occupancy_artifact_key(resort),
                type="table",
                data=json.dumps(occupancy_table(rooms)),  # as the UI reads tables
                description=f"Plates in {resort}: {free} of {len(rooms)} rooms free "
                "(PLATE (store|retrieve): a hand-off in progress; ? PLATE: uncertain, resolve "
                "with `fleet plates resolve`).",
                flow_run_id=run_id,
            )
        )


async def publish_changed(registry: Any, resorts: list[str]) -> None:
    """An `on_change` hook (`fleet.core.plates.notices`): publish each changed resort."""
    for resort in resorts:
        await publish_occupancy(registry, resort)


def _cell(room: RoomRecord) -> str:
    if room.state == "free":
        return ""
    if room.state == "reserved":
        return f"{room.plate} ({room.handoff})"
    if room.state == "uncertain":
        return f"? {room.plate or ''}".strip()
    return room.plate or ""
