"""`fleet controller`: parent-flow runs created through Prefect, executed in this process.

Schedulers that go through Prefect (the UI, schedules, automations, `prefect deployment run`,
`run_deployment`) create parent runs on the fleet's control pool. Prefect's process worker would
poll for them every 10 s and start a Python process per run (seconds of imports before the flow
body). The controller instead runs them the way `FleetClient` runs its own, in-process:

* **Pickup.** It subscribes to the `Scheduled` events of the control pool's queues and claims
  the due runs at once (a read, then `Pending`; Prefect refuses a second claim, so several
  controllers never run one run twice). A fallback poll (`poll_interval`, a read) covers lost
  events and runs scheduled for later.
* **Execution.** Each claimed run is executed with Prefect's engine as a task on this event
  loop, up to `limit` at once (parent flows are async and spend their time waiting on the
  server and the agents). The flow is the one the run's flow name names in
  `resort_common.names.PARENT_FLOWS`; the inventory is the controller's (`$FLEET_INVENTORY`).
* **Cancel.** A `Cancelling` run being executed has its task cancelled and ends `Cancelled`.
* **Stop.** On SIGTERM or SIGINT it stops claiming, lets the runs under way finish within
  `grace` seconds, then cancels what is left (each parent's own clean-up releases its lock once
  its device run is settled, as for any cancelled parent), and exits.
* **Liveness.** Worker heartbeats keep the pool `Ready` in the UI. A controller killed outright
  leaves its runs Running: the parent watchdog marks them Crashed (`fleet.core.watchdog`), and
  their locks free with their leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import functools
import importlib
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fleet.core import prefect_adapter
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["Controller"]

logger = logging.getLogger(__name__)

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
CANCELLING_EVENT = "prefect.flow-run.Cancelling"
CANCELLED_MESSAGE = "Cancelled: the fleet controller stopped the parent run (its clean-up ran)."
#: seconds between two worker heartbeats (the pool shows offline after several missed)
HEARTBEAT_INTERVAL = 30.0


def _parent_flow(flow_name: str) -> Any:
    """The parent flow object registered under `flow_name` (`names.PARENT_FLOWS`)."""
    entrypoint = names.PARENT_FLOWS.get(flow_name)
    if entrypoint is None:
        raise LookupError(f"flow {flow_name!r} is not a fleet parent flow")
    module, attribute = entrypoint.split(":")
    return getattr(importlib.import_module(module), attribute)


class Controller:
    """Serves the control pool of one fleet from this process (module docstring).

    Args:
        inventory: the fleet inventory (its control pool; parent runs read it from
            `$FLEET_INVENTORY`, which `serve` sets).
        name: the worker name shown in the UI.
        limit: at most this many parent runs at once.
        poll_interval: seconds between fallback polls.
        grace: seconds to let runs under way finish after a stop signal.
    """

    def __init__(
        self,
        inventory: Inventory,
        *,
        name: str,
        limit: int = 16,
        poll_interval: float = 5.0,
        grace: float = 120.0,
    ) -> None:
        self.inventory = inventory
        self.name = name
        self.pool = names.control_pool_name(inventory)
        self.limit = limit
        self.poll_interval = poll_interval
        self.grace = grace
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._cancelled: set[UUID] = set()
        self._cancels: set[asyncio.Future[None]] = set()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._claiming = asyncio.Lock()
        self._flows: dict[UUID, str] = {}

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Stop claiming; `serve` then drains and returns (call on the serving loop)."""
        self._stop.set()

    async def serve(self, client: Any) -> None:
        """Serve until `stop()`, then drain (see the module docstring).

        Args:
            client: an open `PrefectClient`.
        """
        os.environ["FLEET_INVENTORY"] = str(self.inventory.path)
        pool = await client.read_work_pool(self.pool)
        queues = await client.read_work_queues(work_pool_name=self.pool)
        resources = [f"prefect.work-queue.{q.id}" for q in queues] + [
            f"prefect.work-pool.{pool.id}"
        ]
        loops = [
            asyncio.ensure_future(self._events(resources)),
            asyncio.ensure_future(self._poll(client)),
            asyncio.ensure_future(self._heartbeat(client)),
        ]
        try:
            await self._stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._drain(client)

    async def _drain(self, client: Any) -> None:
        running = list(self._running.values())
        if not running:
            return
        logger.info("stopping: %d run(s) under way, waiting %.0f s", len(running), self.grace)
        _, pending = await asyncio.wait(running, timeout=self.grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=30.0)

    # ------------------------------------------------------------------ loops
    async def _events(self, resources: list[str]) -> None:
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        event_filter = EventFilter(
            event=EventNameFilter(name=[SCHEDULED_EVENT, CANCELLING_EVENT]),
            any_resource=EventAnyResourceFilter(id=resources),
        )
        backoff = 0.5
        while True:
            try:
                since = datetime.datetime.now(datetime.UTC)
                async with prefect_adapter.events_subscriber(
                    event_filter, reconnection_attempts=3
                ) as subscriber:
                    backoff = 0.5
                    self._wake.set()  # what was scheduled while not subscribed
                    async for event in subscriber:
                        if event.occurred < since:
                            continue  # the subscriber replays the last minute on connect
                        self._on_event(event.event, event.resource.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.info("event subscription of %s dropped: %s", self.pool, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 15.0)

    def _on_event(self, name: str, resource_id: str) -> None:
        if name == SCHEDULED_EVENT:
            self._wake.set()
            return
        with contextlib.suppress(ValueError):
            run_id = UUID(resource_id.removeprefix("prefect.flow-run."))
            task = self._running.get(run_id)
            if name == CANCELLING_EVENT and task is not None and run_id not in self._cancelled:
                logger.info("parent run %s cancelled", run_id)
                self._cancelled.add(run_id)
                cancel = asyncio.ensure_future(self._cancel(run_id, task))
                self._cancels.add(cancel)
                cancel.add_done_callback(self._cancels.discard)

    async def _cancel(self, run_id: UUID, task: asyncio.Task[None]) -> None:
        """End the run `Cancelled`, then cancel its task (the engine's own report of a cancelled
        task, `Crashed`, is then refused: the run is final)."""
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        try:
            async with get_client() as client:
                await client.set_flow_run_state(
                    run_id, Cancelled(message=CANCELLED_MESSAGE), force=True
                )
        except Exception as exc:
            logger.warning("could not mark parent run %s Cancelled: %s", run_id, exc)
        task.cancel()

    async def _poll(self, client: Any) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self._claim_due(client)
            except Exception as exc:
                logger.warning("reading the due runs of %s failed: %s", self.pool, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _heartbeat(self, client: Any) -> None:
        while True:
            try:
                await client.send_worker_heartbeat(
                    work_pool_name=self.pool,
                    worker_name=self.name,
                    heartbeat_interval_seconds=HEARTBEAT_INTERVAL,
                )
            except Exception as exc:
                logger.warning("worker heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    # ------------------------------------------------------------------ claims
    async def _claim_due(self, client: Any) -> None:
        """Claim the pool's due Scheduled runs (earliest first) while slots are free."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
            WorkPoolFilter,
            WorkPoolFilterName,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        async with self._claiming:
            free = self.limit - len(self._running)
            if free <= 0 or self._stop.is_set():
                return
            horizon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    ),
                    next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=horizon),
                ),
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool])),
                sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
                limit=free,
            )
            for run in runs:
                if run.id not in self._running and await self._claim(client, run):
                    logger.info("running %s (%s)", run.name, run.id)
                    task = asyncio.ensure_future(self._execute(run))
                    self._running[run.id] = task
                    task.add_done_callback(functools.partial(self._done, run.id))

    async def _claim(self, client: Any, run: Any) -> bool:
        """Propose `Pending` (the claim); True when this controller got the run."""
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.states import Pending

        try:
            answer = await client.set_flow_run_state(run.id, Pending())
        except Exception as exc:
            logger.warning("could not claim parent run %s: %s", run.id, exc)
            return False
        return bool(answer.status == SetStateStatus.ACCEPT)

    def _done(self, run_id: UUID, _task: object = None) -> None:
        logger.info("run %s ended", run_id)
        self._running.pop(run_id, None)
        self._wake.set()  # a slot is free: claim what waited for it

    async def _execute(self, run: Any) -> None:
        """Run one claimed parent run with Prefect's engine; leave it final."""
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled, Crashed, Failed

        from flows.prefect_adapter import run_claimed_flow_run

        async with get_client() as client:
            try:
                flow = _parent_flow(await self._flow_name(client, run.flow_id))
            except Exception as exc:
                await client.set_flow_run_state(
                    run.id, Failed(message=f"the fleet controller cannot run it: {exc}"), force=True
                )
                return
            try:
                await run_claimed_flow_run(flow, run)
            except asyncio.CancelledError:
                pass  # cancelled (Cancelling event or stop): its state is set below
            except Exception as exc:
                logger.exception("parent run %s raised out of the engine: %s", run.id, exc)
            current = (await client.read_flow_run(run.id)).state
            if current is None or current.is_cancelled():
                return
            state: Any = None
            if run.id in self._cancelled or current.is_cancelling():
                # the engine reports a cancelled task as Crashed: it was a cancel
                state = Cancelled(message=CANCELLED_MESSAGE)
            elif not current.is_final():
                state = Crashed(message="the fleet controller stopped before the run ended")
            if state is not None:
                await client.set_flow_run_state(run.id, state, force=True)

    async def _flow_name(self, client: Any, flow_id: UUID) -> str:
        if flow_id not in self._flows:
            self._flows[flow_id] = (await client.read_flow(flow_id)).name
        return self._flows[flow_id]


def serve_forever(inventory: Inventory, *, name: str, limit: int, poll_interval: float) -> int:
    """Run a `Controller` until SIGTERM or SIGINT; return the exit code (0 after a drain).

    The controller's event loop runs on a thread of its own: Prefect's engine replaces the main
    thread's SIGTERM handler while a flow runs there (to end that one run), and the controller
    must see the signal itself to drain all of them. The thread runs in a copy of this context
    (the fleet's API settings).
    """
    from prefect.client.orchestration import get_client

    started: dict[str, Any] = {}
    failure: list[BaseException] = []

    async def main() -> None:
        controller = Controller(inventory, name=name, limit=limit, poll_interval=poll_interval)
        started.update(loop=asyncio.get_running_loop(), controller=controller)
        async with get_client() as client:
            await controller.serve(client)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)

    def on_signal(signum: int, frame: Any) -> None:
        loop, controller = started.get("loop"), started.get("controller")
        if loop is not None and controller is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(controller.stop)

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name="fleet-controller")
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]
    return 0
