"""Every private Prefect name the device agent relies on: the one module that touches them.

Each use sits next to the public alternative and why it does not serve. A Prefect upgrade that
moves one of these names breaks here and in `tests/device_agent/test_prefect_adapter.py`, which
pins every name and signature listed below; the rest of `device_agent` uses only the public
names this module defines.

* `WorkerAdapter`: the `BaseWorker` overrides and calls of the in-process device worker.
* `InProcessJobConfiguration`: a job configuration that renders no environment.
* `EngineThread`, `skip_suspension_observer_on_engine_threads`, `engine_thread_context`,
  `skip_run_policy_updates`, `run_flow_here`: how the device thread drives Prefect's flow engine.
* `subscribe_events`, `post_events`: the event subscriber's keywords and the raw events endpoint.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.events import Event
    from prefect.events.clients import PrefectEventSubscriber
    from prefect.events.filters import EventFilter
    from prefect.flows import Flow

__all__ = [
    "EngineThread",
    "InProcessJobConfiguration",
    "WorkerAdapter",
    "engine_thread_context",
    "post_events",
    "run_flow_here",
    "skip_run_policy_updates",
    "skip_suspension_observer_on_engine_threads",
    "subscribe_events",
    "warm_engine_thread",
]

C = TypeVar("C", bound=BaseJobConfiguration)
V = TypeVar("V", bound=BaseVariables)
R = TypeVar("R", bound=BaseWorkerResult)

#: Reconnection attempts of one events subscription before it raises (the callers re-subscribe).
RECONNECTION_ATTEMPTS = 3


class InProcessJobConfiguration(BaseJobConfiguration):
    """A job configuration for runs executed in this process (no infrastructure to start)."""

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        """No environment: the run executes in this process, not in new infrastructure.

        Private override of `BaseJobConfiguration._base_environment`. Public alternative: the
        `env` job variable, which can add variables but not stop the base class from rendering
        every Prefect setting as one (CPU spent on every run for a process that is never started).
        """
        return {}


class WorkerAdapter(BaseWorker[C, V, R], abc.ABC):
    """`BaseWorker` with its private parts behind public hooks (abstract: not a worker type).

    Subclasses override the hooks (`read_deployment_for_submission`, `submission_starting`,
    `run_started`, `submission_failed`, `slot_released`) and call the public methods below;
    they never touch a `BaseWorker` underscore name.
    """

    # ------------------------------------------------------------------ overrides
    async def _propose_submitting_state(self, flow_run: FlowRun) -> None:
        """Skip `Submitting`: there is no infrastructure to submit to (Pending -> Running).

        Private override. Public alternative: none (`run()` is called after this write).
        """
        return None

    async def _give_worker_labels_to_flow_run(self, flow_run_id: UUID) -> None:
        """No write before the start: `give_worker_labels` labels the run once it is Running.

        Private override. Public alternative: none (it is written before `run()` is called).
        """
        return None

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        """Free the slot as Prefect does, then call `slot_released(flow_run_id)`.

        Private override. Public alternative: none (`run()` returns before the slot is freed,
        and the base worker frees it on paths that never reach `run()`).
        """
        super()._release_limit_slot(flow_run_id)
        self.slot_released(flow_run_id)

    async def _submit_run(self, flow_run: FlowRun) -> None:
        """`BaseWorker._submit_run` with the device worker's cuts; its source digest is pinned.

        Same steps and bookkeeping: a deleted deployment cancels the run, `Pending` claims it,
        `_submit_run_and_capture_errors` starts it, the limiter slot is released if it does not
        start. Differences: the deployment comes from `read_deployment_for_submission` (cached
        by the subclass), and `infrastructure_pid` and the worker labels are not written here:
        `run_started` runs once the run has started.

        Public alternative: `get_and_submit_flow_runs()`, which the fallback poll uses. It cannot
        start one given run (it polls the queue, a write on the server, and submits whatever the
        poll returns), and it submits through this method, whose upstream body writes
        `infrastructure_pid` before the flow body may start.
        """
        from prefect.exceptions import ObjectNotFound

        try:
            if flow_run.deployment_id:
                try:
                    await self.read_deployment_for_submission(flow_run.deployment_id)
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
            self.submission_starting(flow_run.id)
            started = await self._runs_task_group.start(
                self._submit_run_and_capture_errors, flow_run
            )
            if started and not isinstance(started, Exception):
                self._runs_task_group.start_soon(self.run_started, flow_run.id, str(started))
            else:
                self.submission_failed(flow_run.id)
                self._release_limit_slot(flow_run.id)
        finally:
            self._submitting_flow_run_ids.discard(flow_run.id)
            if self._cancelling_observer is not None:
                self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)

    # ------------------------------------------------------------------ hooks
    async def read_deployment_for_submission(self, deployment_id: UUID) -> Any:
        """Read the run's deployment before the claim (raises `ObjectNotFound` if deleted)."""
        return await self.client.read_deployment(deployment_id)

    def submission_starting(self, flow_run_id: UUID) -> None:
        """The run is Pending and about to be handed to `run()`."""

    async def run_started(self, flow_run_id: UUID, identifier: str) -> None:
        """`run()` reported the run started as `identifier` (runs in the runs task group)."""

    def submission_failed(self, flow_run_id: UUID) -> None:
        """`run()` did not start the run."""

    def slot_released(self, flow_run_id: UUID) -> None:
        """The run's limiter slot was freed (after `run()` returned, or when it never started)."""

    # ------------------------------------------------------------------ calls
    def start_runs_soon(self, fn: Any, *args: Any) -> bool:
        """Start `fn(*args)` in the worker's runs task group; False outside the worker context.

        Private attribute `_runs_task_group`. Public alternative: none (the group that owns the
        runs, whose slot bookkeeping the claims share, is not exposed).
        """
        group = self._runs_task_group
        if group is None:
            return False
        group.start_soon(fn, *args)
        return True

    def is_submitting(self, flow_run_id: UUID) -> bool:
        """True while the run is between its claim and its start.

        Private attribute `_submitting_flow_run_ids`. Public alternative: none.
        """
        return flow_run_id in self._submitting_flow_run_ids

    async def submit_claimed_run(self, flow_run: FlowRun, work_pool_id: UUID) -> bool:
        """Submit one run read from the queue as the poll would; True if it was taken.

        Private method `_submit_scheduled_flow_runs` (limiter slot, duplicate check, then
        `_submit_run`). Public alternative: `get_and_submit_flow_runs()`, which polls the queue
        (a write on the server) instead of taking the run already read.
        """
        from prefect.client.schemas.responses import WorkerFlowRunResponse

        assert flow_run.work_queue_id is not None
        submitted = await self._submit_scheduled_flow_runs(
            [
                WorkerFlowRunResponse(
                    work_pool_id=work_pool_id,
                    work_queue_id=flow_run.work_queue_id,
                    flow_run=flow_run,
                )
            ]
        )
        return bool(submitted)

    async def sync_and_initialize(self) -> None:
        """Heartbeat the worker and start what a first successful sync starts.

        Private method `_sync_and_initialize`. Public alternative: `sync_with_backend()`, which
        does not start the services of a worker whose first sync failed (API down at start-up).
        """
        await self._sync_and_initialize()

    async def emit_worker_started(self) -> None:
        """Emit `prefect.worker.started`; the worker context's exit emits the stopped event.

        Private method `_emit_worker_started_event` and attribute `_started_event`. Public
        alternative: `start()`, which also runs Prefect's own poll and heartbeat loops (this
        worker runs event-driven loops of its own instead).
        """
        self._started_event = await self._emit_worker_started_event()

    async def give_worker_labels(self, flow_run_id: UUID) -> None:
        """Write the worker's labels on the run (what `BaseWorker` writes before `run()`).

        Private method `_give_worker_labels_to_flow_run` (the base version; the override above
        skips it). Public alternative: `client.update_flow_run_labels`, which would copy the
        label names Prefect chooses.
        """
        await BaseWorker._give_worker_labels_to_flow_run(self, flow_run_id)


class EngineThread(threading.Thread):
    """A thread whose flow runs skip Prefect's per-run suspension observer.

    The patch installed by `skip_suspension_observer_on_engine_threads` looks at the current
    thread's type; runs on other threads keep the observer.
    """


def skip_suspension_observer_on_engine_threads() -> bool:
    """Make Prefect's engine skip its per-run suspension observer on `EngineThread`s only.

    Monkeypatches `prefect.flow_engine.observe_flow_run_suspension` (idempotent). For every
    deployment run the engine starts a thread with its own event loop, client and events
    websocket, and blocks the run's start until it is subscribed and its end until it stops.
    Device runs cannot be suspended (they are cancelled instead, which halts the motor).
    Public alternative: none (the engine has no setting to turn the observer off).

    Returns:
        False (and changes nothing) if this Prefect has no such hook.
    """
    import prefect.flow_engine as engine

    original = getattr(engine, "observe_flow_run_suspension", None)
    if original is None:
        return False
    if getattr(original, "__plate_resort__", False):
        return True

    @contextlib.contextmanager
    def observe(*args: Any, **kwargs: Any) -> Any:
        if isinstance(threading.current_thread(), EngineThread):
            yield
            return
        with original(*args, **kwargs):
            yield

    observe.__plate_resort__ = True  # type: ignore[attr-defined]
    engine.observe_flow_run_suspension = observe
    return True


@contextlib.contextmanager
def engine_thread_context() -> Iterator[bool]:
    """Settings and client of a thread that runs flows: one sync client, no run heartbeats.

    `SyncClientContext.get_or_create()` enters one sync API client that the engine reuses for
    every run on this thread (public name, but the engine's reuse of it is undocumented).
    Public alternative: none (without it each run opens and closes a client of its own).

    Yields:
        True if flow-run heartbeats are off for the runs of this thread.
    """
    from prefect.context import SyncClientContext
    from prefect.settings import get_current_settings, temporary_settings

    with (
        temporary_settings(updates={"flows.heartbeat_frequency": None}),
        SyncClientContext.get_or_create() as context,
    ):
        skip_run_policy_updates(context.client)
        yield get_current_settings().flows.heartbeat_frequency is None


#: The fields of the engine's own flow-run update before a deployment run starts
_ENGINE_UPDATE_FIELDS = frozenset({"flow_version", "empirical_policy"})


def skip_run_policy_updates(client: Any) -> None:
    """Make `client` skip the engine's pre-start `update_flow_run(flow_version, empirical_policy)`
    when the policy asks for no retries (every device flow: `retries=0`).

    `FlowRunEngine.start` PATCHes every deployment run before proposing Running, to copy the
    flow's retry policy and version onto it: one server write on the way to the motor, which on
    SQLite waits behind every other write. With no retries the server has nothing to enforce
    (its retry rule reads `retries` None as 0); only the run's `flow_version` stays unset.
    Other updates through `client` (any other field) are made as usual.
    Public alternative: none (the engine has no setting to skip it).
    """
    import httpx

    original = client.update_flow_run

    def update_flow_run(flow_run_id: Any, **fields: Any) -> Any:
        given = {k for k, v in fields.items() if v is not None}
        policy = fields.get("empirical_policy")
        if given <= _ENGINE_UPDATE_FIELDS and not getattr(policy, "retries", 0):
            return httpx.Response(204)
        return original(flow_run_id, **fields)

    client.update_flow_run = update_flow_run


def warm_engine_thread() -> None:
    """On the engine thread, before its first run: import what `run_flow_here` imports then.

    The engine module and the result, logging and telemetry modules it loads on first use cost
    tens of milliseconds (`make bench-ha`: an agent's first run started ~100 ms later than its
    next). Public names of those modules; no request is made.
    """
    import prefect.flow_engine
    import prefect.logging.loggers
    import prefect.results
    import prefect.telemetry.run_telemetry  # noqa: F401


def run_flow_here(flow: Flow[Any, Any], flow_run: FlowRun) -> Any:
    """Run `flow_run` of `flow` on this thread with Prefect's engine; returns its final state.

    `prefect.flow_engine.run_flow` (public name of an engine module). Public alternative:
    calling the flow, which creates a new run instead of executing the claimed one.
    """
    from prefect.flow_engine import run_flow

    return run_flow(flow, flow_run=flow_run, return_type="state")


def subscribe_events(event_filter: EventFilter) -> PrefectEventSubscriber:
    """An events subscription (async context manager, async iterator of events).

    `get_events_subscriber(filter=..., reconnection_attempts=...)`: its keywords are pinned by
    the adapter test. It replays the last minute of matching events on each connect (callers
    skip events older than their subscription). Public alternative: none for a websocket
    subscription from a client.
    """
    from prefect.events.clients import get_events_subscriber

    return get_events_subscriber(filter=event_filter, reconnection_attempts=RECONNECTION_ATTEMPTS)


async def post_events(client: PrefectClient, events: list[Event], timeout: float) -> None:
    """POST `events` to the server now and wait for the answer (bounded by `timeout` s).

    Raw endpoint `POST /events` through `PrefectClient.request`. Public alternative:
    `prefect.events.emit_event`, which queues the event on a background websocket that the
    process may not flush before it exits.
    """
    await asyncio.wait_for(
        client.request("POST", "/events", json=[e.model_dump(mode="json") for e in events]),
        timeout,
    )
