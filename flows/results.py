"""Read back the result a device subflow published on its run (a table artifact)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
)
from prefect.client.schemas.sorting import ArtifactSort

from flows.prefect_adapter import run_sync

__all__ = ["aread_device_result", "read_device_result"]


async def aread_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """Async form of `read_device_result`."""
    run_id = UUID(str(flow_run_id))
    only_this_run = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        type=ArtifactFilterType(any_=["table"]),
    )
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=only_this_run, sort=ArtifactSort.CREATED_DESC, limit=1
        )
    if not artifacts or not artifacts[0].data:
        raise LookupError(f"flow run {run_id} published no device result")
    raw = artifacts[0].data
    rows: Any = json.loads(raw) if isinstance(raw, str) else raw
    return {row["field"]: row["value"] for row in rows}


def read_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """The result dict a device subflow run published (its table artifact).

    Raises:
        LookupError: the run has no result artifact (it failed before publishing one).
    """
    return run_sync(aread_device_result(flow_run_id))
