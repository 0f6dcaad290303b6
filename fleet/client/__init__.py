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

Errors (all `fleet.core.errors.FleetError`): `PlanError` (bad request), `DeviceSelectionError` (no
resort fits / unavailable), `DeviceBusyError` (lock not free in time), `LeaseError` (a reservation's
lease is gone: an operation inside `reserve()` after the lock was lost), `DispatchError` (the device
run failed; `.flow_run_id`, `.state`), `EstopError`.

Modules: `verbs` (each single-resort verb defined once: arguments, validation, parent flow),
`asynchronous` (`AsyncFleetClient`, `Reservation`), `blocking` (`FleetClient`, `SyncReservation`,
wrapping the async methods) and `launch` (starting a parent flow in-process).
"""

from __future__ import annotations

from fleet.client.asynchronous import AsyncFleetClient, Reservation
from fleet.client.blocking import FleetClient, SyncReservation

__all__ = ["AsyncFleetClient", "FleetClient", "Reservation", "SyncReservation"]
