"""Taking and giving back a slot of a concurrency limit: `acquire`, `release`, `resort_lock`.

A waiter polls on its own bounded schedule (fast at first, at most `HEAD_POLL` s for the first
waiter of this process, `TAIL_POLL` s for the others, which a local release wakes anyway), a
release in this process wakes the next local waiter at once (FIFO, `LocalWaiters`), and a release
in another process wakes the first waiter here through its release event (`release_events`). A
busy server (HTTP 429/5xx, transport errors) is retried until the timeout. A poll reads the limit
and increments only when a slot looks free: a refused increment is a write on the server, and SQLite
answers concurrent writes with 503s that Prefect's client retries after 2, 4, 8 s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx

from fleet.core import prefect_adapter
from fleet.core.errors import DeviceBusyError, FleetError, ProvisionError
from fleet.core.lock_alert import HeldTooLong
from fleet.core.locks.holder import clear_holder, current_run, read_holder, record_holder
from fleet.core.locks.lease import (
    DEFAULT_LEASE_DURATION,
    MIN_LEASE_DURATION,
    HeldLock,
    start_renewal,
)
from fleet.core.locks.release_events import ReleaseWatch, announce_release
from fleet.core.locks.waiters import PROCESS_WAITERS, LocalWaiters
from fleet.core.locks.waiting import Announcement
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "acquire",
    "fleet_move_slot",
    "is_transient_server_error",
    "release",
    "resort_lock",
]

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 300.0
FIRST_POLL = 0.05
HEAD_POLL = 0.1
TAIL_POLL = 3.0


def is_transient_server_error(exc: BaseException) -> bool:
    """Whether `exc` is an overloaded or briefly unreachable server (worth a bounded retry).

    429 and 5xx answers (SQLite answers lock conflicts with 503) and transport errors are; other
    HTTP errors (404, 409, 422 ...) are not.
    """
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code == 429 or code >= 500
    return isinstance(exc, httpx.TransportError)


@asynccontextmanager
async def _api_client() -> AsyncIterator[Any]:
    """The calling flow run's API client (warm: no new connection), else a new one."""
    from prefect.client.utilities import get_or_create_client

    found, inferred = get_or_create_client()
    if inferred:
        yield found
        return
    async with found as own:
        yield own


async def _try_increment(
    client: Any, name: str, lease_duration: float, run_id: str | None
) -> UUID | None:
    """One attempt: the lease id, or None when the slot is taken (423)."""
    try:
        lease_id = await prefect_adapter.increment_slot_with_lease(
            client, name, lease_duration, run_id
        )
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        if code == 423:
            return None
        if is_transient_server_error(exc):  # an overloaded server: retry until the deadline
            logger.debug("acquiring %s: HTTP %s, retrying", name, code)
            return None
        raise FleetError(f"acquiring lock {name} failed: HTTP {code}") from exc
    except httpx.TransportError as exc:
        logger.debug("acquiring %s: %s, retrying", name, exc)
        return None
    if lease_id is None:
        raise ProvisionError(
            f"concurrency limit {name!r} does not exist; run `fleet provision` first"
        )
    return lease_id


async def _looks_free(client: Any, name: str) -> bool:
    """Whether the limit shows a free slot right now (a read; True when unsure)."""
    try:
        limit = await client.read_global_concurrency_limit_by_name(name)
    except Exception:
        return True
    return int(limit.active_slots) < int(limit.limit)


async def acquire(
    name: str,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    lease_duration: float = DEFAULT_LEASE_DURATION,
    resort: str | None = None,
    client: Any = None,
    held_alert_after: float | None = None,
    waiters: LocalWaiters = PROCESS_WAITERS,
) -> HeldLock:
    """Take one slot of the concurrency limit `name`, waiting up to `timeout` seconds.

    Args:
        name: the global concurrency limit (e.g. `names.lock_name("resort-a")`).
        timeout: seconds to wait for the slot.
        lease_duration: lease length in seconds (>= 60); renewed every third of it.
        resort: when set, the holder is recorded for busy messages (resort locks).
        client: an open `PrefectClient` (default: a new one).
        held_alert_after: with `resort`: report the lock when held longer (seconds).
        waiters: this process's waiters to queue among (and to wake on release).

    Raises:
        DeviceBusyError: not granted within `timeout` (names the current holder for a resort).
        ProvisionError: the limit does not exist.
    """
    if lease_duration < MIN_LEASE_DURATION:
        raise ValueError(f"lease_duration must be >= {MIN_LEASE_DURATION:g} s (Prefect minimum)")
    if client is None:
        async with _api_client() as own:
            return await acquire(
                name,
                timeout=timeout,
                lease_duration=lease_duration,
                resort=resort,
                client=own,
                held_alert_after=held_alert_after,
                waiters=waiters,
            )

    run_id, run_name = current_run()
    start = time.monotonic()
    deadline = start + timeout
    waiter = waiters.join(name)
    delay = FIRST_POLL
    lease_id: UUID | None = None
    attempt = True  # first round, or woken by a local release: try to take it at once
    # a resort's waiter announces itself, so a batch keeping the resort yields it (`waiting`)
    announcement = Announcement(resort) if resort is not None else None
    watch: ReleaseWatch | None = None
    try:
        while True:
            woken = waiter.event.is_set()
            waiter.event.clear()
            # A refused increment is a write on the server (denied-slot bookkeeping) and SQLite
            # serialises writes, so a poll reads the limit first and increments only when free.
            if attempt or woken or await _looks_free(client, name):
                lease_id = await _try_increment(client, name, lease_duration, run_id)
                if lease_id is not None:
                    break
            attempt = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if announcement is not None:
                    await announcement.withdraw(client)
                raise await _busy_error(name, resort, time.monotonic() - start)
            if announcement is not None:
                await announcement.renew_if_due(client)
            head = waiters.is_head(name, waiter)
            if head and watch is None:  # the first in line here is woken by other processes too
                watch = ReleaseWatch(name, waiter.event)
                watch.start()
            cap = HEAD_POLL if head else TAIL_POLL
            delay = min(delay * 1.6, cap)
            sleep = min(remaining, delay * random.uniform(0.8, 1.2))
            with suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), sleep)
    finally:
        if watch is not None:
            watch.stop()
        was_head = waiters.leave(name, waiter)
        if lease_id is None and was_head:
            waiters.wake_next(name)  # do not swallow a wake-up meant for whoever is next

    held = HeldLock(
        name=name,
        lease_id=lease_id,
        lease_duration=lease_duration,
        acquired_at=time.monotonic(),
        waiters=waiters,
        resort=resort,
    )
    start_renewal(held)
    if resort is not None and held_alert_after is not None:
        held.held_alert = HeldTooLong(resort, held_alert_after, run_id, run_name)
    logger.debug("acquired %s after %.3f s", name, time.monotonic() - start)
    if resort is not None:
        try:
            await record_holder(resort, lease_id, lease_duration, run_id, run_name, client)
        except BaseException:  # cancelled while recording: give the slot back, never leak it
            await asyncio.shield(release(held, client=client))
            raise
        logger.debug("recorded holder of %s at %.3f s", name, time.monotonic() - start)
    if announcement is not None:  # after the record: it would compete with it for the server
        announcement.withdraw_soon()  # cleanup on a client of its own: the grant goes on
    return held


async def _busy_error(name: str, resort: str | None, waited: float) -> DeviceBusyError:
    label = resort or name
    holder = None
    if resort is not None:
        try:
            holder = await read_holder(resort)
        except Exception:
            holder = None
    who = holder.describe() if holder else "an unrecorded holder"
    return DeviceBusyError(f"resort busy: {label} held by {who} (waited {waited:.0f} s)")


async def release(lock: HeldLock, *, client: Any = None) -> None:
    """Clear the holder record, stop renewing and give the slot back (idempotent)."""
    if client is None:
        async with _api_client() as own:
            await release(lock, client=own)
            return
    alive = not lock.lost.is_set() and not lock.stopped.is_set()
    lock.stop_renewal()
    if lock.resort is not None:  # a live lease's record can only be its own: no read first
        await clear_holder(lock.resort, lock.lease_id, client, own=alive)
    freed = False
    try:
        await prefect_adapter.release_lease(client, lock.lease_id)
        freed = True
    except httpx.HTTPStatusError as exc:
        logger.warning("releasing %s returned HTTP %s", lock.name, exc.response.status_code)
    finally:
        lock.waiters.wake_next(lock.name)
    if freed and alive:
        await announce_release(client, lock.name)  # wakes the waiters of other processes
    logger.debug("released %s after %.3f s", lock.name, time.monotonic() - lock.acquired_at)


@asynccontextmanager
async def resort_lock(
    resort: str,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    lease_duration: float = DEFAULT_LEASE_DURATION,
    held_alert_after: float | None = None,
    waiters: LocalWaiters = PROCESS_WAITERS,
) -> AsyncIterator[HeldLock]:
    """Hold `resort`'s lock for the body; released on exit, even on error or cancellation.

    `held_alert_after`: report the lock when held longer (seconds; `fleet.alerts`).
    """
    held = await acquire(
        names.lock_name(resort),
        timeout=timeout,
        lease_duration=lease_duration,
        resort=resort,
        held_alert_after=held_alert_after,
        waiters=waiters,
    )
    try:
        yield held
    finally:
        await asyncio.shield(release(held))


@asynccontextmanager
async def fleet_move_slot(
    inventory: Inventory,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    lease_duration: float = DEFAULT_LEASE_DURATION,
    waiters: LocalWaiters = PROCESS_WAITERS,
) -> AsyncIterator[HeldLock | None]:
    """Hold one slot of the fleet-wide move limit when the inventory sets one, else nothing."""
    if getattr(inventory.fleet, "max_concurrent_moves", None) is None:
        yield None
        return
    held = await acquire(
        names.fleet_limit_name(inventory),
        timeout=timeout,
        lease_duration=lease_duration,
        waiters=waiters,
    )
    try:
        yield held
    finally:
        await asyncio.shield(release(held))
