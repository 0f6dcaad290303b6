"""Resort locks: the resort's global concurrency limit slot, held with a renewed lease.

A parent flow takes `names.lock_name(resort)` (a Prefect global concurrency limit of 1, created by
provisioning) before it dispatches a motion to the resort and releases it after the resort is idle
again. Why not `prefect.concurrency.asyncio.concurrency` as is:

* Prefect's waiter sleeps for the server's `Retry-After` and is never woken when a slot frees.
  Here a waiter polls on its own bounded schedule, a release in this process wakes the next
  local waiter at once (`slots`, `waiters`), and a release posts an event that wakes the first
  waiter of every other process (`release_events`).
* A timeout must say who holds the resort, and Prefect cannot tell: the holder is recorded in a
  Prefect variable next to the slot (`holder`).
* A holder that keeps a resort past the fleet's `alerts.lock_held_after` reports it
  (`plate-resort.alert.lock-held.raised`, once) and reports the release (`...cleared`); only a
  live holder can keep the lock, so the holder is the one that knows (`fleet.core.lock_alert`).
* The lease is renewed from a daemon thread; a crashed holder's slot frees when it expires
  (`lease`). Device runs check that they carry the holder's lease (`verify`).

Modules: `slots` (acquire, release, the context managers), `lease` (`HeldLock`, renewal),
`holder` (the holder record), `waiters` (this process's waiters), `release_events` (the release
event and its subscription), `waiting` (waiters' announcements), `verify` (lease checks),
`unlock` (an operator's repair of a slot whose lease is gone).
"""

from __future__ import annotations

from fleet.core.locks.holder import LockHolder, holder_variable_name, read_holder
from fleet.core.locks.lease import DEFAULT_LEASE_DURATION, HeldLock, abandon
from fleet.core.locks.slots import (
    DEFAULT_LOCK_TIMEOUT,
    acquire,
    fleet_move_slot,
    is_transient_server_error,
    release,
    resort_lock,
)
from fleet.core.locks.unlock import UnlockResult, unlock
from fleet.core.locks.verify import verify_lease, verify_lease_sync
from fleet.core.locks.waiters import PROCESS_WAITERS, LocalWaiters

__all__ = [
    "DEFAULT_LEASE_DURATION",
    "DEFAULT_LOCK_TIMEOUT",
    "PROCESS_WAITERS",
    "HeldLock",
    "LocalWaiters",
    "LockHolder",
    "UnlockResult",
    "abandon",
    "acquire",
    "fleet_move_slot",
    "holder_variable_name",
    "is_transient_server_error",
    "read_holder",
    "release",
    "resort_lock",
    "unlock",
    "verify_lease",
    "verify_lease_sync",
]
