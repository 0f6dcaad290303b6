"""Writing and reading the Prefect variables the fleet keeps its shared documents in.

Both sides use them: the agent publishes its status and reads the e-stop latch, the control plane
writes the latch and reads the status. Names come from `resort_common.names`.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

__all__ = ["read_json_variable", "set_variable"]


async def set_variable(client: PrefectClient, name: str, value: Any) -> None:
    """Create or overwrite the variable `name` with `value` (a JSON-able value).

    Update first (the common case: the variable exists), create when it does not, and update
    again when another writer created it in between.
    """
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


async def read_json_variable(client: PrefectClient, name: str) -> dict[str, Any]:
    """The variable `name` as a dict: `{}` when unset, or not a JSON object."""
    variable = await client.read_variable_by_name(name)
    value = variable.value if variable is not None else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}
