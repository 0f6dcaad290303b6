"""`fleet drain` and `fleet resume`: take one resort's queue out of service and back.

`drain(inv, resort)` pauses the resort's queue and waits until none of its runs is Pending,
Running or Cancelling; `resume(inv, resort)` unpauses it. A drained queue stays paused across
`provision` runs (its description says so) until `resume`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fleet.core.errors import DeviceBusyError, ProvisionError
from fleet.core.provision.connection import PAGE, sync_client, translated
from fleet.core.provision.work_pools import DRAINED_MARK, queue_description
from resort_common import names

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import WorkQueue

    from fleet.core.inventory import Inventory, Resort

__all__ = ["DrainResult", "drain", "resume"]

_ACTIVE_RUN_STATES = ("PENDING", "RUNNING", "CANCELLING")


@dataclass(frozen=True)
class DrainResult:
    """Outcome of `drain` / `resume`.

    Attributes:
        resort: the resort's name.
        queue: `pool/queue`.
        paused: the queue's state afterwards.
        active_runs: runs still Pending/Running/Cancelling on the queue (0 after a drain).
        scheduled_runs: runs waiting on the queue (they start after `resume`).
        waited: seconds spent waiting for active runs to finish.
    """

    resort: str
    queue: str
    paused: bool
    active_runs: int
    scheduled_runs: int
    waited: float


def _read_queue(client: SyncPrefectClient, inv: Inventory, resort: Resort) -> WorkQueue:
    from prefect.exceptions import ObjectNotFound

    qname = names.work_queue_name(resort)
    try:
        return client.read_work_queue_by_name(qname, work_pool_name=inv.fleet.work_pool)
    except ObjectNotFound as exc:
        raise ProvisionError(
            f"resort {resort.name}: no work queue {inv.fleet.work_pool}/{qname} on the server; "
            "run `fleet provision` first"
        ) from exc


def _runs(client: SyncPrefectClient, inv: Inventory, queue: str, states: tuple[str, ...]) -> list:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterWorkQueueName,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType(s) for s in states])
            ),
            work_queue_name=FlowRunFilterWorkQueueName(any_=[queue]),
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[inv.fleet.work_pool])),
        limit=PAGE,
    )


def _count_scheduled(client: SyncPrefectClient, inv: Inventory, queue: str) -> int:
    return len(_runs(client, inv, queue, ("SCHEDULED",)))


def drain(
    inv: Inventory, resort_name: str, *, timeout: float = 300.0, poll: float = 0.5
) -> DrainResult:
    """Pause a resort's queue and wait until no run on it is Pending, Running or Cancelling.

    Runs already Scheduled stay queued and start after `resume`.

    Raises:
        DeviceSelectionError: unknown resort.
        ProvisionError: the queue does not exist (not provisioned).
        DeviceBusyError: runs still active after `timeout` s (the queue stays paused).
    """
    resort = inv.resort(resort_name)
    qname = names.work_queue_name(resort)
    label = f"{inv.fleet.work_pool}/{qname}"
    started = time.monotonic()
    with translated(), sync_client() as client:
        queue = _read_queue(client, inv, resort)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        base = (queue.description or "").split(" Paused:", 1)[0]
        client.update_work_queue(
            id=queue.id, is_paused=True, description=f"{base} {DRAINED_MARK} at {stamp}.".strip()
        )
        while True:
            active = _runs(client, inv, qname, _ACTIVE_RUN_STATES)
            if not active:
                break
            if time.monotonic() - started >= timeout:
                first = active[0]
                since = first.start_time or first.expected_start_time
                raise DeviceBusyError(
                    f"resort {resort.name}: {len(active)} run(s) still active on {label} after "
                    f"{timeout:g} s (e.g. {first.name} {first.id} "
                    f"{first.state_name or first.state_type} since {since}); the queue stays "
                    "paused"
                )
            time.sleep(poll)
        scheduled = _count_scheduled(client, inv, qname)
    return DrainResult(resort.name, label, True, 0, scheduled, time.monotonic() - started)


def resume(inv: Inventory, resort_name: str) -> DrainResult:
    """Unpause a resort's queue (refused for a resort that is inactive in the inventory).

    Raises:
        DeviceSelectionError: unknown resort.
        ProvisionError: the queue does not exist, or the resort is `active: false`.
    """
    resort = inv.resort(resort_name)
    if not resort.active:
        raise ProvisionError(
            f"resort {resort.name} is inactive in {inv.path}: set `active: true` and run "
            "`fleet provision`"
        )
    qname = names.work_queue_name(resort)
    with translated(), sync_client() as client:
        queue = _read_queue(client, inv, resort)
        client.update_work_queue(
            id=queue.id, is_paused=False, description=queue_description(inv, resort)
        )
        active = len(_runs(client, inv, qname, _ACTIVE_RUN_STATES))
        scheduled = _count_scheduled(client, inv, qname)
    return DrainResult(resort.name, f"{inv.fleet.work_pool}/{qname}", False, active, scheduled, 0.0)
