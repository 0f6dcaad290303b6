"""`FleetClient` and `SyncReservation`: the blocking forms, each method wrapping its async one.

`blocking_forms` gives the class every public coroutine method of `AsyncFleetClient` (or
`Reservation`) under the same name, run to completion (`flows.prefect_adapter.run_sync`), with
the async method's signature and docstring. Only what is not a coroutine method is written here:
`validate` and the context manager `reserve`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fleet.client.asynchronous import AsyncFleetClient, Reservation
from fleet.client.verbs import SelectorLike
from flows.prefect_adapter import run_sync

__all__ = ["FleetClient", "SyncReservation"]

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
        manager = self._async.reserve(resort, selector=selector, timeout=timeout)
        reservation = run_sync(manager.__aenter__())
        try:
            yield SyncReservation(self, reservation)
        except BaseException as exc:
            run_sync(manager.__aexit__(type(exc), exc, exc.__traceback__))
            raise
        else:
            run_sync(manager.__aexit__(None, None, None))
