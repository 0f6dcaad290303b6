"""Writing the Prefect variables the fleet keeps its shared documents in.

Both sides write them: the agent its status, the control plane the e-stop latch. Readers parse
them with `resort_common.documents`. Names come from `resort_common.names`.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

__all__ = ["set_variable"]


async def set_variable(
    client: PrefectClient, name: str, value: Any, *, likely_new: bool = False
) -> None:
    """Create or overwrite the variable `name` with `value` (a JSON-able value).

    Update first (the common case: the variable exists), create when it does not, and update
    again when another writer created it in between. `likely_new`: create first (a record its
    writer deletes after use), one request when it is indeed absent.
    """
    if likely_new:
        try:
            await client.create_variable(VariableCreate(name=name, value=value))
            return
        except ObjectAlreadyExists:
            pass
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:
                raise
    try:
        await client.update_variable(VariableUpdate(name=name, value=value))
        return
    except ObjectNotFound:
        pass
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
    try:
        await client.create_variable(VariableCreate(name=name, value=value))
    except ObjectAlreadyExists:
        await client.update_variable(VariableUpdate(name=name, value=value))
