"""Python API for lab schedulers: `FleetClient` (sync) and `AsyncFleetClient` (asyncio).

Every motion runs a parent flow *in the calling process* (a real, tracked Prefect flow run on the
server that `PREFECT_API_URL` names): the resort is selected, locked, the device subflow runs on the
resort's queue and its result comes back. Requests are validated against the inventory first, so
an unknown resort or hotel or an out-of-range angle raises `PlanError` before any run is created.

    from fleet.client import FleetClient

    fleet = FleetClient("inventory/demo.yaml")
    fleet.activate_hotel("resort-a", "B")
    with fleet.reserve(selector={"labels": ["cold"], "hotel": "C"}) as r:
        r.activate_hotel("C")      # no other scheduler can move this resort meanwhile
        arm.pick_plate()           # your code
        r.go_home()
    report = fleet.batch("plan.yaml", max_concurrency=4)
    fleet.recover("resort-a")      # after an overload: reboot the servo under the lock

    # plates: the room is presented, the arm puts the plate in, the exit confirms (abort on error)
    with fleet.presenting_store("PL-0042", selector={"labels": ["cold"]}) as handoff:
        arm.place_plate(handoff.room)   # {"resort", "hotel", "room", ...}
    fleet.where_plate("PL-0042")        # {"state": "occupied", ...}
    with fleet.reserve("resort-a") as r:  # within a reservation: no other motion in between
        with r.presenting_retrieve("PL-0042") as handoff:
            arm.pick_plate(handoff.room)
    fleet.store_plate("PL-7")      # waits for `fleet plates confirm PL-7` (or the UI) elsewhere

Errors (all `fleet.core.errors.FleetError`): `PlanError` (bad request), `DeviceSelectionError` (no
resort fits / unavailable), `DeviceBusyError` (lock not free in time), `LeaseError` (a reservation's
lease is gone: an operation inside `reserve()` after the lock was lost), `DispatchError` (the device
run failed; `.flow_run_id`, `.state`), `EstopError`.

Modules: `verbs` (each single-resort verb defined once: arguments, validation, parent flow),
`asynchronous` (`AsyncFleetClient`, `Reservation`), `blocking` (`FleetClient`, `SyncReservation`,
`SyncHandoff`, wrapping the async methods), `handoffs` (a plate hand-off's two phases: presented,
then confirmed or aborted from any process) and `launch` (starting a parent flow in-process).
"""

from __future__ import annotations

from fleet.client.asynchronous import AsyncFleetClient, Reservation
from fleet.client.blocking import FleetClient, SyncHandoff, SyncReservation
from fleet.client.handoffs import Handoff

__all__ = [
    "AsyncFleetClient",
    "FleetClient",
    "Handoff",
    "Reservation",
    "SyncHandoff",
    "SyncReservation",
]
