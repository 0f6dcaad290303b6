"""Pipelined lanes: one resort's operations of a batch, back to back under one lock.

A batch runs one lane per resort (`flows.batch`). Run one by one, each operation would take the
resort's lock, create its device run, wait for it to end and give the lock back, and the motor
would stand still through all of that bookkeeping between two moves. A pipelined lane instead:

* takes the resort's lock once and keeps it across its consecutive operations;
* creates the next operation's device run while the current one moves, so the agent claims it
  the moment its slot frees (`ResortWorker.slot_released`) and the motor idles only for the
  agent's own state reports;
* holds one slot of the batch's `max_concurrency` gate for as long as it keeps the lock: a lane
  moves one operation at a time (the next one waits queued at the agent), so the gate still
  bounds the operations moving at once.

**Fairness rule.** A scheduler waiting for the resort announces itself (`locks.waiting`). Before it
queues the next operation the lane asks whether anybody waits; when somebody does, it queues
nothing more, gives the lock back when the operation under way ends, and waits for the waiter to
take it (or its announcement to lapse) before it queues for the lock again behind it. So a waiting
scheduler gets the resort within one operation of the batch: the one moving when it announced
itself, or the one already queued behind it.

An operation that does not complete stops the pipelining for that step: its queued successor is
withdrawn while still Scheduled (it is created again later, under the lock checked afresh), or
left to run when the agent had already claimed it (which it does the moment its slot frees), as
a plain lane would run it next. With `fail_fast` nothing is queued ahead (the lane keeps its
lock but creates each run after the one before Completed), so no operation starts after a
failure. A lock lost (lease not renewed) or abandoned (a crashed run whose resort
was not confirmed idle) is never reused: the lane takes a new one for its next operation.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.errors import DispatchError, FleetError
from fleet.core.locks.waiting import someone_waiting
from fleet.core.plan import DEVICE_FLOW_OF
from flows.dispatch import DeviceRun, finish, read_result, submit
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory, Resort
    from fleet.core.plan import Operation

__all__ = ["LaneReport", "LaneStep", "run_pipelined_lane"]

#: seconds a lane that gave its lock to a waiter waits for the waiter to take it
YIELD_WAIT = 5.0
YIELD_POLL = 0.1


@dataclass(frozen=True)
class LaneStep:
    """One operation of a lane: its index in the plan and the operation."""

    index: int
    op: Operation


class LaneReport(Protocol):
    """Where a lane reports its operations (the batch's results and progress)."""

    def skipped(self, index: int, reason: str) -> None:
        """The operation was not run."""

    def started(self, index: int) -> None:
        """The operation is under way (its run is being created)."""

    def ended(
        self,
        index: int,
        state: str,
        *,
        error: str | None = None,
        flow_run_id: str | None = None,
        result: Any = None,
    ) -> None:
        """The operation ended in `state` (Completed, Failed, Crashed, Cancelled ...)."""


@dataclass
class _Queued:
    step: LaneStep
    run: DeviceRun
    info: dict[str, Any]


class _Lane:
    """The state of one pipelined lane (see the module docstring)."""

    def __init__(
        self,
        inventory: Inventory,
        resort: Resort,
        report: LaneReport,
        gate: asyncio.Semaphore,
        stop: asyncio.Event,
        *,
        fail_fast: bool,
        lock_timeout: float,
    ) -> None:
        self.inventory = inventory
        self.resort = resort
        self.report = report
        self.gate = gate
        self.stop = stop
        self.fail_fast = fail_fast
        self.lock_timeout = lock_timeout
        self.held: locks.HeldLock | None = None
        self.gated = False
        self.attempt: dict[int, int] = {}

    # ------------------------------------------------------------------ lock and gate
    async def _lock(self) -> locks.HeldLock:
        held = self.held
        if held is not None and (held.lost.is_set() or held.stopped.is_set()):
            await self._unlock()  # lost or abandoned: never reused
            held = None
        if held is None:
            if not self.gated:
                await self.gate.acquire()
                self.gated = True
            held = await locks.acquire(
                names.lock_name(self.resort.name),
                timeout=self.lock_timeout,
                resort=self.resort.name,
                held_alert_after=lock_held_after(self.inventory),
            )
            self.held = held
        return held

    async def _unlock(self) -> None:
        held, self.held = self.held, None
        if held is not None and not held.stopped.is_set():
            await asyncio.shield(locks.release(held))
        if self.gated:
            self.gated = False
            self.gate.release()

    async def _yield_to_waiter(self) -> None:
        """Give the lock back and let the announced waiter take it before queueing again."""
        await self._unlock()
        deadline = time.monotonic() + YIELD_WAIT
        while time.monotonic() < deadline and await someone_waiting(self.resort.name):
            await asyncio.sleep(YIELD_POLL)

    # ------------------------------------------------------------------ runs
    async def _submit(self, step: LaneStep) -> _Queued:
        """Create `step`'s device run under the lane's lock (a retry gets a new idempotency key)."""
        held = await self._lock()
        tries = self.attempt.get(step.index, 0)
        self.attempt[step.index] = tries + 1
        info: dict[str, Any] = {}
        run = await submit(
            self.resort,
            DEVICE_FLOW_OF[step.op.action],
            step.op.parameters(),
            step=f"op{step.index}" + (f".{tries + 1}" if tries else ""),
            held=held,
            info=info,
        )
        return _Queued(step, run, info)

    async def _withdraw(self, queued: _Queued) -> bool:
        """Cancel `queued`'s run if no agent claimed it yet; True when it was withdrawn."""
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(queued.run.id))
            if run.state is None or not run.state.is_scheduled():
                return False
            await client.set_flow_run_state(
                run.id,
                Cancelled(message="withdrawn: the operation before it on this resort failed"),
                force=True,
            )
        return True

    async def _complete(self, queued: _Queued) -> bool:
        """Wait for `queued` and report it; True when it Completed."""
        index = queued.step.index
        run_id = queued.info.get("flow_run_id")
        try:
            await finish(self.inventory, queued.run)
            result = await read_result(queued.run)
        except DispatchError as exc:
            self.report.ended(
                index, exc.state or "Failed", error=str(exc), flow_run_id=exc.flow_run_id or run_id
            )
            return False
        except FleetError as exc:
            self.report.ended(index, "Failed", error=str(exc), flow_run_id=run_id)
            return False
        except Exception as exc:
            self.report.ended(
                index, "Failed", error=f"{type(exc).__name__}: {exc}", flow_run_id=run_id
            )
            return False
        self.report.ended(index, "Completed", flow_run_id=run_id, result=result)
        return True

    async def _pipeline_next(self, step: LaneStep) -> _Queued | None:
        """Queue `step` behind the run under way, unless the lane should not keep the lock.

        A failure here is not the step's: the step is then run the plain way, later.
        """
        if self.fail_fast or self.stop.is_set() or await someone_waiting(self.resort.name):
            return None
        try:
            return await self._submit(step)
        except Exception:
            return None

    async def _start(self, step: LaneStep) -> _Queued | None:
        """Report `step` started and queue its run (None, reported, when it cannot be)."""
        self.report.started(step.index)
        try:
            return await self._submit(step)
        except FleetError as exc:
            self.report.ended(step.index, "Failed", error=str(exc))
        except Exception as exc:
            self.report.ended(step.index, "Failed", error=f"{type(exc).__name__}: {exc}")
        return None

    # ------------------------------------------------------------------ the lane
    async def run(self, steps: Sequence[LaneStep]) -> None:
        todo = list(steps)
        queued: _Queued | None = None  # the next run, created behind the one under way
        try:
            while todo or queued is not None:
                if queued is not None:
                    current, queued = queued, None
                    self.report.started(current.step.index)
                else:
                    step = todo.pop(0)
                    if self.stop.is_set():
                        self.report.skipped(step.index, "skipped after an earlier failure")
                        continue
                    started = await self._start(step)
                    if started is None:
                        continue
                    current = started
                if todo:
                    queued = await self._pipeline_next(todo[0])
                    if queued is not None:
                        todo.pop(0)
                if not await self._complete(current):
                    if self.fail_fast:
                        self.stop.set()
                    if queued is not None and await self._withdraw(queued):
                        todo.insert(0, queued.step)  # created again later, or skipped
                        queued = None
                if (
                    queued is None
                    and todo
                    and self.held is not None
                    and await someone_waiting(self.resort.name)
                ):
                    await self._yield_to_waiter()
        finally:
            if queued is not None:
                await asyncio.shield(self._withdraw(queued))
            await self._unlock()


async def run_pipelined_lane(
    inventory: Inventory,
    resort: Resort,
    steps: Sequence[LaneStep],
    report: LaneReport,
    *,
    gate: asyncio.Semaphore,
    stop: asyncio.Event,
    fail_fast: bool = False,
    lock_timeout: float = locks.DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Run `steps` (plan order) on `resort`, pipelined under one kept lock (module docstring).

    Never raises for an operation that failed: every step is reported through `report`.
    """
    lane = _Lane(
        inventory, resort, report, gate, stop, fail_fast=fail_fast, lock_timeout=lock_timeout
    )
    await lane.run(steps)
