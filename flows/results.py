"""Read back the result a device subflow published on its run (a table artifact)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.utilities.asyncutils import run_coro_as_sync

__all__ = ["aread_device_result", "read_device_result"]


async def aread_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """Async form of `read_device_result`."""
    run_id = UUID(str(flow_run_id))
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    tables = [a for a in artifacts if a.type == "table" and a.data]
    if not tables:
        raise LookupError(f"flow run {run_id} published no device result")
    latest = max(tables, key=lambda a: a.created or 0)
    data = latest.data
    if isinstance(data, str):
        import json

        data = json.loads(data)
    return {row["field"]: row["value"] for row in data}


def read_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """The result dict a device subflow run published (its table artifact).

    Raises:
        LookupError: the run has no result artifact (it failed before publishing one).
    """
    return run_coro_as_sync(aread_device_result(flow_run_id))
