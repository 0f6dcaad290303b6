"""The loop behind `fleet.core.overview.watch_overview`: event subscription, coalescing, refresh.

Private: `watch_overview` runs `watch` in its own event loop. The subscription is one websocket
(`prefect_adapter.events_subscriber`) with a server-side filter on the event names
and resource ids; events of other fleets that pass it (resort ids are matched as prefixes, work
queues of every pool) are dropped here (`_concerns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from fleet.core import prefect_adapter
from fleet.core.overview import PUBLISH_TIMEOUT, QUIET_EVENTS, apublish_overview
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

logger = logging.getLogger(__name__)

_AGENT_EVENTS = "plate-resort."
_QUEUE_EVENTS = "prefect.work-queue."
_POLL = 0.2  # seconds between two looks at the stop flag and the events
_MAX_BACKOFF = 30.0  # seconds between two reconnection attempts, at most


def _event_filter(inv: Inventory) -> Any:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    return EventFilter(
        event=EventNameFilter(
            prefix=[_AGENT_EVENTS, _QUEUE_EVENTS], exclude_name=sorted(QUIET_EVENTS)
        ),
        resource=EventResourceFilter(
            id_prefix=[*(names.resource_id(r) for r in inv.resorts), _QUEUE_EVENTS]
        ),
    )


def _concerns(inv: Inventory, resort_ids: set[str], event: Any) -> bool:
    """Whether `event` is one of the fleet's resorts' or a state change of its device queues."""
    if event.event.startswith(_QUEUE_EVENTS):
        return any(r.role == "work-pool" and r.name == inv.fleet.work_pool for r in event.related)
    return event.resource.id in resort_ids


async def _listen(inv: Inventory, wake: asyncio.Event) -> None:
    """Set `wake` on each event of the fleet; reconnect with a backoff (until cancelled)."""
    resort_ids = {names.resource_id(r) for r in inv.resorts}
    backoff = 0.5
    while True:
        try:
            # a fresh filter per connection: the subscriber rewrites its `occurred` window
            async with prefect_adapter.events_subscriber(
                _event_filter(inv), reconnection_attempts=3
            ) as subscriber:
                backoff = 0.5
                wake.set()  # catch up with changes made while disconnected
                async for event in subscriber:
                    if _concerns(inv, resort_ids, event):
                        wake.set()
        except Exception as exc:
            logger.warning("overview of %s: event subscription dropped: %r", inv.fleet.name, exc)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF)


async def _publish(inv: Inventory, failing: bool) -> bool:
    """Publish once; return whether it failed (a run of failures warns once)."""
    try:
        await asyncio.wait_for(apublish_overview(inv), PUBLISH_TIMEOUT)
    except Exception as exc:
        log = logger.debug if failing else logger.warning
        log("overview of %s not published: %r", inv.fleet.name, exc)
        return True
    if failing:
        logger.info("overview of %s published again", inv.fleet.name)
    return False


async def watch(inv: Inventory, stop: threading.Event, refresh: float, min_interval: float) -> None:
    """Publish at start, after events (at most once per `min_interval` s), every `refresh` s."""
    wake = asyncio.Event()
    listener = asyncio.create_task(_listen(inv, wake))
    failing, last, due = False, -math.inf, time.monotonic()  # publish once at start
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= due or (wake.is_set() and now >= last + min_interval):
                wake.clear()  # an event arriving during the publication sets it again
                last, due = now, now + refresh
                failing = await _publish(inv, failing)
            await asyncio.sleep(_POLL)
    finally:
        listener.cancel()
        with contextlib.suppress(BaseException):
            await listener
