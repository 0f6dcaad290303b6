"""Queue pickup: Prefect events wake the worker, which claims the queue's earliest due run.

The worker subscribes to `prefect.flow-run.Scheduled` events related to its work queue and at
once claims the queue's earliest due run (one read, then `Pending`), without a queue poll (which
writes). A run not yet readable (events can go out before the commit) is re-read briefly, then
left to a burst of polls. A claim skips a paused queue (`fleet drain`); the queue's ready event on
resume, and the end of each run, claim the same way (a busy worker ignores events). A slow
fallback poll (`poll_interval`) covers lost events. The same subscription carries the run's
`Running` event (its markers are written then) and `Cancelling` (the motor halts).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio

from device_agent.pacing import jittered
from device_agent.prefect_adapter import subscribe_events

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, WorkPool

    from device_agent.worker.resort_worker import ResortWorker

__all__ = ["QueuePickup"]

logger = logging.getLogger(__name__)

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
RUNNING_EVENT = "prefect.flow-run.Running"
CANCELLING_EVENT = "prefect.flow-run.Cancelling"
# A queue unpaused (`fleet resume`) goes ready or not-ready; its queued runs are claimed then.
QUEUE_OPEN_EVENTS = ("prefect.work-queue.ready", "prefect.work-queue.not-ready")
# A Scheduled event can arrive before its run is readable: re-read it this often, this long.
CLAIM_STEP = 0.02
CLAIM_SECONDS = 0.5
# After a Scheduled event the run may not be committed yet: re-poll for this long.
BURST_SECONDS = 1.0
BURST_STEP = 0.05


def _pool(worker: ResortWorker) -> WorkPool | None:
    """The worker's pool as last synced (None before the first sync)."""
    try:
        return worker.work_pool
    except RuntimeError:
        return None


class QueuePickup:
    """How one worker learns of runs: its events subscription, claims and fallback poll.

    Args:
        worker: the worker whose queue this serves (it submits the claimed runs).
    """

    def __init__(self, worker: ResortWorker) -> None:
        self.worker = worker
        self.events_connected = False
        self.claims_from_events = 0
        self._wake_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._burst_until = 0.0
        self._claim_lock: asyncio.Lock | None = None
        self._queue_ids: list[UUID] = []

    def bind(self) -> None:
        """Attach to the running event loop (before `poll_loop` and `event_loop` start)."""
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()

    # ------------------------------------------------------------------ reads
    def queue_filters(self) -> dict[str, Any]:
        """`read_flow_runs` filters for the worker's pool and queues."""
        from prefect.client.schemas.filters import (
            WorkPoolFilter,
            WorkPoolFilterName,
            WorkQueueFilter,
            WorkQueueFilterName,
        )

        worker = self.worker
        queues = (
            WorkQueueFilter(name=WorkQueueFilterName(any_=sorted(worker.queue_names)))
            if worker.queue_names
            else None
        )
        return {
            "work_pool_filter": WorkPoolFilter(name=WorkPoolFilterName(any_=[worker.pool_name])),
            "work_queue_filter": queues,
        }

    def _prefetch_horizon(self) -> datetime.datetime:
        """Runs scheduled up to this time are due (the poll's prefetch)."""
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=self.worker.prefetch_seconds
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

        runs = await self.worker.client.read_flow_runs(
            limit=1,
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                    before_=self._prefetch_horizon()
                ),
            ),
            **self.queue_filters(),
        )
        return runs[0] if runs else None

    async def _earliest_due_run_and_paused_queues(self) -> tuple[FlowRun | None, set[UUID]]:
        """The queue's earliest due run and which of the worker's queues are paused, read at once.

        The queue poll skips paused queues; a claim must too (`fleet drain` pauses the queue
        and promises that runs already scheduled wait for `fleet resume`).
        """
        client = self.worker.client
        due, queues = await asyncio.gather(
            self._earliest_due_run(),
            asyncio.gather(*(client.read_work_queue(q) for q in self._queue_ids)),
        )
        return due, {q.id for q in queues if q.is_paused}

    def _claimable(self, flow_run: FlowRun) -> bool:
        """What the queue poll would return: Scheduled, this queue, due within the prefetch."""
        worker = self.worker
        state = flow_run.state
        if state is None or not state.is_scheduled() or worker.stopping:
            return False
        if worker.queue_names and flow_run.work_queue_name not in worker.queue_names:
            return False
        due = flow_run.next_scheduled_start_time or getattr(
            state.state_details, "scheduled_time", None
        )
        return due is None or due <= self._prefetch_horizon()

    # ------------------------------------------------------------------ claims
    def claim_soon(self, event_run_id: UUID | None = None) -> None:
        """Claim the earliest due run soon (in the runs task group), else poll now."""
        if not self.worker.start_runs_soon(self.claim, event_run_id):
            self.wake()

    async def claim(self, event_run_id: UUID | None) -> None:
        """Claim the queue's earliest due run on a Scheduled event (no queue poll).

        The event only says that *something* was scheduled; the run claimed is the one the queue
        poll would return first (earliest scheduled start), so runs start in submission order
        even when their events arrive out of order or race the poll that follows a run's end.
        Claims are serialised; a busy worker ignores the event and claims again when its slot
        frees (with `event_run_id` None).
        """
        if self._claim_lock is None:
            self._claim_lock = asyncio.Lock()
        async with self._claim_lock:
            await self._claim_one(event_run_id)

    async def _claim_one(self, event_run_id: UUID | None) -> None:
        from prefect.exceptions import ObjectNotFound

        worker = self.worker
        if worker.stopping or worker.busy or _pool(worker) is None:
            return
        deadline = time.monotonic() + CLAIM_SECONDS
        while True:
            try:
                due, paused = await self._earliest_due_run_and_paused_queues()
                pool = _pool(worker)
                pool_paused = pool is not None and pool.is_paused
                if due is not None and (due.work_queue_id in paused or pool_paused):
                    return  # paused (`fleet drain`): it starts after `fleet resume`
                if due is not None:
                    flow_run = due
                    break
                if event_run_id is None:
                    return  # a slot freed and nothing is due
                # Nothing due: the event's run is not readable yet (events can go out before
                # the commit), was taken already, or is scheduled for later.
                event_run = await worker.client.read_flow_run(event_run_id)
                if not self._claimable(event_run):
                    return
            except ObjectNotFound:
                pass
            except Exception as exc:
                logger.info("could not read the due runs of %s: %s; polling", worker.name, exc)
                self.wake(burst=True)
                return
            if time.monotonic() > deadline:
                self.wake(burst=True)
                return
            await anyio.sleep(CLAIM_STEP)
        if worker.is_submitting(flow_run.id) or flow_run.work_queue_id is None:
            return
        if worker.busy or not self._claimable(flow_run):
            return
        pool = _pool(worker)
        if pool is not None and await worker.submit_claimed_run(flow_run, pool.id):
            self.claims_from_events += 1

    # ------------------------------------------------------------------ poll
    def wake(self, burst: bool = False) -> None:
        """Poll for scheduled runs now (thread-safe); `burst` re-polls briefly if none found."""
        if burst:
            self._burst_until = time.monotonic() + BURST_SECONDS
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

    async def poll_loop(self) -> None:
        """The fallback poll: every `poll_interval`, on `wake()`, and in bursts after events."""
        worker = self.worker
        assert self._wake_event is not None
        while not worker.stopping:
            self._wake_event.clear()
            submitted: list[Any] = []
            try:
                submitted = await worker.get_and_submit_flow_runs()
            except Exception as exc:
                logger.warning("polling %s failed: %s", sorted(worker.queue_names), exc)
            if not submitted and not worker.busy and time.monotonic() < self._burst_until:
                with anyio.move_on_after(BURST_STEP):
                    await self._wake_event.wait()
                continue
            with anyio.move_on_after(jittered(worker.poll_interval)):
                await self._wake_event.wait()

    # ------------------------------------------------------------------ events
    async def _queue_resource_ids(self) -> list[str]:
        """Event resource ids of the worker's queues (their ids are kept for claims)."""
        worker = self.worker
        self._queue_ids = [
            (
                await worker.client.read_work_queue_by_name(
                    queue_name, work_pool_name=worker.pool_name
                )
            ).id
            for queue_name in sorted(worker.queue_names)
        ]
        return [f"prefect.work-queue.{q}" for q in self._queue_ids]

    async def event_loop(self) -> None:
        """Wake on Scheduled events for the queue; halt on Cancelling of the run executing."""
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        worker = self.worker
        backoff = 0.5
        while not worker.stopping:
            try:
                resource_ids = await self._queue_resource_ids()
                event_filter = EventFilter(
                    event=EventNameFilter(
                        name=[SCHEDULED_EVENT, RUNNING_EVENT, CANCELLING_EVENT, *QUEUE_OPEN_EVENTS]
                    ),
                    any_resource=EventAnyResourceFilter(id=resource_ids),
                )
                since = datetime.datetime.now(datetime.UTC)
                async with subscribe_events(event_filter) as subscriber:
                    self.events_connected = True
                    if worker.session is not None:
                        worker.session.update()  # publish: the agent is now event-driven
                    backoff = 0.5
                    # One poll catches what was scheduled while disconnected; anything later
                    # has an event (a burst here would also take runs the events would claim).
                    self.wake()
                    async for event in subscriber:
                        if event.occurred < since:
                            continue  # the subscriber replays the last minute on connect
                        self.on_event(event.event, event.resource.id)
            except Exception as exc:
                logger.info("event subscription for %s dropped: %s", worker.name, exc)
            self.events_connected = False
            if worker.stopping:
                return
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 15.0)

    def on_event(self, name: str, resource_id: str) -> None:
        """Act on one event of the subscription."""
        logger.debug("event %s %s", name, resource_id)
        worker = self.worker
        run_id: UUID | None = None
        if resource_id.startswith("prefect.flow-run."):
            with contextlib.suppress(ValueError):
                run_id = UUID(resource_id.removeprefix("prefect.flow-run."))
        if name == SCHEDULED_EVENT:
            if run_id is None or not worker.start_runs_soon(self.claim, run_id):
                self.wake(burst=True)
        elif name == RUNNING_EVENT and run_id is not None:
            worker.running_seen(run_id)
        elif name == CANCELLING_EVENT and run_id is not None and worker.request_cancel(run_id):
            logger.info("flow run %s cancelled: halting %s", run_id, worker.name)
        elif name in QUEUE_OPEN_EVENTS:
            # Resumed (or just polled): start what was queued while it was paused, by a claim
            # (serialised with the event claims; a poll here would race them).
            self.claim_soon(None)
