"""Resort locks: the resort's global concurrency limit slot, held with a renewed lease.

A parent flow takes `names.lock_name(resort)` (a Prefect global concurrency limit of 1, created by
provisioning) before it dispatches a motion to the resort and releases it after the resort is idle
again. Why not `prefect.concurrency.asyncio.concurrency` as is:

* Prefect's waiter sleeps for the server's `Retry-After` and is never woken when a slot frees
  (handoffs of up to ~13 s were measured). Here a waiter polls on its own bounded schedule
  (fast at first, at most `HEAD_POLL` s for the first waiter of this process, `TAIL_POLL` s for
  the others, which a local release wakes anyway), and a release in this process wakes the next
  local waiter at once (FIFO). A busy server (HTTP 429/5xx, transport errors) is retried until
  the timeout.
* A poll reads the limit and increments only when a slot looks free: a refused increment is a
  write on the server, and SQLite answers concurrent writes with 503s that Prefect's client retries
  after 2, 4, 8 s.
* A timeout must say who holds the resort. Prefect (3.8, 3.9) stores the lease holder
  (`{"type": "flow_run", "id": ...}`) in its lease storage but offers no API to read it back for a
  global limit, so the holder is also recorded in a Prefect variable
  (`holder_variable_name(resort)`): run id, run name, since, host, pid. It is written right after
  the slot is granted and cleared right before the slot is released, so a record is only ever
  overwritten by the next holder.
* A holder that keeps a resort past the fleet's `alerts.lock_held_after` reports it
  (`plate-resort.alert.lock-held.raised`, once) and reports the release
  (`...cleared`); only a live holder can keep the lock, so the holder is the one that knows.
* The lease (>= 60 s, Prefect's minimum) is renewed from a daemon thread. A crashed holder's slot
  frees when its lease expires (plus the server's repossessor loop, ~15 s). Leases survive a
  server restart only with filesystem (or Redis) lease storage on the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

from fleet.core.errors import DeviceBusyError, FleetError, LeaseError, ProvisionError
from fleet.core.lock_alert import HeldTooLong
from resort_common import names

__all__ = [
    "DEFAULT_LEASE_DURATION",
    "DEFAULT_LOCK_TIMEOUT",
    "HeldLock",
    "LockHolder",
    "acquire",
    "fleet_move_slot",
    "holder_variable_name",
    "read_holder",
    "release",
    "resort_lock",
    "verify_lease",
    "verify_lease_sync",
]

logger = logging.getLogger(__name__)

DEFAULT_LEASE_DURATION = 120.0
DEFAULT_LOCK_TIMEOUT = 300.0
MIN_LEASE_DURATION = 60.0  # Prefect rejects shorter leases (422)
FIRST_POLL = 0.05
HEAD_POLL = 0.5
TAIL_POLL = 3.0
_RENEW_ATTEMPTS = 3


def holder_variable_name(resort: str) -> str:
    """Prefect variable that records who holds `resort`'s lock (`fleet_lock__resort_a`)."""
    return names.lock_holder_variable_name(resort)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a resort lock, as recorded next to the slot."""

    run_id: str | None
    run_name: str | None
    since: str
    host: str
    pid: int
    lease_id: str
    lease_duration: float = DEFAULT_LEASE_DURATION

    def describe(self) -> str:
        """`run NAME (ID) since T` or `process PID on HOST since T` when outside a flow run."""
        if self.run_id:
            who = f"run {self.run_name} ({self.run_id})" if self.run_name else f"run {self.run_id}"
        else:
            who = f"process {self.pid} on {self.host}"
        return f"{who} since {self.since}"


@dataclass
class HeldLock:
    """A granted slot of one concurrency limit and its lease renewal thread."""

    name: str
    lease_id: UUID
    lease_duration: float
    acquired_at: float
    resort: str | None = None
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _held_alert: HeldTooLong | None = None

    def check(self) -> None:
        """Raise DeviceBusyError when the lease could not be renewed (the slot may be gone)."""
        if self.lost.is_set():
            raise DeviceBusyError(
                f"lock {self.name} was lost: its lease {self.lease_id} could not be renewed"
            )


# --- in-process waiters: a release wakes the next local waiter of the same limit at once -------


class _Waiter:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()


_waiters: dict[str, list[_Waiter]] = {}
_waiters_lock = threading.Lock()


def _wake_next(name: str) -> None:
    with _waiters_lock:
        queue = _waiters.get(name) or []
        if queue:
            waiter = queue[0]
            waiter.loop.call_soon_threadsafe(waiter.event.set)


def _is_head(name: str, waiter: _Waiter) -> bool:
    with _waiters_lock:
        queue = _waiters.get(name) or []
        return bool(queue) and queue[0] is waiter


# --- holder records -----------------------------------------------------------------------------


def _current_run() -> tuple[str | None, str | None]:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None, None
    return str(ctx.flow_run.id), ctx.flow_run.name


def _holder_from(value: Any) -> LockHolder | None:
    if not isinstance(value, dict):
        return None
    try:
        return LockHolder(
            run_id=value.get("run_id"),
            run_name=value.get("run_name"),
            since=str(value["since"]),
            host=str(value.get("host", "?")),
            pid=int(value.get("pid", 0)),
            lease_id=str(value.get("lease_id", "")),
            lease_duration=float(value.get("lease_duration") or DEFAULT_LEASE_DURATION),
        )
    except (KeyError, TypeError, ValueError):
        return None


async def read_holder(resort: str) -> LockHolder | None:
    """The recorded holder of `resort`'s lock (None when no record; it may be stale)."""
    from prefect.variables import Variable

    return _holder_from(await Variable.aget(holder_variable_name(resort), default=None))


async def _record_holder(
    resort: str, lease_id: UUID, lease_duration: float, run_id: str | None, run_name: str | None
) -> None:
    from prefect.variables import Variable

    record: dict[str, Any] = {
        "run_id": run_id,
        "run_name": run_name,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "lease_id": str(lease_id),
        "lease_duration": lease_duration,
    }
    try:
        await Variable.aset(holder_variable_name(resort), record, overwrite=True)
    except Exception:  # the record only feeds error messages; never fail a lock over it
        logger.warning("could not record the holder of %s", resort, exc_info=True)


async def _clear_holder(resort: str, lease_id: UUID) -> None:
    from prefect.variables import Variable

    try:
        holder = await read_holder(resort)
        if holder is not None and holder.lease_id == str(lease_id):
            await Variable.aunset(holder_variable_name(resort))
    except Exception:
        logger.warning("could not clear the holder record of %s", resort, exc_info=True)


# --- lease renewal ------------------------------------------------------------------------------


def _renewal_loop(lock: HeldLock) -> None:
    from prefect.client.orchestration import get_client

    interval = lock.lease_duration / 3
    with get_client(sync_client=True) as client:
        while not lock._stop.wait(interval):
            for attempt in range(_RENEW_ATTEMPTS):
                try:
                    client.renew_concurrency_lease(
                        lease_id=lock.lease_id, lease_duration=lock.lease_duration
                    )
                    break
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code in (404, 410):
                        logger.error("lease %s of %s is gone; lock lost", lock.lease_id, lock.name)
                        lock.lost.set()
                        return
                    err: Exception = exc
                except Exception as exc:
                    err = exc
                if attempt == _RENEW_ATTEMPTS - 1:
                    logger.error("renewing lease of %s failed: %s; lock lost", lock.name, err)
                    lock.lost.set()
                    return
                if lock._stop.wait(min(2.0**attempt, 10.0)):
                    return


def _start_renewal(lock: HeldLock) -> None:
    thread = threading.Thread(
        target=_renewal_loop, args=(lock,), name=f"lease-{lock.name}", daemon=True
    )
    lock._thread = thread
    thread.start()


# --- acquire / release --------------------------------------------------------------------------


def is_transient_server_error(exc: BaseException) -> bool:
    """Whether `exc` is an overloaded or briefly unreachable server (worth a bounded retry).

    429 and 5xx answers (SQLite answers lock conflicts with 503) and transport errors are; other
    HTTP errors (404, 409, 422 ...) are not.
    """
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code == 429 or code >= 500
    return isinstance(exc, httpx.TransportError)


async def _try_increment(
    client: Any, name: str, lease_duration: float, run_id: str | None
) -> UUID | None:
    """One attempt: the lease id, or None when the slot is taken (423)."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse

    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None
    try:
        response = await client.increment_concurrency_slots_with_lease(
            names=[name],
            slots=1,
            mode="concurrency",
            lease_duration=lease_duration,
            holder=holder,
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
    granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
    if not granted.limits:
        raise ProvisionError(
            f"concurrency limit {name!r} does not exist; run `fleet provision` first"
        )
    return granted.lease_id


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
) -> HeldLock:
    """Take one slot of the concurrency limit `name`, waiting up to `timeout` seconds.

    Args:
        name: the global concurrency limit (e.g. `names.lock_name("resort-a")`).
        timeout: seconds to wait for the slot.
        lease_duration: lease length in seconds (>= 60); renewed every third of it.
        resort: when set, the holder is recorded for busy messages (resort locks).
        client: an open `PrefectClient` (default: a new one).
        held_alert_after: with `resort`: report the lock when held longer (seconds).

    Raises:
        DeviceBusyError: not granted within `timeout` (names the current holder for a resort).
        ProvisionError: the limit does not exist.
    """
    if lease_duration < MIN_LEASE_DURATION:
        raise ValueError(f"lease_duration must be >= {MIN_LEASE_DURATION:g} s (Prefect minimum)")
    if client is None:
        from prefect.client.orchestration import get_client

        async with get_client() as own:
            return await acquire(
                name,
                timeout=timeout,
                lease_duration=lease_duration,
                resort=resort,
                client=own,
                held_alert_after=held_alert_after,
            )

    run_id, run_name = _current_run()
    start = time.monotonic()
    deadline = start + timeout
    waiter = _Waiter()
    with _waiters_lock:
        _waiters.setdefault(name, []).append(waiter)
    delay = FIRST_POLL
    lease_id: UUID | None = None
    attempt = True  # first round, or woken by a local release: try to take it at once
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
                raise await _busy_error(name, resort, time.monotonic() - start)
            cap = HEAD_POLL if _is_head(name, waiter) else TAIL_POLL
            delay = min(delay * 1.6, cap)
            sleep = min(remaining, delay * random.uniform(0.8, 1.2))
            with suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), sleep)
    finally:
        with _waiters_lock:
            queue = _waiters.get(name, [])
            was_head = bool(queue) and queue[0] is waiter
            if waiter in queue:
                queue.remove(waiter)
            if not queue:
                _waiters.pop(name, None)
        if lease_id is None and was_head:
            _wake_next(name)  # do not swallow a wake-up meant for whoever is next

    held = HeldLock(
        name=name,
        lease_id=lease_id,
        lease_duration=lease_duration,
        acquired_at=time.monotonic(),
        resort=resort,
    )
    _start_renewal(held)
    if resort is not None and held_alert_after is not None:
        held._held_alert = HeldTooLong(resort, held_alert_after, run_id, run_name)
    logger.debug("acquired %s after %.3f s", name, time.monotonic() - start)
    if resort is not None:
        await _record_holder(resort, lease_id, lease_duration, run_id, run_name)
        logger.debug("recorded holder of %s at %.3f s", name, time.monotonic() - start)
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
        from prefect.client.orchestration import get_client

        async with get_client() as own:
            await release(lock, client=own)
            return
    lock._stop.set()
    if lock._held_alert is not None:
        lock._held_alert.end()
    if lock.resort is not None:
        await _clear_holder(lock.resort, lock.lease_id)
    try:
        await client.release_concurrency_slots_with_lease(lease_id=lock.lease_id)
    except httpx.HTTPStatusError as exc:
        logger.warning("releasing %s returned HTTP %s", lock.name, exc.response.status_code)
    finally:
        _wake_next(lock.name)
    logger.debug("released %s after %.3f s", lock.name, time.monotonic() - lock.acquired_at)


# --- lease checks: the agent's (sync, on its device thread) and a reservation's (async) -----------


def _not_holder(resort: str, lease_id: str | None, holder: LockHolder | None) -> LeaseError | None:
    lock = names.lock_name(resort)
    if not lease_id:
        return LeaseError(
            f"no lease of lock {lock}: motion and maintenance runs on {resort} must come from a "
            "parent flow that holds the resort's lock (`fleet activate ...`, FleetClient, the "
            "fleet-* deployments) or carry the lease id of a reservation as parameter `lease`"
        )
    if holder is None or holder.lease_id != lease_id:
        who = holder.describe() if holder is not None else "nobody"
        return LeaseError(
            f"lease {lease_id} does not hold lock {lock}: its current holder is {who}"
        )
    return None


def _lease_gone(resort: str, lease_id: str, exc: httpx.HTTPStatusError) -> LeaseError:
    return LeaseError(
        f"lease {lease_id} of lock {names.lock_name(resort)} has expired or was released "
        f"(HTTP {exc.response.status_code}): its holder is gone"
    )


def verify_lease_sync(client: Any, resort: str, lease_id: str | None) -> None:
    """Check that `lease_id` is live and is `resort`'s recorded lock holder (sync client).

    The check renews the lease for the holder's own lease duration: a live lease is extended as
    its holder would, a lease that expired or was released answers 404/410.

    Raises:
        LeaseError: no lease, another holder, or the lease is gone.
    """
    from prefect.exceptions import ObjectNotFound

    holder = None
    if lease_id:
        try:
            variable = client.read_variable_by_name(holder_variable_name(resort))
        except ObjectNotFound:
            variable = None
        holder = _holder_from(variable.value if variable is not None else None)
    problem = _not_holder(resort, lease_id, holder)
    if problem is not None:
        raise problem
    assert lease_id is not None and holder is not None
    try:
        client.renew_concurrency_lease(
            lease_id=UUID(lease_id), lease_duration=holder.lease_duration
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in (404, 410):
            raise _lease_gone(resort, lease_id, exc) from None
        raise


async def verify_lease(resort: str, lease_id: str | None) -> None:
    """`verify_lease_sync` from async code (a scheduler checking its reservation).

    Raises:
        LeaseError: no lease, another holder, or the lease is gone.
    """
    from prefect.client.orchestration import get_client

    def check() -> None:
        with get_client(sync_client=True) as client:
            verify_lease_sync(client, resort, lease_id)

    await asyncio.to_thread(check)  # copies the context: the same API settings


def abandon(lock: HeldLock) -> None:
    """Stop renewing without releasing: the slot frees when its lease runs out.

    Used when the resort could not be confirmed idle (a crashed device run may still be moving).
    """
    lock._stop.set()
    if lock._held_alert is not None:
        lock._held_alert.end("left to expire with its lease")
    logger.warning(
        "left %s to expire with its lease (%.0f s): resort not confirmed idle",
        lock.name,
        lock.lease_duration,
    )


@asynccontextmanager
async def resort_lock(
    resort: str,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    lease_duration: float = DEFAULT_LEASE_DURATION,
    held_alert_after: float | None = None,
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
    )
    try:
        yield held
    finally:
        await asyncio.shield(release(held))


@asynccontextmanager
async def fleet_move_slot(
    inventory: Any,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    lease_duration: float = DEFAULT_LEASE_DURATION,
) -> AsyncIterator[HeldLock | None]:
    """Hold one slot of the fleet-wide move limit when the inventory sets one, else nothing."""
    if getattr(inventory.fleet, "max_concurrent_moves", None) is None:
        yield None
        return
    held = await acquire(
        names.fleet_limit_name(inventory), timeout=timeout, lease_duration=lease_duration
    )
    try:
        yield held
    finally:
        await asyncio.shield(release(held))
