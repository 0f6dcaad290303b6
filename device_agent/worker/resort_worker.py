"""`ResortWorker`: the `plate-resort` Prefect worker, running device subflows in-process, in turn.

Prefect's process worker starts a Python process per flow run (seconds of start-up, a new serial
connection each time). `ResortWorker` keeps the device open in the agent process and executes
each flow run with Prefect's engine on a single long-lived `DeviceThread`:

* Runs are picked up by events and claims (`QueuePickup`), with a slow fallback poll.
* Nothing but the claim and the engine's own calls writes to the server between submission and
  the flow body: the run's worker markers (`infrastructure_pid`, worker labels) are written once
  the run's `Running` event arrives, and deployments and flows are read through the worker's
  `ApiCache`. On SQLite every write is serialised, so each write kept out of that window is
  latency removed.
* Cancellation of a *running* run (Prefect's base worker only handles runs that never started):
  a `prefect.flow-run.Cancelling` event for the run being executed halts the motor; the run then
  ends `Cancelled` instead of staying `Cancelling`.
* Liveness is reported by worker heartbeats and the agent's status variable (flow-run heartbeats
  are off), and runs orphaned by a previous incarnation are marked final at start-up
  (`recover_orphans`).

Registered with Prefect through the `prefect.collections` entry point (`type = "plate-resort"`);
start it with `device-agent run`, which opens the device first (see `device_agent.agent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.settings import get_current_settings

from device_agent.pacing import jittered
from device_agent.prefect_adapter import WorkerAdapter, run_flow_here, warm_engine_thread
from device_agent.worker.catalog import FlowCatalog
from device_agent.worker.device_thread import DeviceThread
from device_agent.worker.job import (
    ApiCache,
    ResortJobConfiguration,
    ResortVariables,
    ResortWorkerResult,
)
from device_agent.worker.orphans import recover_orphans, run_identifier_prefix
from device_agent.worker.pickup import QueuePickup
from device_agent.worker.run_states import (
    CANCELLED_BY_HALT,
    StateKind,
    finalize_after_engine,
    force_state,
)
from resort_common.names import WORKER_TYPE

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.flows import Flow

    from device_agent.session import DeviceSession

__all__ = ["ResortWorker"]

logger = logging.getLogger(__name__)

# Worker markers go out on the run's Running event, or after this long without one.
MARKER_WAIT = 2.0


class ResortWorker(WorkerAdapter[ResortJobConfiguration, ResortVariables, ResortWorkerResult]):
    """Prefect worker for one plate resort: its queue only, in-process runs, one at a time.

    Args:
        work_pool_name: the fleet's device pool (type ``plate-resort``).
        work_queues: the resort's queue (one).
        name: worker name (shows in the UI and in `fleet status`).
        session: the open device; runs fail with a clear error without one.
        poll_interval: fallback poll interval in seconds (events wake the worker sooner).
        entrypoints: flow entrypoints to import at start-up besides those of the queue's
            deployments.
        **kwargs: passed to `BaseWorker` (prefetch_seconds, heartbeat_interval_seconds, ...).
    """

    type = WORKER_TYPE
    job_configuration = ResortJobConfiguration
    job_configuration_variables = ResortVariables

    @classmethod
    def get_description(cls) -> str:
        """What the worker type does (shown by Prefect's worker type listings)."""
        return (
            "Runs plate-resort device subflows inside the device agent, one at a time, with the "
            "serial connection held open across runs."
        )

    @classmethod
    def get_documentation_url(cls) -> str:
        """Where the worker type is documented."""
        return "https://github.com/plate-resort-fleet/device_agent/README.md"

    def __init__(
        self,
        work_pool_name: str,
        work_queues: list[str] | None = None,
        name: str | None = None,
        *,
        session: DeviceSession | None = None,
        poll_interval: float = 15.0,
        entrypoints: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("prefetch_seconds", poll_interval + 1.0)
        kwargs["limit"] = 1
        super().__init__(work_pool_name, work_queues, name, **kwargs)
        self.pool_name = work_pool_name
        self.queue_names = frozenset(work_queues or ())
        prefetch = kwargs["prefetch_seconds"]
        self.prefetch_seconds: float = (
            prefetch if prefetch is not None else get_current_settings().worker.prefetch_seconds
        )
        self.session = session
        self.poll_interval = poll_interval
        self.api_cache = ApiCache()
        # BaseWorker resolves each run's configuration through `self.job_configuration`: this
        # worker's class reads deployments and flows through its own cache
        self.job_configuration = ResortJobConfiguration.using(self.api_cache)
        self.flows = FlowCatalog(entrypoints)
        self.pickup = QueuePickup(self)
        self._device_thread = DeviceThread(name=f"device-{name or 'resort'}")
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel_requested: set[UUID] = set()
        self._cancel_reason: dict[UUID, str] = {}
        self._executing: UUID | None = None
        self._execution_done: asyncio.Event | None = None
        self._running_seen: dict[UUID, asyncio.Event] = {}
        self._claim_on_release: set[UUID] = set()
        self.runs_executed = 0

    # ------------------------------------------------------------------ state
    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: no new runs are taken."""
        return self._stopping

    @property
    def busy(self) -> bool:
        """True while a run holds the worker's single slot."""
        try:
            return self.limiter.borrowed_tokens > 0
        except RuntimeError:  # outside the worker context
            return False

    @property
    def events_connected(self) -> bool:
        """True while the pickup's events subscription is connected."""
        return self.pickup.events_connected

    @property
    def claims_from_events(self) -> int:
        """Runs started by a claim on an event (without a queue poll)."""
        return self.pickup.claims_from_events

    async def load_flows(self) -> dict[str, Flow[Any, Any]]:
        """Import the flows of the queue's deployments (and `entrypoints`) once."""
        return await self.flows.load(self.client, self.pool_name, self.queue_names)

    async def warm_up(self) -> None:
        """Before the first claim, pay what an agent's first run would pay on its way to the
        motor: the device thread with its API client and the engine's imports, and the reads of
        the queues' deployments and flows. A failure only leaves it to the first run."""
        self._device_thread.start()
        self._device_thread.submit(warm_engine_thread)
        try:
            for deployment in self.flows.deployments:
                self.api_cache.remember_deployment(deployment)
                await self.api_cache.flow(self.client, deployment.flow_id)
        except Exception as exc:
            logger.info("could not read the flows of %s ahead: %s", self.name, exc)

    async def recover_orphans(self) -> list[UUID]:
        """Mark runs a previous incarnation of this agent left non-final (see `orphans`)."""
        return await recover_orphans(
            self.client,
            self.name,
            self.pickup.queue_filters(),
            self._force_state,
            executing=self._executing,
        )

    # ------------------------------------------------------------------ submission hooks
    async def read_deployment_for_submission(self, deployment_id: UUID) -> Any:
        """The run's deployment, through the worker's cache."""
        return await self.api_cache.deployment(self.client, deployment_id)

    def submission_starting(self, flow_run_id: UUID) -> None:
        """Watch for the run's Running event (its markers are written then)."""
        self._running_seen[flow_run_id] = asyncio.Event()

    def submission_failed(self, flow_run_id: UUID) -> None:
        """The run did not start: stop watching for its Running event."""
        self._running_seen.pop(flow_run_id, None)

    def running_seen(self, flow_run_id: UUID) -> None:
        """The run's Running event arrived."""
        seen = self._running_seen.get(flow_run_id)
        if seen is not None:
            seen.set()

    async def run_started(self, flow_run_id: UUID, identifier: str) -> None:
        """Write the run's worker markers (used by `recover_orphans`) once it is Running."""
        seen = self._running_seen.get(flow_run_id)
        if seen is not None:
            with anyio.move_on_after(MARKER_WAIT):
                await seen.wait()
        self._running_seen.pop(flow_run_id, None)
        try:
            await self.client.update_flow_run(
                flow_run_id=flow_run_id, infrastructure_pid=identifier
            )
            await self.give_worker_labels(flow_run_id)
        except Exception as exc:
            logger.warning("could not mark flow run %s as this agent's: %s", flow_run_id, exc)

    def slot_released(self, flow_run_id: UUID) -> None:
        """After an executed run, claim the next due run (a read, not a poll).

        Runs whose Scheduled event arrived while this one ran were skipped (busy); this claim
        starts the earliest of them as soon as the slot is free.
        """
        if flow_run_id not in self._claim_on_release:
            return  # a run that never started (e.g. Pending refused): no claim loop
        self._claim_on_release.discard(flow_run_id)
        if self._stopping:
            return
        self.pickup.claim_soon(None)

    # ------------------------------------------------------------------ running
    async def run(
        self,
        flow_run: FlowRun,
        configuration: ResortJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> ResortWorkerResult:
        """Execute `flow_run` in this process on the device thread; return when it is final."""
        identifier = f"{run_identifier_prefix(self.name)}{os.getpid()}"
        if self.session is None:
            raise RuntimeError(
                "this plate-resort worker has no open device; start it with `device-agent run`"
            )
        flow = self.flows.for_configuration(configuration)
        if task_status is not None:
            task_status.started(identifier)
        self._claim_on_release.add(flow_run.id)  # when its slot frees, claim the next run
        if flow_run.id in self._cancel_requested:
            await self._force_state(flow_run.id, "cancelled", "Cancelled before it started.")
            return ResortWorkerResult(status_code=0, identifier=identifier)
        if self._stopping:
            await self._force_state(
                flow_run.id, "scheduled", f"Agent {self.name} is stopping; run rescheduled."
            )
            return ResortWorkerResult(status_code=0, identifier=identifier)
        self._executing = flow_run.id
        self._execution_done = asyncio.Event()
        future = self._device_thread.submit(lambda: self._execute(flow, flow_run))
        try:
            with anyio.CancelScope(shield=True):
                await asyncio.wrap_future(future)
        finally:
            self._executing = None
            self._execution_done.set()
            self._cancel_requested.discard(flow_run.id)
        return ResortWorkerResult(status_code=0, identifier=identifier)

    def _execute(self, flow: Flow[Any, Any], flow_run: FlowRun) -> Any:
        """Device thread: run the flow, then make sure the run's state is final."""
        session = self.session
        assert session is not None
        session.cancel_requested.clear()
        session.note(current_run=str(flow_run.id))  # published with the run's first change
        state: Any = None
        try:
            state = run_flow_here(flow, flow_run)
        except BaseException as exc:  # the engine reports states itself; log what escaped
            logger.exception("flow run %s raised out of the engine: %s", flow_run.id, exc)
        finally:
            cancelled = session.cancel_requested.is_set()
            session.cancel_requested.clear()
            if state is not None and getattr(state, "is_failed", lambda: False)():
                session.last_error = state.message
            self.runs_executed += 1  # before the publish: the idle document counts this run
            session.update(current_run=None)
        finalize_after_engine(
            flow_run.id, cancelled, self._cancel_reason.get(flow_run.id), reported=state
        )
        return state

    async def _force_state(self, flow_run_id: UUID, kind: StateKind, message: str) -> None:
        await force_state(self.client, flow_run_id, kind, message)

    def request_cancel(self, flow_run_id: UUID, reason: str = CANCELLED_BY_HALT) -> bool:
        """Cancel `flow_run_id`: halt the motor if it is executing; returns True if it was."""
        self._cancel_requested.add(flow_run_id)
        self._cancel_reason[flow_run_id] = reason
        if self._executing != flow_run_id or self.session is None:
            return False
        self.session.cancel_requested.set()
        threading.Thread(target=self._halt, name="halt", daemon=True).start()
        return True

    def _halt(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            session.driver.halt()
        except Exception as exc:
            logger.warning("halt on %s failed: %s", session.name, exc)

    # ------------------------------------------------------------------ loops
    def wake(self, burst: bool = False) -> None:
        """Poll for scheduled runs now (thread-safe); `burst` re-polls briefly if none found."""
        self.pickup.wake(burst)

    async def _sync_loop(self) -> None:
        while not self._stopping:
            with anyio.move_on_after(jittered(self.heartbeat_interval_seconds)):
                assert self._stop_event is not None
                await self._stop_event.wait()
            if self._stopping:
                return
            try:
                await self.sync_and_initialize()
            except Exception as exc:
                logger.warning("worker heartbeat failed: %s", exc)

    async def start(
        self,
        run_once: bool = False,
        with_healthcheck: bool = False,
        printer: Callable[..., None] = print,
    ) -> None:
        """Serve the queue until `stop()`; `run_once` polls once (no events, no loops).

        `with_healthcheck` and `printer` are accepted for `BaseWorker.start`'s signature and
        not used (the agent reports its health in its status variable).
        """
        async with self:
            await self.serve(run_once=run_once)

    async def serve(self, run_once: bool = False) -> None:
        """Inside the worker context: load flows, recover orphans and serve until `stop()`."""
        self._loop = asyncio.get_running_loop()
        self.pickup.bind()
        self._stop_event = asyncio.Event()
        self._stopping = False
        await self.load_flows()
        await self.warm_up()
        try:
            await self.recover_orphans()
        except Exception as exc:
            logger.warning("could not check for orphaned runs: %s", exc)
        if run_once:
            await self.get_and_submit_flow_runs()
            return
        await self.emit_worker_started()
        async with anyio.create_task_group() as loops:
            loops.start_soon(self.pickup.poll_loop)
            loops.start_soon(self._sync_loop)
            loops.start_soon(self.pickup.event_loop)
            await self._stop_event.wait()
            loops.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop taking runs (thread-safe); the run being executed is not touched."""
        self._stopping = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def drain(self, grace: float, reason: str) -> str | None:
        """After `stop()`: let the executing run finish within `grace` s, else halt it.

        Returns:
            None if nothing was executing or it finished, else a description of what was done.
        """
        run_id, done = self._executing, self._execution_done
        if run_id is None or done is None:
            return None
        with anyio.move_on_after(grace):
            await done.wait()
        if self._executing is None:
            return None
        logger.warning("run %s still executing after %.0f s: halting the motor", run_id, grace)
        self.request_cancel(run_id, reason)
        with anyio.move_on_after(15.0):
            await done.wait()
        if self._executing is not None:
            await self._force_state(run_id, "crashed", f"{reason} (the run did not stop in time)")
            return f"run {run_id} marked Crashed"
        return f"run {run_id} halted"
