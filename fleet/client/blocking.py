"""`FleetClient` and `SyncReservation`: the blocking forms, each method wrapping its async one.

`blocking_forms` gives the class every public coroutine method of `AsyncFleetClient` (or
`Reservation`) under the same name, run to completion (`flows.prefect_adapter.run_sync`), with
the async method's signature and docstring. Only what is not a coroutine method is written here:
`validate` and the context managers (`reserve`, `presenting_store`, `presenting_retrieve`),
whose async forms run on the same background loop as every blocking call (`sync_context`), so a
hand-off's flow goes on running while the `with` body runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fleet.client.asynchronous import AsyncFleetClient, Reservation
from fleet.client.handoffs import DEFAULT_PRESENT_WAIT, Handoff
from fleet.client.verbs import SelectorLike
from flows.prefect_adapter import run_sync

__all__ = ["FleetClient", "SyncHandoff", "SyncReservation", "sync_context"]

R = TypeVar("R")
C = TypeVar("C", bound=object)


def blocking(method: Callable[..., Awaitable[R]], target: str) -> Callable[..., R]:
    """The blocking form of the async `method`, called on the wrapped object `self.<target>`."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> R:
        return run_sync(method(getattr(self, target), *args, **kwargs))  # type: ignore[arg-type]

    return call


def blocking_forms(async_class: type, target: str) -> Callable[[type[C]], type[C]]:
    """Class decorator: every public coroutine method of `async_class` the decorated class does
    not define itself, as its blocking form on `self.<target>` (an `async_class` instance)."""

    def derive(cls: type[C]) -> type[C]:
        for name, method in inspect.getmembers(async_class, inspect.iscoroutinefunction):
            if not name.startswith("_") and name not in vars(cls):
                setattr(cls, name, blocking(method, target))
        return cls

    return derive


@contextmanager
def sync_context(manager: AbstractAsyncContextManager[R]) -> Iterator[R]:
    """The async context `manager` entered and exited from synchronous code."""
    value = run_sync(manager.__aenter__())
    try:
        yield value
    except BaseException as exc:
        if not run_sync(manager.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        run_sync(manager.__aexit__(None, None, None))


@blocking_forms(Handoff, "_handoff")
class SyncHandoff:
    """Blocking view of a presented `Handoff` (`confirm()`, `abort()`, `room`, `result`)."""

    if TYPE_CHECKING:  # the blocking forms are set by `blocking_forms`, not written here

        def __getattr__(self, name: str) -> Callable[..., Any]: ...

    def __init__(self, handoff: Handoff) -> None:
        self._handoff = handoff
        self.plate = handoff.plate
        self.room = handoff.room
        self.run_id = handoff.run_id

    @property
    def result(self) -> dict[str, Any] | None:
        """The room after the hand-off, once it ended."""
        return self._handoff.result


@contextmanager
def _sync_handoff(manager: AbstractAsyncContextManager[Handoff]) -> Iterator[SyncHandoff]:
    with sync_context(manager) as handoff:
        yield SyncHandoff(handoff)


@blocking_forms(Reservation, "_reservation")
class SyncReservation:
    """Blocking view of a `Reservation`."""

    if TYPE_CHECKING:  # the blocking forms are set by `blocking_forms`, not written here

        def __getattr__(self, name: str) -> Callable[..., Any]: ...

    def __init__(self, client: FleetClient, reservation: Reservation) -> None:
        self._client = client
        self._reservation = reservation
        self.resort = reservation.resort

    @property
    def lease_id(self) -> str:
        """The lease of the held lock."""
        return self._reservation.lease_id

    def presenting_store(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT, **options: Any
    ) -> AbstractContextManager[SyncHandoff]:
        """Blocking `Reservation.presenting_store`."""
        return _sync_handoff(self._reservation.presenting_store(plate, wait=wait, **options))

    def presenting_retrieve(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT, timeout: float = 600.0
    ) -> AbstractContextManager[SyncHandoff]:
        """Blocking `Reservation.presenting_retrieve`."""
        manager = self._reservation.presenting_retrieve(plate, wait=wait, timeout=timeout)
        return _sync_handoff(manager)


@blocking_forms(AsyncFleetClient, "_async")
class FleetClient:
    """Blocking API with the same verbs as `AsyncFleetClient` (see `fleet.client`)."""

    if TYPE_CHECKING:  # the blocking forms are set by `blocking_forms`, not written here

        def __getattr__(self, name: str) -> Callable[..., Any]: ...

    def __init__(self, inventory: Any = None, *, lock_timeout: float = 300.0) -> None:
        self._async = AsyncFleetClient(inventory, lock_timeout=lock_timeout)
        self.inventory = self._async.inventory

    def validate(
        self, call: str, resort: str | None, *params: Any, selector: SelectorLike | None = None
    ) -> None:
        """Check a request against the inventory only (see `AsyncFleetClient.validate`)."""
        self._async.validate(call, resort, *params, selector=selector)

    @contextmanager
    def reserve(
        self,
        resort: str | None = None,
        *,
        selector: SelectorLike | None = None,
        timeout: float | None = None,
    ) -> Iterator[SyncReservation]:
        """Hold a resort across several operations (see `AsyncFleetClient.reserve`)."""
        with sync_context(self._async.reserve(resort, selector=selector, timeout=timeout)) as held:
            yield SyncReservation(self, held)

    def presenting_store(
        self, plate: str, resort: str | None = None, **options: Any
    ) -> AbstractContextManager[SyncHandoff]:
        """Store a plate in two phases (see `AsyncFleetClient.presenting_store`)."""
        return _sync_handoff(self._async.presenting_store(plate, resort, **options))

    def presenting_retrieve(
        self, plate: str, *, wait: float = DEFAULT_PRESENT_WAIT, timeout: float = 600.0
    ) -> AbstractContextManager[SyncHandoff]:
        """Retrieve a plate in two phases (see `AsyncFleetClient.presenting_retrieve`)."""
        return _sync_handoff(self._async.presenting_retrieve(plate, wait=wait, timeout=timeout))
