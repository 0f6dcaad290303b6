"""Parent-run watchdog: a parent flow whose process dies ends Crashed, not Running forever.

Parent flows run in their caller's process (a lab scheduler, the CLI, a batch). When that process
is killed (`kill -9`, out of memory, power cut), nothing is left to report the run's final state:
its lock frees with its lease (`fleet.core.locks`), but Prefect would show the run Running for ever.

* Every parent flow body runs inside `async with parent_heartbeat(inv)`. It emits
  `HEARTBEAT_EVENT` for its own flow run when the body starts, then every
  `inv.fleet.parent_heartbeat` seconds from a daemon thread (user code blocking the event loop
  does not silence it) until the body exits in any way (return, exception, cancellation). A run
  without the fleet's tag (below) posts its first heartbeat instead, before the body starts (an
  HTTP request that returns once the server has the event, at most `FIRST_BEAT_TIMEOUT` s).
* `fleet provision` creates one proactive automation per fleet (`automation(inv)`, named
  `resort_common.names.parent_watchdog_name`): for each parent flow run, after it turns Running or
  sends
  a heartbeat, another heartbeat or a final state (`FINAL_EVENTS`, Prefect's own state events)
  must follow within `MISSED_BEATS` intervals; when neither does, the run is set Crashed with
  `CRASH_MESSAGE`. So a process killed at any point between Running and its final state report
  leaves no run Running. Prefect refuses Crashed for a run that is already final, so a lost
  state event cannot rewrite a finished run.
* The automation knows a run as one of its fleet's parents by two related resources: the flow
  (one of `resort_common.names.PARENT_FLOWS`) and the tag `resort_common.names.fleet_tag`
  (`fleet:<name>`). The
  fleet's client starts parent runs under that tag and the provisioned parent deployments carry
  it, so such a run is watched from its Running state on: a process killed before its first
  heartbeat left is marked Crashed too. The heartbeats name the tag themselves, so a parent flow
  called directly (without the tag) is watched from its first heartbeat. Device subflows carry
  the tag but are not parent flows, so they are not watched.

Two fleets on one server each watch their own parents. The window is counted from the events'
own timestamps: the clocks of the scheduler hosts and of the server should agree to well within
one interval (NTP).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fleet.core import prefect_adapter
from fleet.core.inventory.fleet_block import MISSED_BEATS
from resort_common import names

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

    from fleet.core.inventory import Inventory

__all__ = [
    "CRASH_MESSAGE",
    "FINAL_EVENTS",
    "FIRST_BEAT_TIMEOUT",
    "HEARTBEAT_EVENT",
    "START_EVENT",
    "automation",
    "parent_heartbeat",
    "window",
]

logger = logging.getLogger(__name__)

HEARTBEAT_EVENT = "fleet.parent.heartbeat"
#: Prefect's own event for a flow run turning Running: the watch starts there for tagged runs
START_EVENT = "prefect.flow-run.Running"
#: Prefect's events for a flow run reaching a final state (each ends the watch)
FINAL_EVENTS = frozenset(
    f"prefect.flow-run.{state}"
    for state in ("Completed", "Failed", "Crashed", "Cancelled", "TimedOut")
)
CRASH_MESSAGE = (
    "parent flow stopped sending heartbeats: its process died or lost the server "
    "(fleet parent watchdog)"
)


def window(interval: float) -> float:
    """Seconds of silence after which a parent run is marked Crashed."""
    return interval * MISSED_BEATS


def automation(inv: Inventory) -> AutomationCore:
    """The fleet's watchdog automation, as `fleet provision` creates it."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    interval = inv.fleet.parent_heartbeat
    return AutomationCore(
        name=names.parent_watchdog_name(inv),
        description=(
            f"Marks a parent flow run of fleet {inv.fleet.name} Crashed when it sends no "
            f"heartbeat for {window(interval):g} s ({MISSED_BEATS} x {interval:g} s): its "
            "process died (managed by `fleet provision`)."
        ),
        enabled=True,
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[
                {
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": sorted(names.PARENT_FLOWS),
                },
                {"prefect.resource.role": "tag", "prefect.resource.id": _tag_resource(inv)},
            ],
            after={START_EVENT, HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *FINAL_EVENTS},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window(interval)),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=CRASH_MESSAGE)],
    )


def _tag_resource(inv: Inventory) -> str:
    """Resource id of the fleet's tag, as Prefect relates tags to a run's events."""
    return f"prefect.tag.{names.fleet_tag(inv)}"


def _emit(event: str, resource: dict[str, str], related: list[dict[str, str]]) -> None:
    from prefect.events import emit_event

    try:
        emit_event(event=event, resource=resource, related=related)
    except Exception as exc:  # a heartbeat must never break the flow it watches
        logger.debug("could not emit %s: %s", event, exc)


#: seconds the first heartbeat may take to reach the server before the body starts anyway
FIRST_BEAT_TIMEOUT = 5.0


async def _post_now(event: str, resource: dict[str, str], related: list[dict[str, str]]) -> bool:
    """Deliver one event before returning (`prefect_adapter.post_events`); False when that failed.

    `emit_event` only queues: its websocket may still be connecting when the process dies, and a
    run without the fleet's tag (a parent flow called directly) is watched only from its first
    heartbeat's arrival. Bounded by `FIRST_BEAT_TIMEOUT`.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.events import Event

    beat = Event(event=event, resource=resource, related=related)
    try:
        async with asyncio.timeout(FIRST_BEAT_TIMEOUT), get_client() as client:
            await prefect_adapter.post_events(client, [beat])
    except Exception as exc:  # the websocket path is the fallback
        logger.debug("could not post %s: %s", event, exc)
        return False
    return True


def _beat(
    stop: threading.Event, interval: float, resource: dict[str, str], related: list[Any]
) -> None:
    while not stop.wait(interval):
        _emit(HEARTBEAT_EVENT, resource, related)


@contextlib.asynccontextmanager
async def parent_heartbeat(inv: Inventory) -> AsyncIterator[None]:
    """Heartbeat the current parent flow run while the block runs (see the module docstring).

    Outside a flow run (a plain function call) it does nothing.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    if run is None:
        yield
        return
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.name": run.name,
    }
    related = [
        {
            "prefect.resource.id": f"prefect.flow.{run.flow_id}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": ctx.flow.name if ctx and ctx.flow else "",
        },
        {"prefect.resource.id": _tag_resource(inv), "prefect.resource.role": "tag"},
    ]
    stop = threading.Event()
    # a tagged run is watched since it turned Running; an untagged one only once a heartbeat is
    # on the server, so its first one is posted (one more request) before the body starts
    tagged = names.fleet_tag(inv) in (run.tags or ())
    if tagged or not await _post_now(HEARTBEAT_EVENT, resource, related):
        _emit(HEARTBEAT_EVENT, resource, related)
    # the thread sees this run's settings and events client (as Prefect's own heartbeat does)
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(_beat, stop, inv.fleet.parent_heartbeat, resource, related),
        name=f"heartbeat-{run.name}",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # a beat being emitted right now goes out before the final state is reported: a beat
        # arriving after it would open a window that nothing closes (a refused Crashed: noise)
        thread.join(1.0)
