"""Release events: a holder in one process wakes the waiters of other processes at once.

Prefect offers no wake-up when a concurrency slot frees (issue #23183): a waiter in another
process would only see the slot free at its next poll. So a release posts an event
(`RELEASED_EVENT`, resource `plate-resort.lock.<lock name>`) once the slot is free, and a waiter
that found the lock taken subscribes to it for as long as it waits: the event wakes its next
attempt. Both are best effort: a lost event, or a release before the subscription was up, costs
the waiter its next poll (`slots.HEAD_POLL`), never the lock's safety.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from fleet.core import prefect_adapter

__all__ = ["RELEASED_EVENT", "ReleaseWatch", "announce_release", "lock_resource_id"]

logger = logging.getLogger(__name__)

#: the event a release posts once the slot is free
RELEASED_EVENT = "plate-resort.lock.released"
#: seconds a release waits for its event to be accepted
POST_TIMEOUT = 2.0


def lock_resource_id(name: str) -> str:
    """The event resource of lock `name` (`plate-resort.lock.resort:resort-a`)."""
    return f"plate-resort.lock.{name}"


async def announce_release(client: Any, name: str) -> None:
    """Post `RELEASED_EVENT` for lock `name` (bounded; a failure is only logged)."""
    from prefect.events import Event

    event = Event(event=RELEASED_EVENT, resource={"prefect.resource.id": lock_resource_id(name)})
    try:
        async with asyncio.timeout(POST_TIMEOUT):
            await prefect_adapter.post_events(client, [event])
    except Exception as exc:
        logger.debug("could not announce the release of %s: %s", name, exc)


class ReleaseWatch:
    """Sets `wake` whenever lock `name` is released, from `start` until `stop` (a subscription).

    Args:
        name: the lock (global concurrency limit) name.
        wake: the waiter's event, set on each release event.
    """

    def __init__(self, name: str, wake: asyncio.Event) -> None:
        self.name = name
        self.wake = wake
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Subscribe in the background (nothing when already started)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        event_filter = EventFilter(
            event=EventNameFilter(name=[RELEASED_EVENT]),
            resource=EventResourceFilter(id=[lock_resource_id(self.name)]),
        )
        since = datetime.datetime.now(datetime.UTC)
        try:
            async with prefect_adapter.events_subscriber(
                event_filter, reconnection_attempts=1
            ) as subscriber:
                async for event in subscriber:
                    if event.occurred >= since:  # the subscriber replays recent events first
                        self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # polling goes on
            logger.debug("release subscription of %s ended: %s", self.name, exc)

    def stop(self) -> None:
        """End the subscription (its websocket closes in the background: a granted waiter goes
        on at once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            _closing.add(task)
            task.add_done_callback(_closing.discard)


#: subscriptions being closed (kept referenced until done)
_closing: set[asyncio.Task[None]] = set()
