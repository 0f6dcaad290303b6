"""Free a resort lock whose slot is still counted after its lease is gone (`fleet unlock`).

A lock's slot is counted in Prefect's database; its lease lives in the lease storage (Redis with
several servers). Prefect's repossessor gives the slot back when the lease expires. A lease that
vanished without expiring (a Redis restarted without its data, PrefectHQ/prefect#17415) leaves
the slot counted for good, and the resort refuses every scheduler.

`unlock` frees such a slot and nothing else:

* a free lock is left alone;
* the recorded holder's lease is renewed as the agent's lease check does
  (`verify_lease`): a live lease (also one that expired but is not yet repossessed) is never
  touched, and the lock is reported as held;
* a lock counted with no holder record is freed only with `force` (a scheduler that was just
  granted the slot writes its record a moment later);
* just before freeing, the limit and the holder record are read again: if either changed, a new
  holder came in and nothing is freed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fleet.core import prefect_adapter
from fleet.core.errors import DeviceBusyError, LeaseError, ProvisionError
from fleet.core.locks.holder import LockHolder, holder_variable_name, read_holder
from fleet.core.locks.verify import verify_lease
from resort_common import names

__all__ = ["UnlockResult", "unlock"]

#: seconds between the decision and the second read (a new holder records itself within it)
SETTLE = 1.0


@dataclass(frozen=True)
class UnlockResult:
    """What `unlock` did to one resort's lock."""

    resort: str
    freed: bool
    message: str


async def _read(client: Any, resort: str) -> tuple[int, LockHolder | None]:
    from prefect.exceptions import ObjectNotFound

    name = names.lock_name(resort)
    try:
        limit = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        raise ProvisionError(
            f"lock {name} of {resort} does not exist: run `fleet provision` first"
        ) from None
    return int(limit.active_slots), await read_holder(resort)


async def unlock(resort: str, *, force: bool = False, settle: float = SETTLE) -> UnlockResult:
    """Free `resort`'s lock if its slot is counted but no live lease holds it.

    Raises:
        DeviceBusyError: the lock is held by a live lease, or (without `force`) it is counted
            with no holder record, or a new holder came in while checking; nothing was changed.
        ProvisionError: the resort's lock does not exist.
    """
    from prefect.client.orchestration import get_client

    name = names.lock_name(resort)
    async with get_client() as client:
        taken, holder = await _read(client, resort)
        if taken == 0:
            return UnlockResult(resort, False, f"{resort}: lock {name} is free; nothing to do")
        if holder is None or not holder.lease_id:
            if not force:
                raise DeviceBusyError(
                    f"{resort}: lock {name} is taken with no holder record (a scheduler may be "
                    "taking it right now); if none is, run again with --force"
                )
            gone = "no holder record"
        else:
            try:
                await verify_lease(resort, holder.lease_id)
            except LeaseError:
                gone = f"the lease of {holder.describe()} is gone"
            else:
                raise DeviceBusyError(
                    f"{resort}: lock {name} is held by {holder.describe()} with a live lease; it "
                    f"frees when released, or within {holder.lease_duration:g} s of its holder's "
                    "death"
                )
        await asyncio.sleep(settle)
        if await _read(client, resort) != (taken, holder):
            raise DeviceBusyError(
                f"{resort}: lock {name} changed hands while checking; nothing was freed"
            )
        await prefect_adapter.set_active_slots(client, name, 0)
        if holder is not None:
            from prefect.variables import Variable

            await Variable.aunset(holder_variable_name(resort))
    return UnlockResult(resort, True, f"{resort}: lock {name} freed ({gone})")
