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

__all__ = ["aread_device_result", "aread_sequence_result", "read_device_result"]


async def aread_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """Async form of `read_device_result`."""
    rows = await _latest_table(flow_run_id)
    if not rows:
        raise LookupError(f"flow run {flow_run_id} published no device result")
    return {row["field"]: row["value"] for row in rows}


async def _latest_table(flow_run_id: UUID | str) -> list[Any] | None:
    """The rows of the newest table artifact of the run (None when it has none)."""
    run_id = UUID(str(flow_run_id))
    only_this_run = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        type=ArtifactFilterType(any_=["table"]),
    )
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=only_this_run, sort=ArtifactSort.CREATED_DESC, limit=1
        )
    if not artifacts or artifacts[0].data is None:
        return None
    raw = artifacts[0].data
    rows: Any = json.loads(raw) if isinstance(raw, str) else raw
    return rows if isinstance(rows, list) else None


def read_device_result(flow_run_id: UUID | str) -> dict[str, Any]:
    """The result dict a device subflow run published (its table artifact).

    Raises:
        LookupError: the run has no result artifact (it failed before publishing one).
    """
    return run_sync(aread_device_result(flow_run_id))


async def aread_sequence_result(flow_run_id: UUID | str) -> list[dict[str, Any]]:
    """The step rows a `move-sequence` run published (`flows.sequence`), in step order.

    Raises:
        LookupError: the run published no rows (it ended before its first step was recorded).
    """
    rows = await _latest_table(flow_run_id)
    if rows is None:
        raise LookupError(f"flow run {flow_run_id} published no sequence result")
    return sorted((dict(row) for row in rows), key=lambda row: int(row["index"]))
