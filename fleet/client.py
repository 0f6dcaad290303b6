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
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.errors import PlanError
from fleet.core.plan import (
    Plan,
    known_resort,
    load_plan,
    parse_plan,
    validate_plan,
    validate_speed,
)
from fleet.core.selection import Selector
from resort_common import names

__all__ = ["AsyncFleetClient", "FleetClient", "Reservation"]

SelectorLike = Selector | Mapping[str, Any]


def _selector_dict(selector: SelectorLike | None) -> dict[str, Any] | None:
    if selector is None:
        return None
    if isinstance(selector, Selector):
        return selector.model_dump(mode="json")
    return dict(selector)


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

    async def activate_hotel(self, hotel: str) -> dict[str, Any]:
        """Activate `hotel` on the reserved resort."""
        return await self.client.activate_hotel(self.resort, hotel)

    async def go_home(self) -> dict[str, Any]:
        """Send the reserved resort home."""
        return await self.client.go_home(self.resort)

    async def move_to_angle(self, angle: float) -> dict[str, Any]:
        """Turn the reserved resort to `angle` degrees."""
        return await self.client.move_to_angle(self.resort, angle)

    async def set_speed(self, speed: float, acceleration: float | None = None) -> dict[str, Any]:
        """Set the reserved resort's speed (deg/s) and optionally acceleration (deg/s^2)."""
        return await self.client.set_speed(self.resort, speed, acceleration)

    async def recover(self) -> dict[str, Any]:
        """Reboot the reserved resort's servo (clears latched hardware errors)."""
        return await self.client.recover(self.resort)


#: seconds to keep re-trying the start of a parent flow on an overloaded server
START_RETRY_WINDOW = 60.0


def _parent_run_not_created(exc: BaseException) -> bool:
    """True when `exc` is an overloaded server refusing to *create* the parent flow run.

    Nothing has happened then (no lock, no dispatch), so starting the flow again is safe.
    """
    request = getattr(exc, "request", None)
    return (
        locks.is_transient_server_error(exc)
        and request is not None
        and request.method == "POST"
        and request.url.path.rstrip("/").endswith("/flow_runs")
    )


async def _start_parent(inv: Any, flow: Callable[..., Any], /, **parameters: Any) -> Any:
    """Run a parent flow in-process; re-try while the server (SQLite) refuses to create its run.

    The run carries the fleet's tag (`names.fleet_tag`): the parent-run watchdog watches it from
    its Running state on (`fleet.core.watchdog`). Prefect's client gives up after a few 503 answers
    under many concurrent schedulers.
    """
    import asyncio
    import time

    from prefect import tags

    deadline = time.monotonic() + START_RETRY_WINDOW
    delay = 0.2
    while True:
        try:
            with tags(names.fleet_tag(inv)):
                return await flow(**parameters)
        except Exception as exc:
            if not _parent_run_not_created(exc) or time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


#: the motion verbs' positional arguments after the resort (`AsyncFleetClient.validate`)
_MOTION_ARGS: dict[str, tuple[str, ...]] = {
    "activate_hotel": ("hotel",),
    "go_home": (),
    "move_to_angle": ("angle",),
}


class AsyncFleetClient:
    """Asyncio API over the parent flows (see the module docstring).

    Args:
        inventory: an `Inventory`, or its path (default `$FLEET_INVENTORY` or
            `inventory/demo.yaml`).
        lock_timeout: seconds an operation waits for its resort's lock.
    """

    def __init__(self, inventory: Any = None, *, lock_timeout: float = 300.0) -> None:
        if inventory is None or isinstance(inventory, str | os.PathLike):
            from flows.parent import load_fleet_inventory

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
        from flows.parent import _operation, validate_request

        if call in _MOTION_ARGS:
            args = dict(zip(_MOTION_ARGS[call], params, strict=True))
            validate_request(
                self.inventory, _operation(call, resort, _selector_dict(selector), **args)
            )
        elif call == "set_speed":
            validate_speed(self.inventory, str(resort), *params)
        elif call == "recover":
            known_resort(self.inventory, str(resort))
        else:
            raise PlanError(f"call: unknown request {call!r}")

    def _reservation(self, resort: str | None) -> str | None:
        held = self._reserved.get(resort) if resort else None
        return held.lease_id if held else None

    async def activate_hotel(
        self, resort: str | None, hotel: str, *, selector: SelectorLike | None = None
    ) -> dict[str, Any]:
        """Bring `hotel` to the access position on `resort` (or a resort chosen by `selector`)."""
        from flows import parent

        self.validate("activate_hotel", resort, hotel, selector=selector)
        return await _start_parent(
            self.inventory,
            parent.activate_hotel,
            hotel=hotel,
            resort=resort,
            selector=_selector_dict(selector),
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=self._reservation(resort),
        )

    async def go_home(
        self, resort: str | None, *, selector: SelectorLike | None = None
    ) -> dict[str, Any]:
        """Turn `resort` (or one chosen by `selector`) to its home angle."""
        from flows import parent

        self.validate("go_home", resort, selector=selector)
        return await _start_parent(
            self.inventory,
            parent.go_home,
            resort=resort,
            selector=_selector_dict(selector),
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=self._reservation(resort),
        )

    async def move_to_angle(
        self, resort: str | None, angle: float, *, selector: SelectorLike | None = None
    ) -> dict[str, Any]:
        """Turn `resort` (or one chosen by `selector`) to `angle` degrees, 0 <= angle < 360."""
        from flows import parent

        self.validate("move_to_angle", resort, angle, selector=selector)
        return await _start_parent(
            self.inventory,
            parent.move_to_angle,
            angle=angle,
            resort=resort,
            selector=_selector_dict(selector),
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=self._reservation(resort),
        )

    async def set_speed(
        self, resort: str, speed: float, acceleration: float | None = None
    ) -> dict[str, Any]:
        """Set `resort`'s speed (deg/s) and optionally acceleration (deg/s^2) for later moves.

        Lasts until the resort's agent restarts (the inventory's values are the default).

        Raises:
            PlanError: out of range, or too slow for a full turn within the move timeout.
        """
        from flows import maintenance

        self.validate("set_speed", resort, speed, acceleration)
        return await _start_parent(
            self.inventory,
            maintenance.set_speed,
            resort=resort,
            speed=speed,
            acceleration=acceleration,
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=self._reservation(resort),
        )

    async def recover(self, resort: str) -> dict[str, Any]:
        """Reboot `resort`'s servo under its lock (clears a latched overload, overheating, ...).

        Returns:
            The health after the reboot (`ok`, `hardware_errors`, temperature, voltage, ...).

        Raises:
            DeviceSelectionError: unknown, inactive, offline, drained or e-stopped resort.
        """
        from flows import maintenance

        self.validate("recover", resort)
        return await _start_parent(
            self.inventory,
            maintenance.recover,
            resort=resort,
            inventory=self._path,
            lock_timeout=self.lock_timeout,
            reservation=self._reservation(resort),
        )

    async def health(
        self, resorts: Sequence[str] | None = None, *, timeout: float = 30.0
    ) -> dict[str, dict[str, Any]]:
        """Health of every (or each named) resort: name -> {state, result, error}.

        `timeout` bounds the wait for each resort's answer (seconds).
        """
        from flows import parent

        for name in resorts or ():
            self.inventory.resort(name)
        return await _start_parent(
            self.inventory,
            parent.fleet_health,
            resorts=list(resorts) if resorts else None,
            inventory=self._path,
            timeout=timeout,
        )

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
        token = batch_flows.add_listener(on_progress) if on_progress else None
        try:
            state = await _start_parent(
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
        finally:
            if token:
                batch_flows.remove_listener(token)
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

        sel = Selector.model_validate(_selector_dict(selector)) if selector is not None else None
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


class SyncReservation:
    """Blocking view of a `Reservation`."""

    def __init__(self, client: FleetClient, reservation: Reservation) -> None:
        self._client = client
        self._reservation = reservation
        self.resort = reservation.resort

    @property
    def lease_id(self) -> str:
        """The lease of the held lock."""
        return self._reservation.lease_id

    def activate_hotel(self, hotel: str) -> dict[str, Any]:
        """Activate `hotel` on the reserved resort."""
        return self._client._run(self._reservation.activate_hotel(hotel))

    def go_home(self) -> dict[str, Any]:
        """Send the reserved resort home."""
        return self._client._run(self._reservation.go_home())

    def move_to_angle(self, angle: float) -> dict[str, Any]:
        """Turn the reserved resort to `angle` degrees."""
        return self._client._run(self._reservation.move_to_angle(angle))

    def set_speed(self, speed: float, acceleration: float | None = None) -> dict[str, Any]:
        """Set the reserved resort's speed (deg/s) and optionally acceleration (deg/s^2)."""
        return self._client._run(self._reservation.set_speed(speed, acceleration))

    def recover(self) -> dict[str, Any]:
        """Reboot the reserved resort's servo (clears latched hardware errors)."""
        return self._client._run(self._reservation.recover())


class FleetClient:
    """Blocking API with the same verbs as `AsyncFleetClient` (see the module docstring)."""

    def __init__(self, inventory: Any = None, *, lock_timeout: float = 300.0) -> None:
        self._async = AsyncFleetClient(inventory, lock_timeout=lock_timeout)
        self.inventory = self._async.inventory

    def validate(
        self, call: str, resort: str | None, *params: Any, selector: SelectorLike | None = None
    ) -> None:
        """Check a request against the inventory only (see `AsyncFleetClient.validate`)."""
        self._async.validate(call, resort, *params, selector=selector)

    @staticmethod
    def _run(coro: Any) -> Any:
        from prefect.utilities.asyncutils import run_coro_as_sync

        return run_coro_as_sync(coro)

    def activate_hotel(
        self, resort: str | None, hotel: str, *, selector: SelectorLike | None = None
    ) -> dict[str, Any]:
        """Bring `hotel` to the access position (see `AsyncFleetClient.activate_hotel`)."""
        return self._run(self._async.activate_hotel(resort, hotel, selector=selector))

    def go_home(
        self, resort: str | None, *, selector: SelectorLike | None = None
    ) -> dict[str, Any]:
        """Turn a resort to its home angle."""
        return self._run(self._async.go_home(resort, selector=selector))

    def move_to_angle(
        self, resort: str | None, angle: float, *, selector: SelectorLike | None = None
    ) -> dict[str, Any]:
        """Turn a resort to `angle` degrees."""
        return self._run(self._async.move_to_angle(resort, angle, selector=selector))

    def set_speed(
        self, resort: str, speed: float, acceleration: float | None = None
    ) -> dict[str, Any]:
        """Set a resort's speed for later moves (see `AsyncFleetClient.set_speed`)."""
        return self._run(self._async.set_speed(resort, speed, acceleration))

    def recover(self, resort: str) -> dict[str, Any]:
        """Reboot a resort's servo under its lock (see `AsyncFleetClient.recover`)."""
        return self._run(self._async.recover(resort))

    def health(
        self, resorts: Sequence[str] | None = None, *, timeout: float = 30.0
    ) -> dict[str, dict[str, Any]]:
        """Health of every (or each named) resort."""
        return self._run(self._async.health(resorts, timeout=timeout))

    def batch(
        self,
        plan: Plan | str | os.PathLike[str] | Sequence[Mapping[str, Any]],
        *,
        max_concurrency: int = 8,
        fail_fast: bool = False,
        on_progress: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run a plan; returns a `flows.batch.BatchReport`."""
        return self._run(
            self._async.batch(
                plan, max_concurrency=max_concurrency, fail_fast=fail_fast, on_progress=on_progress
            )
        )

    @contextmanager
    def reserve(
        self,
        resort: str | None = None,
        *,
        selector: SelectorLike | None = None,
        timeout: float | None = None,
    ) -> Iterator[SyncReservation]:
        """Hold a resort across several operations (see `AsyncFleetClient.reserve`)."""
        manager = self._async.reserve(resort, selector=selector, timeout=timeout)
        reservation = self._run(manager.__aenter__())
        try:
            yield SyncReservation(self, reservation)
        except BaseException as exc:
            self._run(manager.__aexit__(type(exc), exc, exc.__traceback__))
            raise
        else:
            self._run(manager.__aexit__(None, None, None))

    def estop(self, resorts: Sequence[str] | None = None, reason: str = "fleet client") -> Any:
        """Emergency-stop resorts (None = all)."""
        return self._run(self._async.estop(resorts, reason))

    def estop_clear(self, resorts: Sequence[str] | None = None) -> Any:
        """Clear the e-stop latch of resorts (None = all)."""
        return self._run(self._async.estop_clear(resorts))

    def status(self) -> list[Any]:
        """Every resort's status."""
        return self._run(self._async.status())

    def drain(self, resort: str, *, timeout: float = 300.0) -> Any:
        """Pause a resort's queue and wait until nothing runs on it."""
        return self._run(self._async.drain(resort, timeout=timeout))

    def resume(self, resort: str) -> Any:
        """Unpause a resort's queue."""
        return self._run(self._async.resume(resort))
