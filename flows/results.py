"""Read back the result a device subflow published on its run (a table artifact)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.utilities.asyncutils import run_coro_as_sync

__all__ = ["aread_device_result", "read_device_result"]


async def aread_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """Async form of `read_device_result`."""
    run_id = UUID(str(flow_run_id))
    async with get_client() as client:
        # The typed client joins empty flow/task-run filters (which drops flow-level
        # artifacts); ask the endpoint directly.
        response = await client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(run_id)]}, "type": {"any_": ["table"]}},
                "sort": "CREATED_DESC",
                "limit": 1,
                "offset": 0,
            },
        )
    artifacts = response.json()
    if not artifacts or not artifacts[0].get("data"):
        raise LookupError(f"flow run {run_id} published no device result")
    data = artifacts[0]["data"]
    if isinstance(data, str):
        data = json.loads(data)
    return {row["field"]: row["value"] for row in data}


def read_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """The result dict a device subflow run published (its table artifact).

    Raises:
        LookupError: the run has no result artifact (it failed before publishing one).
    """
    return run_coro_as_sync(aread_device_result(flow_run_id))
