"""A granted slot and its lease: `HeldLock`, the renewal thread, and leaving a lease to expire.

The lease (>= 60 s, Prefect's minimum) is renewed every third of its duration from a daemon
thread. A crashed holder's slot frees when its lease expires (plus the server's repossessor loop,
~15 s). Leases survive a server restart only with filesystem (or Redis) lease storage on the
server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

import httpx

from fleet.core import prefect_adapter
from fleet.core.errors import DeviceBusyError

if TYPE_CHECKING:
    from fleet.core.lock_alert import HeldTooLong
    from fleet.core.locks.waiters import LocalWaiters

__all__ = [
    "DEFAULT_LEASE_DURATION",
    "MIN_LEASE_DURATION",
    "HeldLock",
    "abandon",
    "start_renewal",
]

logger = logging.getLogger(__name__)

DEFAULT_LEASE_DURATION = 120.0
MIN_LEASE_DURATION = 60.0  # Prefect rejects shorter leases (422)
_RENEW_ATTEMPTS = 3


@dataclass
class HeldLock:
    """A granted slot of one concurrency limit and its lease renewal thread.

    `waiters` is the registry of this process's waiters the slot was taken through; its release
    wakes the next of them.
    """

    name: str
    lease_id: UUID
    lease_duration: float
    acquired_at: float
    waiters: LocalWaiters
    resort: str | None = None
    lost: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    held_alert: HeldTooLong | None = None
    _thread: threading.Thread | None = None

    def check(self) -> None:
        """Raise DeviceBusyError when the lease could not be renewed (the slot may be gone)."""
        if self.lost.is_set():
            raise DeviceBusyError(
                f"lock {self.name} was lost: its lease {self.lease_id} could not be renewed"
            )

    def stop_renewal(self, how: str = "released") -> None:
        """Stop renewing the lease and end its held-too-long report (`how` it ended)."""
        self.stopped.set()
        if self.held_alert is not None:
            self.held_alert.end(how)


def _renewal_loop(lock: HeldLock) -> None:
    from prefect.client.orchestration import get_client

    interval = lock.lease_duration / 3
    with get_client(sync_client=True) as client:
        while not lock.stopped.wait(interval):
            for attempt in range(_RENEW_ATTEMPTS):
                try:
                    prefect_adapter.renew_lease_sync(client, lock.lease_id, lock.lease_duration)
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
                if lock.stopped.wait(min(2.0**attempt, 10.0)):
                    return


def start_renewal(lock: HeldLock) -> None:
    """Renew `lock`'s lease from a daemon thread until `lock.stop_renewal()`."""
    thread = threading.Thread(
        target=_renewal_loop, args=(lock,), name=f"lease-{lock.name}", daemon=True
    )
    lock._thread = thread
    thread.start()


def abandon(lock: HeldLock) -> None:
    """Stop renewing without releasing: the slot frees when its lease runs out.

    Used when the resort could not be confirmed idle (a crashed device run may still be moving).
    """
    lock.stop_renewal("left to expire with its lease")
    logger.warning(
        "left %s to expire with its lease (%.0f s): resort not confirmed idle",
        lock.name,
        lock.lease_duration,
    )
