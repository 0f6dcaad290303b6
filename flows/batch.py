"""Batch parent flow: run a plan's operations across the fleet, one at a time per resort.

`run_batch` (flow `fleet-batch`) validates the whole plan against the inventory first (nothing is
queued when any operation is wrong), assigns every selector operation to a resort up front (the
least busy fitting resort, counting what the batch already gave it), then runs one lane per resort:
lanes run concurrently, each lane runs its operations in plan order under the resort's lock, and
at most `max_concurrency` operations move at once. A lane is pipelined (`flows.pipeline`): it
keeps the resort's lock across its operations and queues the next one while the current one
moves, yielding the resort to a waiting scheduler within one operation. With a fleet-wide move
limit (`fleet.max_concurrent_moves`) each operation takes its lock and move slot on its own.
With `fail_fast`, the first failure stops every lane from starting more work (operations already
moving finish) and the rest are `Skipped`.

Each operation yields an `OperationResult` (index, operation, resort, action, state, duration,
error, flow_run_id, result). Progress goes to one callback (the CLI's progress bar): `execute_plan`
takes it as an argument; the flow, whose parameters are stored on the server, takes it from the
context its in-process caller sets with `reporting_progress_to`, so concurrent batches in one
process each report to their own caller. The flow returns the results as dicts, and ends Failed
when any operation failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger

from fleet.core.errors import DispatchError, FleetError
from fleet.core.plan import Operation, Plan, parse_plan, validate_plan
from fleet.core.selection import choose, queue_load, read_statuses
from fleet.core.watchdog import parent_heartbeat
from flows.operations import run_operation
from flows.pipeline import LaneStep, run_pipelined_lane
from flows.requests import load_fleet_inventory

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "BatchReport",
    "OperationResult",
    "assign_resorts",
    "execute_plan",
    "reporting_progress_to",
    "run_batch",
]

Listener = Callable[["OperationResult"], None]
#: the progress callback of the `fleet-batch` runs started in this context
_progress: ContextVar[Listener | None] = ContextVar("fleet_batch_progress", default=None)


@contextmanager
def reporting_progress_to(callback: Listener | None) -> Iterator[None]:
    """`fleet-batch` runs started in-process inside this block report progress to `callback`.

    The callback is called with each result, when it starts and when it finishes.
    """
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


@dataclass
class OperationResult:
    """What happened to one operation of a plan."""

    index: int
    operation: str
    resort: str | None
    action: str
    state: str = "Pending"  # Pending, Running, Completed, Failed, Crashed, Cancelled, Skipped
    duration: float | None = None
    error: str | None = None
    flow_run_id: str | None = None
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class BatchReport:
    """All results in plan order, plus the batch's own timings."""

    results: list[OperationResult] = field(default_factory=list)
    makespan: float = 0.0

    @property
    def failed(self) -> list[OperationResult]:
        """Results that did not complete."""
        return [r for r in self.results if r.state != "Completed"]


async def assign_resorts(inventory: Inventory, plan: Plan) -> list[Any]:
    """Resolve each operation's target up front; selectors go to the least loaded fitting resort.

    Raises:
        DeviceSelectionError: a named resort is unavailable or no resort fits a selector.
    """
    from prefect.client.orchestration import get_client

    statuses = await read_statuses(inventory)
    async with get_client() as client:
        load = await queue_load(inventory, inventory.resort_names, client)
    targets: list[Any] = []
    for op in plan.operations:
        target = choose(
            inventory,
            resort=op.resort,
            selector=op.effective_selector(),
            statuses=statuses,
            load=load,
        )
        load[target.name] = load.get(target.name, 0) + 1
        targets.append(target)
    return targets


def _notify(progress: Listener | None, result: OperationResult) -> None:
    if progress is None:
        return
    try:
        progress(result)
    except Exception:  # a broken progress display must not break the batch
        get_run_logger().debug("progress listener failed", exc_info=True)


class _Report:
    """The batch's side of its lanes (`flows.pipeline.LaneReport`): results and progress."""

    def __init__(
        self,
        results: list[OperationResult],
        progress: Listener | None,
        fail_fast: bool,
        stop: asyncio.Event,
    ) -> None:
        self.results = results
        self.progress = progress
        self.fail_fast = fail_fast
        self.stop = stop
        self._began: dict[int, float] = {}

    def skipped(self, index: int, reason: str) -> None:
        result = self.results[index]
        result.state, result.error = "Skipped", reason
        _notify(self.progress, result)

    def started(self, index: int) -> None:
        result = self.results[index]
        result.state = "Running"
        self._began[index] = time.monotonic()
        _notify(self.progress, result)

    def ended(
        self,
        index: int,
        state: str,
        *,
        error: str | None = None,
        flow_run_id: str | None = None,
        result: Any = None,
        duration: float | None = None,
    ) -> None:
        entry = self.results[index]
        entry.state, entry.error, entry.result = state, error, result
        entry.flow_run_id = flow_run_id or entry.flow_run_id
        began = self._began.get(index)
        if duration is not None:
            entry.duration = round(duration, 3)
        elif began is not None:
            entry.duration = round(time.monotonic() - began, 3)
        if state != "Completed" and self.fail_fast:
            self.stop.set()
        _notify(self.progress, entry)


async def execute_plan(
    inventory: Inventory,
    plan: Plan,
    *,
    max_concurrency: int = 8,
    fail_fast: bool = False,
    lock_timeout: float = 300.0,
    progress: Listener | None = None,
) -> BatchReport:
    """Run a validated plan (see module docstring); never raises for a failed operation.

    `progress` is called with each result when it starts and when it finishes.

    Raises:
        DeviceSelectionError: a target could not be resolved up front (nothing was queued).
    """
    if max_concurrency < 1:
        raise FleetError("max_concurrency must be at least 1")
    start = time.monotonic()
    results = [
        OperationResult(
            index=i,
            operation=op.describe(),
            resort=op.resort,
            action=op.action,
        )
        for i, op in enumerate(plan.operations)
    ]
    targets = await assign_resorts(inventory, plan)  # DeviceSelectionError: nothing queued
    lanes: dict[str, list[tuple[int, Operation, Any]]] = {}
    for i, (op, target) in enumerate(zip(plan.operations, targets, strict=True)):
        results[i].resort = target.name
        lanes.setdefault(target.name, []).append((i, op, target))

    gate = asyncio.Semaphore(max_concurrency)
    stop = asyncio.Event()
    report = _Report(results, progress, fail_fast, stop)

    async def run_lane(items: list[tuple[int, Operation, Any]]) -> None:
        """One operation at a time, each under its own lock (with a fleet-wide move limit)."""
        for index, op, target in items:
            if stop.is_set():
                report.skipped(index, "skipped after an earlier failure")
                continue
            async with gate:
                report.started(index)
                info: dict[str, Any] = {}
                try:
                    device = await run_operation(
                        inventory,
                        op,
                        step=f"op{index}",
                        lock_timeout=lock_timeout,
                        resort=target,
                        info=info,
                    )
                except DispatchError as exc:
                    report.ended(
                        index,
                        exc.state or "Failed",
                        error=str(exc),
                        flow_run_id=exc.flow_run_id or info.get("flow_run_id"),
                    )
                except FleetError as exc:
                    report.ended(
                        index, "Failed", error=str(exc), flow_run_id=info.get("flow_run_id")
                    )
                except Exception as exc:
                    report.ended(
                        index,
                        "Failed",
                        error=f"{type(exc).__name__}: {exc}",
                        flow_run_id=info.get("flow_run_id"),
                    )
                else:
                    report.ended(
                        index, "Completed", flow_run_id=info.get("flow_run_id"), result=device
                    )

    async def run_pipelined(items: list[tuple[int, Operation, Any]]) -> None:
        await run_pipelined_lane(
            inventory,
            items[0][2],
            [LaneStep(index, op) for index, op, _ in items],
            report,
            gate=gate,
            stop=stop,
            fail_fast=fail_fast,
            lock_timeout=lock_timeout,
        )

    # a fleet-wide move limit is a slot per move: the pipeline's queued run would need its own
    pipelined = getattr(inventory.fleet, "max_concurrent_moves", None) is None
    lane = run_pipelined if pipelined else run_lane
    await asyncio.gather(*(lane(items) for items in lanes.values()))
    return BatchReport(results, round(time.monotonic() - start, 3))


@flow(name="fleet-batch", log_prints=False)
async def run_batch(
    operations: list[dict[str, Any]],
    inventory: str | None = None,
    max_concurrency: int = 8,
    fail_fast: bool = False,
    lock_timeout: float = 300.0,
) -> Any:
    """Run a plan's operations across the fleet; returns the per-operation results.

    Args:
        operations: the plan's `operations:` list.
        inventory: inventory path (default `$FLEET_INVENTORY` or `inventory/demo.yaml`).
        max_concurrency: at most this many operations at once (across resorts).
        fail_fast: stop starting operations after the first failure.
        lock_timeout: seconds each operation waits for its resort's lock.

    Returns:
        A Completed state whose data is `{"results": [...], "makespan": s}`, or a Failed state
        with the same data when any operation did not complete.
    """
    from prefect.states import Completed, Failed

    inv = load_fleet_inventory(inventory)
    plan = parse_plan({"operations": operations})
    validate_plan(inv, plan)
    async with parent_heartbeat(inv):
        report = await execute_plan(
            inv,
            plan,
            max_concurrency=max_concurrency,
            fail_fast=fail_fast,
            lock_timeout=lock_timeout,
            progress=_progress.get(),
        )
    data = {"results": [r.to_dict() for r in report.results], "makespan": report.makespan}
    failed = report.failed
    if failed:
        return Failed(
            message=f"{len(failed)} of {len(report.results)} operations did not complete",
            data=data,
        )
    return Completed(message=f"{len(report.results)} operations completed", data=data)
