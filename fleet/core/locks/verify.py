"""Lease checks: does a lease id hold a resort's lock right now (the agent's and a reservation's).

The device agent checks, on its device thread (sync client), that a motion run carries the lease
of the resort's current lock holder; a scheduler checks its reservation from async code.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import httpx

from fleet.core import prefect_adapter
from fleet.core.errors import LeaseError
from fleet.core.locks.holder import LockHolder, holder_from, holder_variable_name
from resort_common import names

__all__ = ["verify_lease", "verify_lease_sync"]


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


def verify_lease_sync(
    client: Any, resort: str, lease_id: str | None, *, renew: bool = True
) -> None:
    """Check that `lease_id` is live and is `resort`'s recorded lock holder (sync client).

    The check renews the lease for the holder's own lease duration: a live lease is extended as
    its holder would, a lease that expired or was released answers 404/410. With `renew=False`
    only the holder record is read (a release clears it before it frees the slot).

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
        holder = holder_from(variable.value if variable is not None else None)
    problem = _not_holder(resort, lease_id, holder)
    if problem is not None:
        raise problem
    assert lease_id is not None and holder is not None
    if not renew:
        return
    try:
        prefect_adapter.renew_lease_sync(client, UUID(lease_id), holder.lease_duration)
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
