"""Waiting announcements: a scheduler waiting for a resort's lock says so next to the slot.

A batch keeps a resort's lock across its consecutive operations on that resort (`flows.pipeline`)
and yields it, after the operation under way, when somebody else is waiting. Prefect cannot tell
a holder that others wait (a waiter polls; nothing reaches the holder), so a waiter announces
itself in a Prefect variable (`names.lock_waiting_variable_name`): its own id and the time its
announcement lapses. It renews the announcement while it waits (every `RENEW_EVERY` s) and
withdraws it once granted; an announcement its waiter stopped renewing (a killed process) lapses
after `ANNOUNCEMENT_TTL` s. The holder's question, `someone_waiting`, is one read.

Announcing is best effort: a failed write only costs the waiter the batch's courtesy (it then
gets the resort when the batch's run of operations ends), never the lock's safety.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from resort_common import names

__all__ = [
    "ANNOUNCEMENT_TTL",
    "RENEW_EVERY",
    "Announcement",
    "someone_waiting",
    "someone_waiting_sync",
]

logger = logging.getLogger(__name__)

#: seconds an announcement stays valid without renewal
ANNOUNCEMENT_TTL = 10.0
#: seconds between two renewals of a waiter's announcement
RENEW_EVERY = ANNOUNCEMENT_TTL / 2


class Announcement:
    """One waiter's announcement for one resort: `renew_if_due` while waiting, then `withdraw`."""

    def __init__(self, resort: str) -> None:
        self.resort = resort
        self.waiter_id = uuid.uuid4().hex
        self._renewed_at: float | None = None

    @property
    def variable(self) -> str:
        """The Prefect variable of the announcement."""
        return names.lock_waiting_variable_name(self.resort)

    async def renew_if_due(self, client: Any = None) -> None:
        """Write the announcement when it was never written or is due for renewal.

        `client`: an open `PrefectClient` (default: the run's, or a new one).
        """
        from prefect.client.utilities import get_or_create_client

        from resort_common.variables import set_variable

        now = time.monotonic()
        if self._renewed_at is not None and now - self._renewed_at < RENEW_EVERY:
            return
        first, self._renewed_at = self._renewed_at is None, now
        value = {"waiter": self.waiter_id, "until": time.time() + ANNOUNCEMENT_TTL}
        try:
            client, _ = get_or_create_client(client)
            await set_variable(client, self.variable, value, likely_new=first)
        except Exception:
            logger.debug("could not announce waiting for %s", self.resort, exc_info=True)

    async def withdraw(self, client: Any = None) -> None:
        """Remove the announcement if it is still this waiter's (nothing when never written)."""
        if self._renewed_at is None:
            return
        from prefect.client.utilities import get_or_create_client

        try:
            client, _ = get_or_create_client(client)
            current = await _read(self.resort, client)
            if isinstance(current, dict) and current.get("waiter") == self.waiter_id:
                await client.delete_variable_by_name(self.variable)
        except Exception:
            logger.debug("could not withdraw the announcement for %s", self.resort, exc_info=True)

    def withdraw_soon(self) -> None:
        """`withdraw` in the background (nothing when never written): a granted waiter need not
        wait for its cleanup. A withdrawal cut short (the event loop ends) lapses by itself."""
        if self._renewed_at is None:
            return
        task = asyncio.ensure_future(self.withdraw())
        _withdrawals.add(task)
        task.add_done_callback(_withdrawals.discard)


#: withdrawals under way (kept referenced until done)
_withdrawals: set[asyncio.Future[None]] = set()


def is_live(value: Any, now: float | None = None) -> bool:
    """Whether an announcement variable's value is a live announcement."""
    if not isinstance(value, dict):
        return False
    try:
        until = float(value["until"])
    except (KeyError, TypeError, ValueError):
        return False
    return until > (time.time() if now is None else now)


async def someone_waiting(resort: str, client: Any = None) -> bool:
    """Whether a live announcement says somebody waits for `resort`'s lock (False when unsure)."""
    try:
        value = await _read(resort, client)
    except Exception:
        logger.debug("could not read who waits for %s", resort, exc_info=True)
        return False
    return is_live(value)


async def _read(resort: str, client: Any = None) -> Any:
    """The value of `resort`'s announcement variable (None when there is none)."""
    from prefect.client.utilities import get_or_create_client

    client, _ = get_or_create_client(client)
    variable = await client.read_variable_by_name(names.lock_waiting_variable_name(resort))
    return variable.value if variable is not None else None


def someone_waiting_sync(client: Any, resort: str) -> bool:
    """`someone_waiting` with a sync client (the agent's device thread); False when unsure."""
    try:
        variable = client.read_variable_by_name(names.lock_waiting_variable_name(resort))
    except Exception:
        logger.debug("could not read who waits for %s", resort, exc_info=True)
        return False
    return is_live(variable.value if variable is not None else None)
