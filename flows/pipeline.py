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
from flows.dispatch import PICKUP_MARGIN, RESULT_READ_WINDOW, DeviceRun, finish, submit
from flows.results import aread_sequence_result
from flows.sequence import MAX_SEQUENCE_MOVES
from flows.waiting import retry_transient
from resort_common import names

#: the device flow a lane's moves run in
SEQUENCE_FLOW = "move-sequence"

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
        duration: float | None = None,
    ) -> None:
        """The operation ended in `state` (Completed, Failed, Crashed, Cancelled ...).

        `duration`: its own time in seconds, when it ran in a run with others (else the time
        since `started`).
        """


@dataclass
class _Queued:
    """A `move-sequence` run created for consecutive steps of the lane."""

    steps: list[LaneStep]
    run: DeviceRun
    info: dict[str, Any]


def _move(op: Operation) -> dict[str, Any]:
    """`op` as a step of a `move-sequence` run."""
    return {"action": op.action, **op.parameters()}


def _took(row: dict[str, Any]) -> float | None:
    """A step's time at the agent (seconds), from its row."""
    try:
        return float(row["finished_at"]) - float(row["started_at"])
    except (KeyError, TypeError, ValueError):
        return None


def _step_result(resort: str, run_id: str | None, op: Operation, row: dict[str, Any]) -> Any:
    """A step's row as the batch result of its operation (the fields of a single move's)."""
    fields = {k: v for k, v in row.items() if k not in ("index", "state", "action", "error")}
    result: dict[str, Any] = {"resort": resort, "action": DEVICE_FLOW_OF[op.action]}
    if op.action == "activate_hotel":
        result["hotel_requested"] = op.hotel
    return {**result, "flow_run_id": run_id, **fields}


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
    async def _submit(self, steps: list[LaneStep], *, after: _Queued | None = None) -> _Queued:
        """Create one `move-sequence` run for `steps` under the lane's lock.

        `after`: the run it is queued behind (the agent runs it only when that one ran all its
        moves, `flows.sequence`). A step created again gets a new idempotency key.
        """
        held = await self._lock()
        first = steps[0].index
        tries = self.attempt.get(first, 0)
        self.attempt[first] = tries + 1
        info: dict[str, Any] = {}
        parameters: dict[str, Any] = {"moves": [_move(step.op) for step in steps]}
        if after is not None:
            parameters.update(yield_first=True, after=after.run.id)
        run = await submit(
            self.resort,
            SEQUENCE_FLOW,
            parameters,
            step=f"ops{first}-{steps[-1].index}" + (f".{tries + 1}" if tries else ""),
            held=held,
            info=info,
            run_timeout=self.resort.move_timeout * len(steps) + PICKUP_MARGIN,
        )
        return _Queued(list(steps), run, info)

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
                Cancelled(message="withdrawn: the moves before it on this resort did not all run"),
                force=True,
            )
        return True

    async def _complete(self, queued: _Queued) -> tuple[bool, list[LaneStep]]:
        """Wait for `queued`'s run and report its steps.

        Returns:
            whether a step failed (or the run did), and the steps it did not run (yielded to a
            waiter, or after a failed step) to run again later, in order.
        """
        run_id = queued.info.get("flow_run_id")
        failure: tuple[str, str] | None = None
        try:
            await finish(self.inventory, queued.run)
        except DispatchError as exc:
            failure = (exc.state or "Failed", str(exc))
            run_id = exc.flow_run_id or run_id
        except FleetError as exc:
            failure = ("Failed", str(exc))
        except Exception as exc:
            failure = ("Failed", f"{type(exc).__name__}: {exc}")
        try:
            window = RESULT_READ_WINDOW if failure is None else 0.0
            rows = await retry_transient(lambda: aread_sequence_result(queued.run.id), window)
        except Exception as exc:
            if failure is None:
                failure = ("Failed", f"the run's step results are unreadable: {exc}")
            for step in queued.steps:  # whether each step moved is unknown: none is repeated
                self.report.ended(step.index, failure[0], error=failure[1], flow_run_id=run_id)
            return True, []
        by_index = {int(row["index"]): row for row in rows}
        failed, again = failure is not None, []
        for position, step in enumerate(queued.steps):
            row = by_index.get(position)
            if row is None:
                again.append(step)
            elif row.get("state") == "Completed":
                result = _step_result(self.resort.name, run_id, step.op, row)
                self.report.ended(
                    step.index,
                    "Completed",
                    flow_run_id=run_id,
                    result=result,
                    duration=_took(row),
                )
            else:
                state, error = failure or ("Failed", "")
                self.report.ended(
                    step.index,
                    state,
                    error=row.get("error") or error,
                    flow_run_id=run_id,
                    duration=_took(row),
                )
                failed = True
        return failed, again

    async def _pipeline_next(self, todo: list[LaneStep], current: _Queued) -> _Queued | None:
        """Queue the next steps behind the run under way, unless the lane should not keep the lock.

        A failure here is not the steps': they are then run later, as the next run.
        """
        if self.fail_fast or self.stop.is_set() or await someone_waiting(self.resort.name):
            return None
        steps = todo[:MAX_SEQUENCE_MOVES]
        try:
            queued = await self._submit(steps, after=current)
        except Exception:
            return None
        del todo[: len(steps)]
        return queued

    async def _start(self, todo: list[LaneStep]) -> _Queued | None:
        """Take the next steps off `todo` and create their run.

        When that fails (the lock was not free in time, a server error), the first step is
        reported Failed and the others go back to `todo`: each is tried on its own turn, as it
        would be without the others (or skipped, with `fail_fast`). None then.
        """
        steps = todo[:MAX_SEQUENCE_MOVES]
        del todo[: len(steps)]
        self.report.started(steps[0].index)
        try:
            queued = await self._submit(steps)
        except FleetError as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            for step in steps[1:]:
                self.report.started(step.index)
            return queued
        self.report.ended(steps[0].index, "Failed", error=error)
        todo[:0] = steps[1:]
        return None

    # ------------------------------------------------------------------ the lane
    async def run(self, steps: Sequence[LaneStep]) -> None:
        todo = list(steps)
        queued: _Queued | None = None  # the next run, created behind the one under way
        try:
            while todo or queued is not None:
                if queued is not None:
                    current, queued = queued, None
                    for step in current.steps:
                        self.report.started(step.index)
                else:
                    if self.stop.is_set():
                        for step in todo:
                            self.report.skipped(step.index, "skipped after an earlier failure")
                        todo.clear()
                        continue
                    started = await self._start(todo)
                    if started is None:
                        continue
                    current = started
                if todo:
                    queued = await self._pipeline_next(todo, current)
                failed, again = await self._complete(current)
                if failed and self.fail_fast:
                    self.stop.set()
                if (again or failed) and queued is not None:
                    # the queued run must not overtake the moves not run: withdrawn, or (claimed
                    # already) it yields every move, since its predecessor did not run them all
                    if await self._withdraw(queued):
                        again += queued.steps
                    else:
                        again += (await self._complete(queued))[1]
                    queued = None
                todo[:0] = again
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
