"""Plate hand-offs from a scheduler: start one, wait until its room is presented, decide it.

A store (retrieve) runs its parent flow (`flows.plates`) in this process; the flow reserves a
room, turns its hotel to the access position and pauses its run until a decision arrives.
`wait_presented` follows a plate's hand-off until its run is paused (the room presented);
`send_decision` resumes that run with `confirm` or `abort`, from this process or any other.
`presenting` joins the two phases into one context manager: it yields the presented room, then
confirms when the body ends normally and aborts when it raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from fleet.core.errors import PlateError

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory
    from fleet.core.plates import PlateRegistry, RoomRecord

__all__ = ["DEFAULT_PRESENT_WAIT", "Handoff", "presenting", "send_decision", "wait_presented"]

#: seconds to wait for a hand-off's room to be presented (its hotel turning, a busy resort)
DEFAULT_PRESENT_WAIT = 60.0
_POLL = 0.2

Decision = Literal["confirm", "abort"]


@dataclass
class Handoff:
    """A presented hand-off: its room and the paused flow run waiting for the decision.

    `result` is the room after the hand-off, once its flow returned.
    """

    plate: str
    room: dict[str, Any]
    run_id: str
    inventory: Any = field(repr=False)
    decided: Decision | None = None
    result: dict[str, Any] | None = None

    async def confirm(self) -> None:
        """The plate was put in (taken out): commit the hand-off."""
        await self._decide("confirm")

    async def abort(self) -> None:
        """The hand-off did not happen: the room stays as it was."""
        await self._decide("abort")

    async def _decide(self, decision: Decision) -> None:
        if self.decided is not None:
            raise PlateError(f"plate {self.plate}: this hand-off was already {self.decided}ed")
        await _resume(self.plate, self.run_id, decision, time.monotonic() + DEFAULT_PRESENT_WAIT)
        self.decided = decision


async def wait_presented(
    inv: Inventory,
    plate: str,
    *,
    wait: float = DEFAULT_PRESENT_WAIT,
    running: asyncio.Task[Any] | None = None,
) -> tuple[RoomRecord, str]:
    """The room and run id of `plate`'s hand-off once its run is paused (the room presented).

    Args:
        running: the task running the hand-off's flow in this process: when it ends first, its
            error (or a `PlateError`) is raised.

    Raises:
        PlateError: no hand-off of the plate is in progress (or it was interrupted), its run
            ended, or the room was not presented within `wait` s.
    """
    from fleet.core.plates.config import open_registry
    from fleet.core.plates.occupancy import publish_changed

    registry = await open_registry(inv, on_change=publish_changed)
    try:
        return await _until_paused(registry, plate, time.monotonic() + wait, wait, running)
    finally:
        await registry.close()


async def _until_paused(
    registry: PlateRegistry,
    plate: str,
    deadline: float,
    wait: float,
    running: asyncio.Task[Any] | None,
) -> tuple[RoomRecord, str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        while True:
            if running is not None and running.done():
                running.result()  # its error, if any
                raise PlateError(f"plate {plate}: its hand-off ended before it was presented")
            found = await registry.handoff_run(plate)
            state = None
            if found is not None and found[1] is not None:
                room, run_id = found[0], found[1]
                state = (await client.read_flow_run(UUID(run_id))).state
                if state is not None and state.is_paused():
                    return room, run_id
                if state is not None and state.is_final():
                    raise PlateError(f"plate {plate}: its hand-off run ended {state.name}")
            elif running is None:
                await _no_handoff(registry, plate)
            if time.monotonic() >= deadline:
                doing = f" (its run is {state.name})" if state is not None else ""
                raise PlateError(
                    f"plate {plate}: its room was not presented within {wait:g} s{doing}"
                )
            await asyncio.sleep(_POLL)


async def _no_handoff(registry: PlateRegistry, plate: str) -> None:
    """Raise the reason `plate` has no hand-off in progress."""
    room = await registry.where(plate)
    if room is not None and room.state == "uncertain":
        raise PlateError(
            f"plate {plate}: its hand-off was interrupted; {room.resort} hotel {room.hotel} "
            f"room {room.room} is uncertain (look, then `fleet plates resolve`)"
        )
    if room is not None and room.state == "reserved":
        raise PlateError(f"plate {plate}: its hand-off has no waiting flow run to resume")
    raise PlateError(f"plate {plate}: no hand-off of it is in progress")


async def send_decision(
    inv: Inventory, plate: str, decision: Decision, *, wait: float = DEFAULT_PRESENT_WAIT
) -> RoomRecord:
    """Resume `plate`'s waiting hand-off with `decision`; waits up to `wait` s for its room to
    be presented first. Returns the room as it was when the decision was sent.

    Raises:
        PlateError: as `wait_presented`, or the run refused to resume.
    """
    room, run_id = await wait_presented(inv, plate, wait=wait)
    await _resume(plate, run_id, decision, time.monotonic() + wait)
    return room


async def _resume(plate: str, run_id: str, decision: Decision, deadline: float) -> None:
    """Resume the paused run `run_id` with `decision`.

    The run saves its input form just after it pauses; a resume that arrives in between is
    refused by the server and sent again until `deadline`.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus

    async with get_client() as client:
        while True:
            response = await client.resume_flow_run(UUID(run_id), run_input={"decision": decision})
            if response.status == SetStateStatus.ACCEPT:
                return
            reason = getattr(response.details, "reason", "") or "refused"
            run = await client.read_flow_run(UUID(run_id))
            if run.state is None or not run.state.is_paused() or time.monotonic() >= deadline:
                raise PlateError(f"plate {plate}: the hand-off run did not resume: {reason}")
            await asyncio.sleep(_POLL)


@contextlib.asynccontextmanager
async def presenting(
    inv: Inventory,
    plate: str,
    start: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
    *,
    wait: float,
) -> AsyncIterator[Handoff]:
    """Run `start()` (a hand-off flow of `plate`) in the background; yield its `Handoff` once
    presented; on exit confirm (the body ended normally) or abort (it raised), unless the body
    decided itself, and wait for the flow's result (`Handoff.result`)."""
    task = asyncio.create_task(start())
    try:
        room, run_id = await wait_presented(inv, plate, wait=wait, running=task)
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    handoff = Handoff(plate, room.to_dict(), run_id, inv)
    try:
        yield handoff
    except BaseException:
        if handoff.decided is None:
            try:
                await handoff.abort()
            except Exception:
                task.cancel()  # the flow then leaves the presented room uncertain
        with contextlib.suppress(BaseException):
            handoff.result = await task
        raise
    if handoff.decided is None:
        await handoff.confirm()
    handoff.result = await task
