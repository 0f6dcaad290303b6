"""Emergency stop of resorts, out of band of their work queues: `estop` and `clear_estop`.

A stop (1) sets the resort's latch variable (`names.estop_variable_name`), so an agent that
restarts stays stopped, (2) emits the event `plate-resort.estop` for the resort's resource id,
which the agent receives on a thread of its own (never behind a move) and answers by switching
torque off, and (3) waits for the agent's acknowledgement `plate-resort.estopped`. A stop counts
as done only when the acknowledgement says `confirmed` (Torque Enable read back 0 on the servo);
an agent that could not confirm it keeps trying and acknowledges again when it can. Clearing works
the same way with `plate-resort.estop-clear` / `plate-resort.estop-cleared`; the agent also keeps
the latch in a file on its Pi, and a clear releases both. Motion runs fail at once with
`EmergencyStopError` while a resort is latched.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleet.core import prefect_adapter
from fleet.core.errors import EstopError
from fleet.core.identity import who_am_i
from resort_common import names
from resort_common.documents import EstopLatch
from resort_common.events import (
    ESTOP_CLEAR_EVENT,
    ESTOP_CLEARED_EVENT,
    ESTOP_EVENT,
    ESTOPPED_EVENT,
)
from resort_common.variables import set_variable

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "EstopAck",
    "aclear_estop",
    "aestop",
    "clear_estop",
    "estop",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class EstopAck:
    """One resort's acknowledgement: who, which command, how long it took (seconds), and for a
    stop whether torque was confirmed off (read back from the servo)."""

    resort: str
    command_id: str
    latency: float
    position: float | None = None
    confirmed: bool = True


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _resorts(inv: Inventory, resorts: Iterable[str] | None) -> list[Any]:
    if resorts is None:
        return list(inv.resorts)
    selected = [inv.resort(name) for name in dict.fromkeys(resorts)]
    if not selected:
        raise EstopError("no resort given (name resorts or use --all)")
    return selected


async def _command(
    inv: Inventory,
    resorts: Iterable[str] | None,
    *,
    event: str,
    ack_event: str,
    latch: dict[str, Any],
    payload: dict[str, Any],
    timeout: float,
) -> list[EstopAck]:
    from prefect import get_client
    from prefect.events.clients import get_events_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.schemas.events import Event

    targets = _resorts(inv, resorts)
    by_resource = {names.resource_id(r): r.name for r in targets}
    command_id = str(uuid.uuid4())
    payload = {**payload, "command_id": command_id}
    acks: dict[str, EstopAck] = {}
    ack_filter = EventFilter(
        event=EventNameFilter(name=[ack_event]),
        resource=EventResourceFilter(id=list(by_resource)),
    )
    async with get_client() as client, prefect_adapter.events_subscriber(ack_filter) as subscriber:
        document = EstopLatch.model_validate({**latch, **payload}).to_document()
        await asyncio.gather(
            *(set_variable(client, names.estop_variable_name(r), document) for r in targets)
        )
        started = time.monotonic()
        async with get_events_client() as events:
            for resource_id, name in by_resource.items():
                await events.emit(
                    Event(
                        event=event,
                        resource={
                            "prefect.resource.id": resource_id,
                            "prefect.resource.name": name,
                        },
                        payload=payload,
                    )
                )

        async def collect() -> None:
            async for ack in subscriber:
                payload = ack.payload or {}
                if payload.get("command_id") != command_id:
                    continue
                name = by_resource.get(ack.resource.id)
                if not name or (name in acks and acks[name].confirmed):
                    continue
                acks[name] = EstopAck(
                    name,
                    command_id,
                    time.monotonic() - started,
                    payload.get("position"),
                    bool(payload.get("confirmed", True)),
                )
                if len(acks) == len(by_resource) and all(a.confirmed for a in acks.values()):
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), timeout)
    what = "stop" if event == ESTOP_EVENT else "clear"
    missing = [r.name for r in targets if r.name not in acks]
    if missing:
        raise EstopError(
            f"{what} not acknowledged within {timeout:g} s by {', '.join(missing)} "
            f"(agent offline or not connected?); the latch variable is set, so "
            + (
                "the resort stays stopped when its agent starts"
                if what == "stop"
                else "run the clear again once the agent is online: the agent's own latch on "
                "its Pi stays set until a clear reaches it"
            )
        )
    unconfirmed = [r.name for r in targets if not acks[r.name].confirmed]
    if unconfirmed:
        raise EstopError(
            f"stop received but not confirmed within {timeout:g} s by {', '.join(unconfirmed)}: "
            "Torque Enable did not read back 0 (serial link lost?); the resort is latched and "
            "its agent keeps switching torque off. Cut the servo supply if it must stop now"
        )
    return [acks[r.name] for r in targets]


async def aestop(
    inv: Inventory,
    resorts: Sequence[str] | None,
    reason: str = "fleet estop",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[EstopAck]:
    """Async form of `estop`."""
    at = _now().isoformat()
    return await _command(
        inv,
        resorts,
        event=ESTOP_EVENT,
        ack_event=ESTOPPED_EVENT,
        latch={"estopped": True, "at": at},
        payload={"reason": reason, "by": who_am_i(), "at": at},
        timeout=timeout,
    )


async def aclear_estop(
    inv: Inventory, resorts: Sequence[str] | None, *, timeout: float = DEFAULT_TIMEOUT
) -> list[EstopAck]:
    """Async form of `clear_estop`."""
    at = _now().isoformat()
    return await _command(
        inv,
        resorts,
        event=ESTOP_CLEAR_EVENT,
        ack_event=ESTOP_CLEARED_EVENT,
        latch={"estopped": False, "at": at},
        payload={"by": who_am_i(), "at": at},
        timeout=timeout,
    )


def estop(
    inv: Inventory,
    resorts: Sequence[str] | None,
    reason: str = "fleet estop",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[EstopAck]:
    """Emergency-stop `resorts` (names; None = every resort of the inventory).

    Returns once every agent has switched torque off and acknowledged.

    Raises:
        DeviceSelectionError: an unknown resort name.
        EstopError: some agent did not acknowledge within `timeout` (its latch is still set).
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(aestop(inv, resorts, reason, timeout=timeout))


def clear_estop(
    inv: Inventory, resorts: Sequence[str] | None, *, timeout: float = DEFAULT_TIMEOUT
) -> list[EstopAck]:
    """Release the e-stop latch of `resorts` (None = all); motion is allowed again.

    Raises:
        DeviceSelectionError: an unknown resort name.
        EstopError: some agent did not acknowledge within `timeout` (its latch is cleared).
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(aclear_estop(inv, resorts, timeout=timeout))
