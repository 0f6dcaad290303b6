"""Per-resort status: what each agent published, its worker heartbeat and its queue's state.

`read_status(inv)` combines, per resort, the agent's status variable
(`names.status_variable_name`, written on every change and every ~15 s), the worker's status in
the device pool (ONLINE/OFFLINE from Prefect's heartbeats), the e-stop latch variable and whether
the resort's work queue is paused (`fleet drain`).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from resort_common import names
from resort_common.documents import AgentStatus, EstopLatch

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["STALE_AFTER", "ResortStatus", "aread_status", "read_status", "stale_after"]

# The agent republishes every `fleet.agent_heartbeat` s (default 15); a document older than this,
# or than 4 heartbeats when they are slower, is not online any more.
STALE_AFTER = datetime.timedelta(seconds=60)


def stale_after(inv: Inventory) -> datetime.timedelta:
    """Age after which an agent's status document no longer counts as online."""
    beat = float(getattr(inv.fleet, "agent_heartbeat", 15.0))
    return max(STALE_AFTER, datetime.timedelta(seconds=4 * beat))


@dataclass(frozen=True)
class ResortStatus:
    """One resort as the control plane sees it (JSON-ready via `to_dict`)."""

    name: str
    online: bool
    connected: bool
    position: float | None
    active_hotel: str | None
    moving: bool
    estopped: bool
    faulted: bool
    last_error: str | None
    health: dict[str, Any] | None
    queue_paused: bool | None
    current_run: str | None
    worker_status: str | None = None
    last_heartbeat: str | None = None
    updated_at: str | None = None
    active: bool = True
    speed: float | None = None  # deg/s in use by the agent (the inventory's until `fleet speed`)
    acceleration: float | None = None  # deg/s^2 in use

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def _value(variable: Any) -> Any:
    return getattr(variable, "value", None)


async def aread_status(inv: Inventory, only: Collection[str] | None = None) -> list[ResortStatus]:
    """Async form of `read_status`; `only`: just these resorts (in inventory order).

    The worker list, the queues and each resort's two variables are read concurrently.
    """
    from prefect import get_client

    resorts = [r for r in inv.resorts if only is None or r.name in only]
    async with get_client() as client:
        workers, queues, *variables = await asyncio.gather(
            _workers(client, inv.fleet.work_pool),
            _queues(client, inv.fleet.work_pool),
            *(
                client.read_variable_by_name(name)
                for r in resorts
                for name in (names.status_variable_name(r), names.estop_variable_name(r))
            ),
        )
    by_worker = {w.name: w for w in workers}
    now = datetime.datetime.now(datetime.UTC)
    result = []
    for i, resort in enumerate(resorts):
        status = AgentStatus.parse(_value(variables[2 * i])) or AgentStatus(name=resort.name)
        latch = EstopLatch.parse(_value(variables[2 * i + 1])) or EstopLatch()
        worker = by_worker.get(names.worker_name(resort))
        worker_status = getattr(getattr(worker, "status", None), "value", None)
        updated = status.updated_at
        fresh = updated is not None and now - updated < stale_after(inv)
        online = status.online and fresh and worker_status != "OFFLINE"
        queue = queues.get(names.work_queue_name(resort))
        heartbeat = getattr(worker, "last_heartbeat_time", None)
        result.append(
            ResortStatus(
                name=resort.name,
                online=online,
                connected=online and status.connected,
                position=status.position,
                active_hotel=status.active_hotel,
                moving=online and status.moving,
                estopped=latch.estopped or status.estopped,
                faulted=status.faulted if online else False,
                last_error=status.last_error,
                health=status.health,
                queue_paused=None if queue is None else bool(queue.is_paused),
                current_run=status.current_run if online else None,
                worker_status=worker_status,
                last_heartbeat=heartbeat.isoformat() if heartbeat else None,
                updated_at=updated.isoformat() if updated else None,
                active=bool(getattr(resort, "active", True)),
                speed=status.speed,
                acceleration=status.acceleration,
            )
        )
    return result


async def _workers(client: Any, pool: str) -> list[Any]:
    from prefect.exceptions import ObjectNotFound

    try:
        return list(await client.read_workers_for_work_pool(pool, limit=200))
    except ObjectNotFound:
        return []


async def _queues(client: Any, pool: str) -> dict[str, Any]:
    from prefect.client.schemas.filters import WorkQueueFilter
    from prefect.exceptions import ObjectNotFound

    try:
        found = await client.read_work_queues(
            pool, work_queue_filter=WorkQueueFilter(), limit=200, offset=0
        )
    except ObjectNotFound:
        return {}
    return {q.name: q for q in found}


def read_status(inv: Inventory) -> list[ResortStatus]:
    """Status of every resort of `inv`, in inventory order."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(aread_status(inv))
