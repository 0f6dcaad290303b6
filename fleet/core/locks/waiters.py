"""This process's waiters for concurrency slots, in FIFO order per limit: `LocalWaiters`.

A release in this process wakes the next local waiter of the same limit at once, instead of
leaving it to its next poll. Waiters may sit on different event loops (threads): each is woken on
its own loop.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["PROCESS_WAITERS", "LocalWaiters", "Waiter"]


class Waiter:
    """One caller waiting for a slot, on the event loop it waits on."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()


class LocalWaiters:
    """The waiters of this process per limit name, head first; safe to use from any thread."""

    def __init__(self) -> None:
        self._queues: dict[str, list[Waiter]] = {}
        self._lock = threading.Lock()

    def join(self, name: str) -> Waiter:
        """Queue a new waiter (of the running event loop) for limit `name`."""
        waiter = Waiter()
        with self._lock:
            self._queues.setdefault(name, []).append(waiter)
        return waiter

    def leave(self, name: str, waiter: Waiter) -> bool:
        """Take `waiter` out of the queue of `name`; True when it was at the head."""
        with self._lock:
            queue = self._queues.get(name, [])
            was_head = bool(queue) and queue[0] is waiter
            if waiter in queue:
                queue.remove(waiter)
            if not queue:
                self._queues.pop(name, None)
        return was_head

    def is_head(self, name: str, waiter: Waiter) -> bool:
        """Whether `waiter` is the first in line for `name`."""
        with self._lock:
            queue = self._queues.get(name) or []
            return bool(queue) and queue[0] is waiter

    def wake_next(self, name: str) -> None:
        """Wake the first waiter for `name`, on its own loop (nothing when none waits)."""
        with self._lock:
            queue = self._queues.get(name) or []
            if queue:
                waiter = queue[0]
                waiter.loop.call_soon_threadsafe(waiter.event.set)


#: The registry shared by every caller in this process that does not hand its own: sharing it is
#: what lets a release by one caller (a reservation, a parent flow) wake a waiter of another.
PROCESS_WAITERS = LocalWaiters()
