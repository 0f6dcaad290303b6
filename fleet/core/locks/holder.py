"""The holder record of a resort lock: who holds it, kept in a Prefect variable next to the slot.

Prefect stores the lease holder (`{"type": "flow_run", "id": ...}`) in its lease storage but offers
no API to read it back for a global limit, so the holder is also recorded in a Prefect variable
(`holder_variable_name(resort)`): run id, run name, since, host, pid, lease id and duration. It is
written right after the slot is granted and cleared right before the slot is released, so a record
is only ever overwritten by the next holder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fleet.core.locks.lease import DEFAULT_LEASE_DURATION
from resort_common import names

__all__ = [
    "LockHolder",
    "clear_holder",
    "current_run",
    "holder_from",
    "holder_variable_name",
    "read_holder",
    "record_holder",
]

logger = logging.getLogger(__name__)


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


def current_run() -> tuple[str | None, str | None]:
    """Id and name of the flow run this code runs in, or (None, None) outside one."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None, None
    return str(ctx.flow_run.id), ctx.flow_run.name


def holder_from(value: Any) -> LockHolder | None:
    """The `LockHolder` a holder variable's value records; None when it is no such record."""
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


async def read_holder(resort: str, client: Any = None) -> LockHolder | None:
    """The recorded holder of `resort`'s lock (None when no record; it may be stale).

    `client`: an open `PrefectClient` (default: the run's, or a new one).
    """
    from prefect.client.utilities import get_or_create_client

    client, _ = get_or_create_client(client)
    variable = await client.read_variable_by_name(holder_variable_name(resort))
    return holder_from(variable.value if variable is not None else None)


async def record_holder(
    resort: str,
    lease_id: UUID,
    lease_duration: float,
    run_id: str | None,
    run_name: str | None,
    client: Any = None,
) -> None:
    """Record the new holder of `resort`'s lock (a failure is logged, never raised)."""
    from prefect.client.utilities import get_or_create_client

    from resort_common.variables import set_variable

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
        client, _ = get_or_create_client(client)
        # the record is deleted on release: create first, one request
        await set_variable(client, holder_variable_name(resort), record, likely_new=True)
    except Exception:  # the record only feeds error messages; never fail a lock over it
        logger.warning("could not record the holder of %s", resort, exc_info=True)


async def clear_holder(
    resort: str, lease_id: UUID, client: Any = None, *, own: bool = False
) -> None:
    """Clear `resort`'s holder record if lease `lease_id` still owns it (failures are logged).

    `own`: the caller knows no other lease can have recorded itself since (its lease is live:
    the slot was never free), so the record is deleted without reading it first.
    """
    from prefect.client.utilities import get_or_create_client
    from prefect.exceptions import ObjectNotFound

    try:
        client, _ = get_or_create_client(client)
        if not own:
            holder = await read_holder(resort, client)
            if holder is None or holder.lease_id != str(lease_id):
                return
        with contextlib.suppress(ObjectNotFound):
            await client.delete_variable_by_name(holder_variable_name(resort))
    except Exception:
        logger.warning("could not clear the holder record of %s", resort, exc_info=True)
