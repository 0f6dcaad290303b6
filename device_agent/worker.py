"""The `plate-resort` Prefect worker: runs device subflows in-process, one at a time, on one thread.

Prefect's process worker starts a Python process per flow run (seconds of start-up, a new serial
connection each time). `ResortWorker` keeps the device open in the agent process and executes
each flow run with `prefect.flow_engine.run_flow` on a single long-lived *device thread*:

* Flows are imported once, by the entrypoint string stored on the deployment
  (``"flows.device:activate_hotel"``), never with `load_flow_from_flow_run` (that would run pull
  steps inside this long-lived process).
* Fast pickup: the worker subscribes to `prefect.flow-run.Scheduled` events related to its work
  queue and at once claims the queue's earliest due run (one read, then `Pending`), without a
  queue poll (which writes); a run not yet readable (events can go out before the commit) is
  retried briefly, then left to a burst of polls. A claim skips a paused queue (`fleet drain`);
  the queue's ready event on resume, and the end of each run, claim the same way (a busy worker
  ignores events). A slow fallback poll (`poll_interval`) covers lost events.
* Nothing but the claim and the engine's own calls writes to the server between submission and
  the flow body: the run's worker markers (`infrastructure_pid`, worker labels) are written once
  the run's `Running` event arrives, and deployments are read from a short-lived cache. On SQLite
  every write is serialised, so each write removed from that window is latency removed.
* Cancellation of a *running* run (Prefect's base worker only handles runs that never started):
  a `prefect.flow-run.Cancelling` event for the run being executed halts the motor; the run then
  ends `Cancelled` instead of staying `Cancelling`.
* Cuts on the device thread: one sync API client for the thread's lifetime, `persist_result`
  off, flow-run heartbeats off (they keep the thread ~1 s after each body), and no per-run
  suspension observer: for every
  deployment run Prefect's engine starts a thread with its own event loop, client and events
  websocket, and blocks the start until it is subscribed (~60 ms on this path) and the end
  until it stops (up to 0.2 s). Device runs cannot be suspended (cancel them instead; the motor
  halts). Liveness is reported by worker heartbeats and the agent's status variable instead,
  and the agent marks runs it finds orphaned by a previous incarnation as Crashed at start-up.

Registered with Prefect through the `prefect.collections` entry point (`type = "plate-resort"`);
start it with `device-agent run`, which opens the device first (see `device_agent.agent`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import datetime
import importlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.workers.base import (
    BaseJobConfiguration,
    BaseVariables,
    BaseWorker,
    BaseWorkerResult,
)
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    from prefect.client.schemas.objects import Flow as APIFlow
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.flows import Flow

    from device_agent.session import DeviceSession
from resort_common.names import WORKER_TYPE

__all__ = [
    "DeviceThread",
    "ResortJobConfiguration",
    "ResortVariables",
    "ResortWorker",
    "ResortWorkerResult",
    "load_flow",
]

logger = logging.getLogger(__name__)

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
RUNNING_EVENT = "prefect.flow-run.Running"
CANCELLING_EVENT = "prefect.flow-run.Cancelling"
# A queue unpaused (`fleet resume`) goes ready or not-ready; its queued runs are claimed then.
QUEUE_OPEN_EVENTS = ("prefect.work-queue.ready", "prefect.work-queue.not-ready")
# A Scheduled event can arrive before its run is readable: re-read it this often, this long.
_CLAIM_STEP = 0.02
_CLAIM_SECONDS = 0.5
# Worker markers go out on the run's Running event, or after this long without one.
_MARKER_WAIT = 2.0
# After a Scheduled event the run may not be committed yet: re-poll for this long.
_BURST_SECONDS = 1.0
_BURST_STEP = 0.05


# Deployments and flows are read for every run; cache them briefly (a deployment re-provisioned
# with a new entrypoint is seen within this many seconds; a flow id never changes its name).
_DEPLOYMENT_TTL = 30.0


class _ApiCache:
    """Per-process cache of the deployment and flow reads that every run's set-up repeats."""

    def __init__(self) -> None:
        self._deployments: dict[UUID, tuple[float, Any]] = {}
        self._flows: dict[UUID, Any] = {}

    async def deployment(self, client: Any, deployment_id: UUID) -> Any:
        hit = self._deployments.get(deployment_id)
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        deployment = await client.read_deployment(deployment_id)
        self._deployments[deployment_id] = (time.monotonic() + _DEPLOYMENT_TTL, deployment)
        return deployment

    async def flow(self, client: Any, flow_id: UUID) -> Any:
        if flow_id not in self._flows:
            self._flows[flow_id] = await client.read_flow(flow_id)
        return self._flows[flow_id]


_API_CACHE = _ApiCache()


class ResortJobConfiguration(BaseJobConfiguration):
    """Job configuration of a device subflow run (in-process: no infrastructure to template).

    Besides the base fields it records the deployment's entrypoint, which selects the flow.
    """

    @classmethod
    async def resolve_for_flow_run(
        cls,
        flow_run: FlowRun,
        *,
        client: Any,
        work_pool: WorkPool,
        worker_name: str,
        worker_id: UUID | None = None,
        deployment: DeploymentResponse | None = None,
    ) -> ResortJobConfiguration:
        """Prefect's resolution (job variables over the pool's template), with the deployment
        and flow reads cached: they sat on the dispatch path of every run (~2 API calls)."""
        if deployment is None and flow_run.deployment_id:
            deployment = await _API_CACHE.deployment(client, flow_run.deployment_id)
        flow = await _API_CACHE.flow(client, flow_run.flow_id)
        values = {**(getattr(deployment, "job_variables", None) or {})}
        values.update(flow_run.job_variables or {})
        configuration = await cls.from_template_and_values(
            base_job_template=work_pool.base_job_template, values=values, client=client
        )
        configuration.prepare_for_flow_run(
            flow_run=flow_run,
            deployment=deployment,
            flow=flow,
            work_pool=work_pool,
            worker_name=worker_name,
            worker_id=worker_id,
        )
        return configuration

    move_timeout: float | None = Field(
        default=None,
        description="Unused by the worker itself; device flows take their own timeouts.",
    )
    _entrypoint: str | None = PrivateAttr(default=None)
    _flow_name: str | None = PrivateAttr(default=None)

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        """No environment: the run executes in this process, not in new infrastructure.

        Prefect's base class renders every Prefect setting as an environment variable for the
        infrastructure it would start: ~50 ms of CPU per run, measured on this dispatch path.
        """
        return {}

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        """Prepare as Prefect does, and remember the entrypoint and flow name."""
        super().prepare_for_flow_run(
            flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id
        )
        self._entrypoint = getattr(deployment, "entrypoint", None)
        self._flow_name = getattr(flow, "name", None)

    @property
    def entrypoint(self) -> str | None:
        """The deployment's entrypoint (``"module:attr"``), if the run has a deployment."""
        return self._entrypoint

    @property
    def flow_name(self) -> str | None:
        """The flow's name as registered with the API."""
        return self._flow_name


class ResortVariables(BaseVariables):
    """Job variables a deployment may set for the `plate-resort` pool."""

    move_timeout: float | None = Field(
        default=None,
        description="Unused by the worker itself; device flows take their own timeouts.",
    )


class ResortWorkerResult(BaseWorkerResult):
    """Outcome of one in-process flow run (`status_code` 0: the engine reported the state)."""


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    """Import the flow named by `entrypoint` (``"pkg.module:attr"`` or ``"pkg/module.py:attr"``).

    Raises:
        ValueError: malformed entrypoint, module missing, or the object is not a flow.
    """
    from prefect.flows import Flow

    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entrypoint {entrypoint!r} is not of the form 'module:flow'")
    if module_name.endswith(".py"):
        module_name = module_name[:-3].lstrip("./").replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"entrypoint {entrypoint!r}: cannot import {module_name}: {exc}") from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Flow):
        raise ValueError(f"entrypoint {entrypoint!r} does not name a Prefect flow")
    return obj.with_options(persist_result=False)


_ON_DEVICE_THREAD = threading.local()


def _skip_suspension_observer_on_device_thread() -> bool:
    """Make Prefect's engine skip its per-run suspension observer on device threads only.

    Returns False (and changes nothing) if this Prefect has no such hook.
    """
    import prefect.flow_engine as engine

    original = getattr(engine, "observe_flow_run_suspension", None)
    if original is None:
        return False
    if getattr(original, "__plate_resort__", False):
        return True

    @contextlib.contextmanager
    def observe(*args: Any, **kwargs: Any) -> Any:
        if getattr(_ON_DEVICE_THREAD, "active", False):
            yield
            return
        with original(*args, **kwargs):
            yield

    observe.__plate_resort__ = True  # type: ignore[attr-defined]
    engine.observe_flow_run_suspension = observe  # type: ignore[assignment]
    return True


class DeviceThread:
    """One long-lived thread that executes flow runs, one at a time.

    It enters a sync API client context once (reused by every run) and turns flow-run heartbeats
    off for the runs it executes.
    """

    def __init__(self, name: str = "device") -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = False
        self._ready = threading.Event()
        self.busy = False

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Queue `fn` for the device thread; its result or exception lands in the future."""
        if not self._started:
            self._started = True
            context = contextvars.copy_context()  # the caller's Prefect settings (API URL)
            self._thread = threading.Thread(
                target=context.run, args=(self._main,), name=self._thread.name, daemon=True
            )
            self._thread.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn))
        return future

    def stop(self) -> None:
        """Let the thread exit after the current item (it is a daemon thread anyway)."""
        if self._started:
            self._queue.put((concurrent.futures.Future(), _STOP))

    def _main(self) -> None:
        from prefect.context import SyncClientContext
        from prefect.settings import get_current_settings, temporary_settings

        _ON_DEVICE_THREAD.active = True
        if not _skip_suspension_observer_on_device_thread():
            logger.warning("this Prefect has no suspension observer hook; runs start slower")
        with (
            temporary_settings(updates={"flows.heartbeat_frequency": None}),
            SyncClientContext.get_or_create(),
        ):
            if get_current_settings().flows.heartbeat_frequency is not None:
                logger.warning("flow-run heartbeats could not be turned off on the device thread")
            self._ready.set()
            while True:
                future, fn = self._queue.get()
                if fn is _STOP:
                    return
                if not future.set_running_or_notify_cancel():
                    continue
                self.busy = True
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
                finally:
                    self.busy = False


def _STOP() -> None:  # sentinel for DeviceThread
    return None


class ResortWorker(BaseWorker[ResortJobConfiguration, ResortVariables, ResortWorkerResult]):
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
    _description = (
        "Runs plate-resort device subflows inside the device agent, one at a time, with the "
        "serial connection held open across runs."
    )
    _documentation_url = "https://github.com/plate-resort-fleet/device_agent/README.md"

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
        self.session = session
        self.poll_interval = poll_interval
        self._extra_entrypoints = tuple(entrypoints)
        self._flows_by_entrypoint: dict[str, Flow[Any, Any]] = {}
        self._flow_errors: dict[str, str] = {}
        self._device_thread = DeviceThread(name=f"device-{name or 'resort'}")
        self._wake_event: asyncio.Event | None = None
        self._burst_until = 0.0
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._cancel_requested: set[UUID] = set()
        self._cancel_reason: dict[UUID, str] = {}
        self._executing: UUID | None = None
        self._execution_done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.events_connected = False
        self.runs_executed = 0
        self._run_end_hook: Callable[[UUID, Any], None] | None = None
        self._running_seen: dict[UUID, asyncio.Event] = {}
        self._claim_lock: asyncio.Lock | None = None
        self.claims_from_events = 0
        self._queue_ids: list[UUID] = []
        self._claim_on_release: set[UUID] = set()

    # ------------------------------------------------------------------ loading
    async def load_flows(self) -> dict[str, Flow[Any, Any]]:
        """Import the flows of the queue's deployments (and `entrypoints`) once."""
        from prefect.client.schemas.filters import (
            WorkPoolFilter,
            WorkPoolFilterName,
            WorkQueueFilter,
            WorkQueueFilterName,
        )
        from prefect.client.schemas.sorting import DeploymentSort

        entrypoints = list(self._extra_entrypoints)
        try:
            deployments = await self.client.read_deployments(
                limit=200,
                sort=DeploymentSort.NAME_ASC,
                work_pool_filter=WorkPoolFilter(
                    name=WorkPoolFilterName(any_=[self._work_pool_name])
                ),
                work_queue_filter=WorkQueueFilter(
                    name=WorkQueueFilterName(any_=sorted(self._work_queues))
                )
                if self._work_queues
                else None,
            )
            entrypoints += [d.entrypoint for d in deployments if d.entrypoint]
        except Exception as exc:  # server down at start-up: load lazily later
            logger.warning("could not list deployments of %s: %s", self._work_pool_name, exc)
        for entrypoint in dict.fromkeys(entrypoints):
            self._flow_for_entrypoint(entrypoint)
        return dict(self._flows_by_entrypoint)

    def _flow_for_entrypoint(self, entrypoint: str) -> Flow[Any, Any]:
        flow = self._flows_by_entrypoint.get(entrypoint)
        if flow is not None:
            return flow
        try:
            flow = load_flow(entrypoint)
        except ValueError as exc:
            self._flow_errors[entrypoint] = str(exc)
            logger.error("%s", exc)
            raise
        self._flows_by_entrypoint[entrypoint] = flow
        logger.info("loaded flow %r from %s", flow.name, entrypoint)
        return flow

    def _flow_for(self, configuration: ResortJobConfiguration) -> Flow[Any, Any]:
        if configuration.entrypoint:
            return self._flow_for_entrypoint(configuration.entrypoint)
        for flow in self._flows_by_entrypoint.values():
            if flow.name == configuration.flow_name:
                return flow
        loaded = ", ".join(sorted(f.name for f in self._flows_by_entrypoint.values()))
        raise ValueError(
            f"flow {configuration.flow_name!r} has no deployment entrypoint and is not one this "
            f"agent loaded ({loaded})"
        )

    # ------------------------------------------------------------------ running
    async def run(
        self,
        flow_run: FlowRun,
        configuration: ResortJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> ResortWorkerResult:
        """Execute `flow_run` in this process on the device thread; return when it is final."""
        identifier = f"{WORKER_TYPE}:{self.name}:{os.getpid()}"
        if self.session is None:
            raise RuntimeError(
                "this plate-resort worker has no open device; start it with `device-agent run`"
            )
        flow = self._flow_for(configuration)
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

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        """Free the slot; after an executed run, claim the next due run (a read, not a poll).

        Runs whose Scheduled event arrived while this one ran were skipped (busy); this claim
        starts the earliest of them as soon as the slot is free.
        """
        super()._release_limit_slot(flow_run_id)
        if flow_run_id not in self._claim_on_release:
            return  # a run that never started (e.g. Pending refused): no claim loop
        self._claim_on_release.discard(flow_run_id)
        if self._stopping:
            return
        if self._runs_task_group is None:
            self.wake()
        else:
            self._runs_task_group.start_soon(self._claim, None)

    def _execute(self, flow: Flow[Any, Any], flow_run: FlowRun) -> Any:
        """Device thread: run the flow, then make sure the run's state is final."""
        from prefect.flow_engine import run_flow

        session = self.session
        assert session is not None
        session.cancel_requested.clear()
        session.note(current_run=str(flow_run.id))  # published with the run's first change
        state: Any = None
        try:
            state = run_flow(flow, flow_run=flow_run, return_type="state")
        except BaseException as exc:  # the engine reports states itself; log what escaped
            logger.exception("flow run %s raised out of the engine: %s", flow_run.id, exc)
        finally:
            cancelled = session.cancel_requested.is_set()
            session.cancel_requested.clear()
            if state is not None and getattr(state, "is_failed", lambda: False)():
                session.last_error = state.message
            self.runs_executed += 1  # before the publish: the idle document counts this run
            session.update(current_run=None)
        self._finalize_sync(flow_run.id, cancelled, state)
        if self._run_end_hook is not None:
            self._run_end_hook(flow_run.id, state)
        return state

    def _finalize_sync(self, flow_run_id: UUID, cancelled: bool, state: Any) -> None:
        """Leave no run Cancelling or Running after the engine returned (device thread)."""
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled, Crashed

        client = get_client(sync_client=True)
        try:
            current = client.read_flow_run(flow_run_id).state
        except Exception:
            logger.warning("could not re-read flow run %s after it ended", flow_run_id)
            return
        if current is None:
            return
        if cancelled or current.is_cancelling():
            if not current.is_cancelled():
                reason = self._cancel_reason.get(flow_run_id, "Cancelled: the motor was halted.")
                client.set_flow_run_state(flow_run_id, Cancelled(message=reason), force=True)
        elif not current.is_final():
            client.set_flow_run_state(
                flow_run_id,
                Crashed(message=f"The engine returned in state {current.name}; marked Crashed."),
                force=True,
            )

    async def _force_state(self, flow_run_id: UUID, kind: str, message: str) -> None:
        from prefect.states import Cancelled, Crashed, Scheduled

        factory = {"cancelled": Cancelled, "crashed": Crashed, "scheduled": Scheduled}[kind]
        state = factory(message=message)
        try:
            await self.client.set_flow_run_state(flow_run_id, state, force=True)
        except Exception:
            logger.exception("could not mark flow run %s %s", flow_run_id, kind)

    def request_cancel(
        self, flow_run_id: UUID, reason: str = "Cancelled: the motor was halted."
    ) -> bool:
        """Cancel `flow_run_id`: halt the motor if it is executing; returns True if it was."""
        self._cancel_request(flow_run_id, reason)
        if self._executing != flow_run_id or self.session is None:
            return False
        self.session.cancel_requested.set()
        threading.Thread(target=self._halt, name="halt", daemon=True).start()
        return True

    def _cancel_request(self, flow_run_id: UUID, reason: str) -> None:
        self._cancel_requested.add(flow_run_id)
        self._cancel_reason[flow_run_id] = reason

    def _halt(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            session.driver.halt()
        except Exception as exc:
            logger.warning("halt on %s failed: %s", session.name, exc)

    # ------------------------------------------------------------------ latency cuts
    async def _propose_submitting_state(self, flow_run: FlowRun) -> None:
        """Skip `Submitting`: there is no infrastructure to submit to (Pending -> Running)."""
        return None

    async def _give_worker_labels_to_flow_run(self, flow_run_id: UUID) -> None:
        """No write before the start: `_mark_run` labels the run once it is Running."""
        return None

    async def _submit_run(self, flow_run: FlowRun) -> None:
        """`BaseWorker._submit_run` (3.8.8, unchanged in 3.9.1) with this module's latency cuts.

        Same steps and bookkeeping: a deleted deployment cancels the run, `Pending` claims it,
        `_submit_run_and_capture_errors` starts it, the limiter slot is released if it does not
        start. Differences: the deployment comes from `_API_CACHE`, and `infrastructure_pid` and
        the worker labels are written by `_mark_run` after the run is Running.
        """
        from prefect.exceptions import ObjectNotFound

        try:
            if flow_run.deployment_id:
                try:
                    await _API_CACHE.deployment(self.client, flow_run.deployment_id)
                except ObjectNotFound:
                    self._logger.error(
                        "Deployment %s no longer exists; flow run %s is cancelled",
                        flow_run.deployment_id,
                        flow_run.id,
                    )
                    self._release_limit_slot(flow_run.id)
                    await self._mark_flow_run_as_cancelled(
                        flow_run,
                        state_updates={
                            "message": f"Deployment {flow_run.deployment_id} no longer exists, "
                            "cancelled run."
                        },
                    )
                    return
            if not await self._propose_pending_state(flow_run):
                self._release_limit_slot(flow_run.id)
                return
            assert self._runs_task_group is not None
            self._running_seen[flow_run.id] = asyncio.Event()
            started = await self._runs_task_group.start(
                self._submit_run_and_capture_errors, flow_run
            )
            if started and not isinstance(started, Exception):
                self._runs_task_group.start_soon(self._mark_run, flow_run.id, str(started))
            else:
                self._running_seen.pop(flow_run.id, None)
                self._release_limit_slot(flow_run.id)
        finally:
            self._submitting_flow_run_ids.discard(flow_run.id)
            if self._cancelling_observer is not None:
                self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)

    async def _mark_run(self, flow_run_id: UUID, identifier: str) -> None:
        """Write the run's worker markers (used by `recover_orphans`) once it is Running."""
        seen = self._running_seen.get(flow_run_id)
        if seen is not None:
            with anyio.move_on_after(_MARKER_WAIT):
                await seen.wait()
        self._running_seen.pop(flow_run_id, None)
        try:
            await self.client.update_flow_run(
                flow_run_id=flow_run_id, infrastructure_pid=identifier
            )
            await BaseWorker._give_worker_labels_to_flow_run(self, flow_run_id)
        except Exception as exc:
            logger.warning("could not mark flow run %s as this agent's: %s", flow_run_id, exc)

    async def _claim(self, flow_run_id: UUID | None) -> None:
        """Claim the queue's earliest due run on a Scheduled event (no queue poll).

        The event only says that *something* was scheduled; the run claimed is the one the queue
        poll would return first (earliest scheduled start), so runs start in submission order
        even when their events arrive out of order or race the poll that follows a run's end.
        Claims are serialised; a busy worker ignores the event and claims again when its slot
        frees (`_release_limit_slot`, with `flow_run_id` None).
        """
        if self._claim_lock is None:
            self._claim_lock = asyncio.Lock()
        async with self._claim_lock:
            await self._claim_one(flow_run_id)

    async def _claim_one(self, event_run_id: UUID | None) -> None:
        from prefect.client.schemas.responses import WorkerFlowRunResponse
        from prefect.exceptions import ObjectNotFound

        if self._stopping or self.busy or self._work_pool is None:
            return
        deadline = time.monotonic() + _CLAIM_SECONDS
        while True:
            try:
                due, paused = await self._earliest_due_run_and_paused_queues()
                if due is not None and (due.work_queue_id in paused or self._pool_paused()):
                    return  # paused (`fleet drain`): it starts after `fleet resume`
                if due is not None:
                    flow_run = due
                    break
                if event_run_id is None:
                    return  # a slot freed and nothing is due
                # Nothing due: the event's run is not readable yet (events can go out before
                # the commit), was taken already, or is scheduled for later.
                event_run = await self.client.read_flow_run(event_run_id)
                if not self._claimable(event_run):
                    return
            except ObjectNotFound:
                pass
            except Exception as exc:
                logger.info("could not read the due runs of %s: %s; polling", self.name, exc)
                self.wake(burst=True)
                return
            if time.monotonic() > deadline:
                self.wake(burst=True)
                return
            await anyio.sleep(_CLAIM_STEP)
        if flow_run.id in self._submitting_flow_run_ids or flow_run.work_queue_id is None:
            return
        if self.busy or not self._claimable(flow_run):
            return
        submitted = await self._submit_scheduled_flow_runs(
            [
                WorkerFlowRunResponse(
                    work_pool_id=self._work_pool.id,
                    work_queue_id=flow_run.work_queue_id,
                    flow_run=flow_run,
                )
            ]
        )
        if submitted:
            self.claims_from_events += 1

    def _pool_paused(self) -> bool:
        return bool(self._work_pool is not None and self._work_pool.is_paused)

    async def _earliest_due_run_and_paused_queues(self) -> tuple[FlowRun | None, set[UUID]]:
        """The queue's earliest due run and which of the worker's queues are paused, read at once.

        The queue poll skips paused queues; a claim must too (`fleet drain` pauses the queue
        and promises that runs already scheduled wait for `fleet resume`).
        """
        queue_ids = list(self._queue_ids)
        results = await asyncio.gather(
            self._earliest_due_run(), *(self.client.read_work_queue(q) for q in queue_ids)
        )
        paused = {q.id for q in results[1:] if q.is_paused}
        return results[0], paused

    def _queue_filters(self) -> dict[str, Any]:
        """`read_flow_runs` filters for this worker's pool and queues."""
        from prefect.client.schemas.filters import (
            WorkPoolFilter,
            WorkPoolFilterName,
            WorkQueueFilter,
            WorkQueueFilterName,
        )

        queues = (
            WorkQueueFilter(name=WorkQueueFilterName(any_=sorted(self._work_queues)))
            if self._work_queues
            else None
        )
        return {
            "work_pool_filter": WorkPoolFilter(
                name=WorkPoolFilterName(any_=[self._work_pool_name])
            ),
            "work_queue_filter": queues,
        }

    def _prefetch_horizon(self) -> datetime.datetime:
        """Runs scheduled up to this time are due (the poll's prefetch)."""
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=self._prefetch_seconds
        )

    async def _earliest_due_run(self) -> FlowRun | None:
        """The queue's Scheduled run with the earliest start within the prefetch, if any."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        runs = await self.client.read_flow_runs(
            limit=1,
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                    before_=self._prefetch_horizon()
                ),
            ),
            **self._queue_filters(),
        )
        return runs[0] if runs else None

    def _claimable(self, flow_run: FlowRun) -> bool:
        """What the queue poll would return: Scheduled, this queue, due within the prefetch."""
        state = flow_run.state
        if state is None or not state.is_scheduled() or self._stopping:
            return False
        if self._work_queues and flow_run.work_queue_name not in self._work_queues:
            return False
        due = flow_run.next_scheduled_start_time or getattr(
            state.state_details, "scheduled_time", None
        )
        return due is None or due <= self._prefetch_horizon()

    # ------------------------------------------------------------------ orphans
    async def recover_orphans(self) -> list[UUID]:
        """Mark runs a previous incarnation of this agent left non-final as Crashed.

        A kill -9 (or power loss) leaves the run Running, which blocks the queue's limit. The
        agent is the only worker of its queue, so at start-up any of its queue's runs in
        Pending/Running/Cancelling that carries this worker's name, or no worker marker at all
        (killed before `_mark_run`), is from an earlier process.
        """
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        runs = await self.client.read_flow_runs(
            limit=200,
            sort=FlowRunSort.ID_DESC,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
                    )
                )
            ),
            **self._queue_filters(),
        )
        mine = f"{WORKER_TYPE}:{self.name}:"
        recovered: list[UUID] = []
        for run in runs:
            worker_label = (run.labels or {}).get("prefect.worker.name")
            # Unmarked: killed between the claim and `_mark_run` (this agent is its queue's
            # only worker, so a claimed run of the queue without markers is ours too).
            ours = (
                (run.infrastructure_pid or "").startswith(mine)
                or worker_label == self.name
                or (not run.infrastructure_pid and worker_label is None)
            )
            if not ours or run.id == self._executing:
                continue
            if run.state is not None and run.state.is_cancelling():
                await self._force_state(run.id, "cancelled", "Cancelled while the agent was down.")
            else:
                await self._force_state(
                    run.id,
                    "crashed",
                    f"Agent {self.name} restarted while this run was in progress "
                    "(process killed); check the resort's position before retrying.",
                )
            recovered.append(run.id)
        if recovered:
            logger.warning("marked %d orphaned run(s) of %s final", len(recovered), self.name)
        return recovered

    # ------------------------------------------------------------------ loops
    def wake(self, burst: bool = False) -> None:
        """Poll for scheduled runs now (thread-safe); `burst` re-polls briefly if none found."""
        if burst:
            self._burst_until = time.monotonic() + _BURST_SECONDS
        loop, event = self._loop, self._wake_event
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    @property
    def busy(self) -> bool:
        """True while a run holds the worker's single slot."""
        return self._limiter is not None and self._limiter.borrowed_tokens > 0

    async def _poll_loop(self) -> None:
        assert self._wake_event is not None
        while not self._stopping:
            self._wake_event.clear()
            submitted: list[Any] = []
            try:
                submitted = await self.get_and_submit_flow_runs()
            except Exception as exc:
                logger.warning("polling %s failed: %s", sorted(self._work_queues), exc)
            if not submitted and not self.busy and time.monotonic() < self._burst_until:
                with anyio.move_on_after(_BURST_STEP):
                    await self._wake_event.wait()
                continue
            with anyio.move_on_after(self.poll_interval):
                await self._wake_event.wait()

    async def _sync_loop(self) -> None:
        while not self._stopping:
            with anyio.move_on_after(self.heartbeat_interval_seconds):
                assert self._stop_event is not None
                await self._stop_event.wait()
            if self._stopping:
                return
            try:
                await self._sync_and_initialize()
            except Exception as exc:
                logger.warning("worker heartbeat failed: %s", exc)

    async def _queue_resource_ids(self) -> list[str]:
        """Event resource ids of the worker's queues (their ids are kept for claims)."""
        self._queue_ids = [
            (
                await self.client.read_work_queue_by_name(
                    queue_name, work_pool_name=self._work_pool_name
                )
            ).id
            for queue_name in sorted(self._work_queues)
        ]
        return [f"prefect.work-queue.{q}" for q in self._queue_ids]

    async def _event_loop(self) -> None:
        """Wake on Scheduled events for the queue; halt on Cancelling of the run executing."""
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        backoff = 0.5
        while not self._stopping:
            try:
                resource_ids = await self._queue_resource_ids()
                event_filter = EventFilter(
                    event=EventNameFilter(
                        name=[SCHEDULED_EVENT, RUNNING_EVENT, CANCELLING_EVENT, *QUEUE_OPEN_EVENTS]
                    ),
                    any_resource=EventAnyResourceFilter(id=resource_ids),
                )
                since = datetime.datetime.now(datetime.UTC)
                async with get_events_subscriber(
                    filter=event_filter, reconnection_attempts=3
                ) as subscriber:
                    self.events_connected = True
                    if self.session is not None:
                        self.session.update()  # publish: the agent is now event-driven
                    backoff = 0.5
                    # One poll catches what was scheduled while disconnected; anything later
                    # has an event (a burst here would also take runs the events would claim).
                    self.wake()
                    async for event in subscriber:
                        if event.occurred < since:
                            continue  # the subscriber replays the last minute on connect
                        self._on_event(event.event, event.resource.id)
            except Exception as exc:
                logger.info("event subscription for %s dropped: %s", self.name, exc)
            self.events_connected = False
            if self._stopping:
                return
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 15.0)

    def _on_event(self, name: str, resource_id: str) -> None:
        logger.debug("event %s %s", name, resource_id)
        run_id: UUID | None = None
        if resource_id.startswith("prefect.flow-run."):
            with contextlib.suppress(ValueError):
                run_id = UUID(resource_id.removeprefix("prefect.flow-run."))
        if name == SCHEDULED_EVENT:
            if run_id is None or self._runs_task_group is None:
                self.wake(burst=True)
            else:
                self._runs_task_group.start_soon(self._claim, run_id)
        elif name == RUNNING_EVENT and run_id is not None:
            seen = self._running_seen.get(run_id)
            if seen is not None:
                seen.set()
        elif name == CANCELLING_EVENT and run_id is not None and self.request_cancel(run_id):
            logger.info("flow run %s cancelled: halting %s", run_id, self.name)
        elif name in QUEUE_OPEN_EVENTS:
            # Resumed (or just polled): start what was queued while it was paused, by a claim
            # (serialised with the event claims; a poll here would race them).
            if self._runs_task_group is None:
                self.wake()
            else:
                self._runs_task_group.start_soon(self._claim, None)

    async def start(
        self,
        run_once: bool = False,
        with_healthcheck: bool = False,
        printer: Callable[..., None] = print,
    ) -> None:
        """Serve the queue until `stop()`; `run_once` polls once (no events, no loops)."""
        async with self:
            await self.serve(run_once=run_once)

    async def serve(self, run_once: bool = False) -> None:
        """Inside the worker context: load flows, recover orphans and serve until `stop()`."""
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopping = False
        await self.load_flows()
        try:
            await self.recover_orphans()
        except Exception as exc:
            logger.warning("could not check for orphaned runs: %s", exc)
        if run_once:
            await self.get_and_submit_flow_runs()
            return
        self._started_event = await self._emit_worker_started_event()
        async with anyio.create_task_group() as loops:
            loops.start_soon(self._poll_loop)
            loops.start_soon(self._sync_loop)
            loops.start_soon(self._event_loop)
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
