"""`AsyncFleetClient` and its `Reservation`: the asyncio scheduler API over the parent flows."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fleet.client import verbs
from fleet.client.handoffs import DEFAULT_PRESENT_WAIT, Handoff, presenting, send_decision
from fleet.client.launch import start_parent
from fleet.client.verbs import (
    SelectorLike,
    Verb,
    client_method,
    reservation_method,
    selector_dict,
    verb_named,
)
from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.errors import PlanError, PlateError
from fleet.core.plan import Plan, load_plan, parse_plan, validate_plan
from fleet.core.selection import Selector
from resort_common import names

__all__ = ["AsyncFleetClient", "Reservation"]


class Reservation:
    """A resort held by this client across several operations (`reserve()`)."""

    def __init__(self, client: AsyncFleetClient, resort: str, lock: locks.HeldLock) -> None:
        self.client = client
        self.resort = resort
        self.lock = lock

    @property
    def lease_id(self) -> str:
        """The lease of the held lock (passed to the parent flows)."""
        return str(self.lock.lease_id)

    activate_hotel = reservation_method(verbs.activate_hotel)
    go_home = reservation_method(verbs.go_home)
    move_to_angle = reservation_method(verbs.move_to_angle)
    set_speed = reservation_method(verbs.set_speed)
    recover = reservation_method(verbs.recover)

    async def store_plate(
        self, plate: str, *, hotel: str | None = None, timeout: float = 600.0, **about: Any
    ) -> dict[str, Any]:
        """`AsyncFleetClient.store_plate` in the reserved resort, under the held lock."""
        return await self.client._store(plate, self.resort, None, hotel, timeout, self, about)

    async def retrieve_plate(self, plate: str, *, timeout: float = 600.0) -> dict[str, Any]:
        """`AsyncFleetClient.retrieve_plate` of a plate in the reserved resort, under the lock."""
        return await self.client._retrieve(plate, timeout, self)

    def presenting_store(
        self, plate: str, *, hotel: str | None = None, wait: float = DEFAULT_PRESENT_WAIT,
        timeout: float = 600.0, **about: Any,
    ) -> AbstractAsyncContextManager[Handoff]:  # fmt: skip
        """`AsyncFleetClient.presenting_store` in the reserved resort, under the held lock."""
        return presenting(
            self.client.inventory,
            plate,
            lambda: self.client._store(plate, self.resort, None, hotel, timeout, self, about),
            wait=wait,
        )

    def presenting_retrieve(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT, timeout: float = 600.0
    ) -> AbstractAsyncContextManager[Handoff]:
        """`AsyncFleetClient.presenting_retrieve` under the held lock."""
        return presenting(
            self.client.inventory,
            plate,
            lambda: self.client._retrieve(plate, timeout, self),
            wait=wait,
        )


class AsyncFleetClient:
    """Asyncio API over the parent flows (see `fleet.client`).

    Args:
        inventory: an `Inventory`, or its path (default `$FLEET_INVENTORY` or
            `inventory/demo.yaml`).
        lock_timeout: seconds an operation waits for its resort's lock.
    """

    def __init__(self, inventory: Any = None, *, lock_timeout: float = 300.0) -> None:
        if inventory is None or isinstance(inventory, str | os.PathLike):
            from flows.requests import load_fleet_inventory

            inventory = load_fleet_inventory(inventory)
        self.inventory = inventory
        self.lock_timeout = lock_timeout
        self._reserved: dict[str, Reservation] = {}

    @property
    def _path(self) -> str:
        return str(Path(self.inventory.path).resolve())

    def validate(
        self, call: str, resort: str | None, *params: Any, selector: SelectorLike | None = None
    ) -> None:
        """Check the request `call(resort, *params)` against the inventory; the server is not asked.

        Each single-resort verb runs this first; the CLI runs it before it looks for a server,
        so a bad request is refused as such (`PlanError`) even with no server running.

        Args:
            call: `activate_hotel`, `go_home`, `move_to_angle`, `set_speed` or `recover`.
            resort: the resort name (None with a `selector`, for the motion verbs).
            params: the verb's positional arguments after `resort`.

        Raises:
            PlanError: a bad request, or an unknown `call`.
        """
        verb = verb_named(call)
        verb.check(self.inventory, resort, selector_dict(selector), verb.arguments(*params))

    def _reservation(self, resort: str | None) -> str | None:
        held = self._reserved.get(resort) if resort else None
        return held.lease_id if held else None

    async def run(
        self,
        verb: Verb,
        resort: str | None,
        arguments: Mapping[str, Any],
        *,
        selector: SelectorLike | None = None,
    ) -> dict[str, Any]:
        """Validate one request of `verb`, then run its parent flow in this process.

        A resort this client holds (`reserve()`) is passed as the flow's `reservation`.
        """
        target = selector_dict(selector)
        verb.check(self.inventory, resort, target, dict(arguments))
        selection = {"selector": target} if verb.selectable else {}
        result: dict[str, Any] = await start_parent(
            self.inventory,
            verb.parent_flow(),
            resort=resort,
            **arguments,
            **selection,
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=self._reservation(resort),
        )
        return result

    activate_hotel = client_method(verbs.activate_hotel)
    go_home = client_method(verbs.go_home)
    move_to_angle = client_method(verbs.move_to_angle)
    set_speed = client_method(verbs.set_speed)
    recover = client_method(verbs.recover)

    async def health(
        self, resorts: Sequence[str] | None = None, *, timeout: float = 30.0
    ) -> dict[str, dict[str, Any]]:
        """Health of every (or each named) resort: name -> {state, result, error}.

        `timeout` bounds the wait for each resort's answer (seconds).
        """
        from flows import parent

        for name in resorts or ():
            self.inventory.resort(name)
        health: dict[str, dict[str, Any]] = await start_parent(
            self.inventory,
            parent.fleet_health,
            resorts=list(resorts) if resorts else None,
            inventory=self._path,
            timeout=timeout,
        )
        return health

    async def batch(
        self,
        plan: Plan | str | os.PathLike[str] | Sequence[Mapping[str, Any]],
        *,
        max_concurrency: int = 8,
        fail_fast: bool = False,
        on_progress: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run a plan (a `Plan`, a YAML/JSON path or a list of operation dicts).

        The whole plan is validated first (`PlanError`, nothing queued). Failed operations do
        not raise: see `BatchReport.failed`.

        Returns:
            `flows.batch.BatchReport` (results in plan order, makespan).
        """
        from flows import batch as batch_flows

        if isinstance(plan, str | os.PathLike):
            source = str(plan)
            plan = load_plan(plan)
        elif not isinstance(plan, Plan):
            source = "plan"
            plan = parse_plan(list(plan))
        else:
            source = "plan"
        if max_concurrency < 1:
            raise PlanError("max_concurrency: must be at least 1")
        validate_plan(self.inventory, plan, source=source)
        with batch_flows.reporting_progress_to(on_progress):
            state = await start_parent(
                self.inventory,
                batch_flows.run_batch,
                operations=[
                    op.model_dump(mode="json", exclude_none=True) for op in plan.operations
                ],
                inventory=self._path,
                max_concurrency=max_concurrency,
                fail_fast=fail_fast,
                lock_timeout=self.lock_timeout,
                return_state=True,
            )
        data = await state.result(raise_on_failure=False)
        if isinstance(data, BaseException):
            raise data
        return batch_flows.BatchReport(
            results=[batch_flows.OperationResult(**r) for r in data["results"]],
            makespan=data["makespan"],
        )

    @asynccontextmanager
    async def reserve(
        self,
        resort: str | None = None,
        *,
        selector: SelectorLike | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Reservation]:
        """Hold a resort's lock across several operations (released on exit).

        Operations on the reserved resort made through this client (or the yielded
        `Reservation`) run under the held lock; other schedulers wait.

        Raises:
            DeviceSelectionError, DeviceBusyError.
        """
        from fleet.core.selection import select_resort

        sel = Selector.model_validate(selector_dict(selector)) if selector is not None else None
        target = await select_resort(self.inventory, resort=resort, selector=sel)
        if target.name in self._reserved:
            raise PlanError(f"resort {target.name} is already reserved by this client")
        held = await locks.acquire(
            names.lock_name(target.name),
            timeout=self.lock_timeout if timeout is None else timeout,
            resort=target.name,
            held_alert_after=lock_held_after(self.inventory),
        )
        reservation = Reservation(self, target.name, held)
        self._reserved[target.name] = reservation
        try:
            yield reservation
        finally:
            self._reserved.pop(target.name, None)
            await locks.release(held)

    async def store_plate(
        self,
        plate: str,
        resort: str | None = None,
        *,
        selector: SelectorLike | None = None,
        hotel: str | None = None,
        labware: str | None = None,
        owner: str | None = None,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """Store `plate` in a free room (of `resort`, or one chosen by `selector`; in `hotel`):
        present the room and wait up to `timeout` s for the hand-off's decision, made elsewhere
        (`confirm_handoff` in another process, `fleet plates confirm`, the Prefect UI).

        Returns:
            The room after the hand-off (`plate, resort, hotel, room, state`): `occupied` when
            confirmed, `free` when aborted.

        Raises:
            PlateError: bad plate id, the plate already in the fleet, no free room, or no
                decision within `timeout` (the room is then `uncertain`).
        """
        about = {"labware": labware, "owner": owner}
        return await self._store(plate, resort, selector, hotel, timeout, None, about)

    async def retrieve_plate(self, plate: str, *, timeout: float = 600.0) -> dict[str, Any]:
        """Present the room holding `plate` and wait up to `timeout` s for the hand-off's
        decision (as `store_plate`). Returns the room after it (`free` when confirmed)."""
        return await self._retrieve(plate, timeout, None)

    def presenting_store(
        self,
        plate: str,
        resort: str | None = None,
        *,
        selector: SelectorLike | None = None,
        hotel: str | None = None,
        labware: str | None = None,
        owner: str | None = None,
        wait: float = DEFAULT_PRESENT_WAIT,
        timeout: float = 600.0,
    ) -> AbstractAsyncContextManager[Handoff]:
        """Store `plate` in two phases: `async with client.presenting_store(...) as handoff:`
        enters once the room is presented (within `wait` s; `handoff.room` says where), the
        body puts the plate in, and the exit confirms the hand-off (or aborts it when the body
        raises; the body may also call `handoff.confirm()` / `handoff.abort()` itself).
        `handoff.result` is then the room after the hand-off.
        """
        about = {"labware": labware, "owner": owner}
        return presenting(
            self.inventory,
            plate,
            lambda: self._store(plate, resort, selector, hotel, timeout, None, about),
            wait=wait,
        )

    def presenting_retrieve(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT, timeout: float = 600.0
    ) -> AbstractAsyncContextManager[Handoff]:
        """Retrieve `plate` in two phases (as `presenting_store`)."""
        return presenting(
            self.inventory, plate, lambda: self._retrieve(plate, timeout, None), wait=wait
        )

    async def confirm_handoff(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT
    ) -> dict[str, Any]:
        """Confirm `plate`'s hand-off waiting in any process (after up to `wait` s for its room
        to be presented); returns the room it was sent to."""
        return (await self._decide(plate, "confirm", wait)).to_dict()

    async def abort_handoff(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT
    ) -> dict[str, Any]:
        """Abort `plate`'s waiting hand-off (as `confirm_handoff`)."""
        return (await self._decide(plate, "abort", wait)).to_dict()

    async def where_plate(self, plate: str) -> dict[str, Any] | None:
        """The room recording `plate` (`plate, resort, hotel, room, state`), or None."""
        from fleet.core.plates.config import open_registry
        from fleet.core.plates.occupancy import publish_changed

        registry = await open_registry(self.inventory, on_change=publish_changed)
        try:
            room = await registry.where(plate)
        finally:
            await registry.close()
        return room.to_dict() if room is not None else None

    async def check_handoff(
        self,
        kind: str,
        plate: str,
        *,
        resort: str | None = None,
        hotel: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        """Check a `store` or `retrieve` request against the inventory and the registry, without
        a server; `store_plate` and `retrieve_plate` run it first.

        Raises:
            PlateError: the request cannot succeed now (nothing was changed or moved).
            RegistryUnavailableError: the registry cannot be read.
        """
        from fleet.core.plates.config import open_registry
        from fleet.core.plates.requests import check_request, check_with_registry

        if not timeout > 0:
            raise PlateError(f"timeout: must be a number of seconds above 0, got {timeout:g}")
        check_request(self.inventory, plate, resort=resort, hotel=hotel)
        registry = await open_registry(self.inventory)
        try:
            await check_with_registry(
                registry, self.inventory, kind, plate, resort=resort, hotel=hotel
            )
        finally:
            await registry.close()

    async def _decide(self, plate: str, decision: Any, wait: float) -> Any:
        return await send_decision(self.inventory, plate, decision, wait=wait)

    async def _store(
        self,
        plate: str,
        resort: str | None,
        selector: SelectorLike | None,
        hotel: str | None,
        timeout: float,
        held: Reservation | None,
        about: Mapping[str, Any],
    ) -> dict[str, Any]:
        from flows.plates import store_plate

        await self.check_handoff("store", plate, resort=resort, hotel=hotel, timeout=timeout)
        result: dict[str, Any] = await start_parent(
            self.inventory,
            store_plate,
            plate=plate,
            resort=resort,
            selector=selector_dict(selector),
            hotel=hotel,
            timeout=timeout,
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=held.lease_id if held else self._reservation(resort),
            **about,
        )
        return result

    async def _retrieve(
        self, plate: str, timeout: float, held: Reservation | None
    ) -> dict[str, Any]:
        from flows.plates import retrieve_plate

        await self.check_handoff("retrieve", plate, timeout=timeout)
        result: dict[str, Any] = await start_parent(
            self.inventory,
            retrieve_plate,
            plate=plate,
            timeout=timeout,
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=held.lease_id if held else None,
        )
        return result

    async def estop(
        self, resorts: Sequence[str] | None = None, reason: str = "fleet client"
    ) -> Any:
        """Emergency-stop resorts (None = all); returns the agents' acknowledgements."""
        from fleet.core.estop import aestop

        return await aestop(self.inventory, resorts, reason)

    async def estop_clear(self, resorts: Sequence[str] | None = None) -> Any:
        """Clear the e-stop latch of resorts (None = all)."""
        from fleet.core.estop import aclear_estop

        return await aclear_estop(self.inventory, resorts)

    async def status(self) -> list[Any]:
        """Every resort's `fleet.core.status.ResortStatus`."""
        from fleet.core.status import aread_status

        return await aread_status(self.inventory)

    async def drain(self, resort: str, *, timeout: float = 300.0) -> Any:
        """Pause `resort`'s queue and wait until nothing runs on it."""
        import anyio

        from fleet.core.provision import drain

        return await anyio.to_thread.run_sync(
            lambda: drain(self.inventory, resort, timeout=timeout)
        )

    async def resume(self, resort: str) -> Any:
        """Unpause `resort`'s queue."""
        import anyio

        from fleet.core.provision import resume

        return await anyio.to_thread.run_sync(resume, self.inventory, resort)
