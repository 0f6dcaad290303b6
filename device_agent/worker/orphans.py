"""Orphan recovery: runs a killed predecessor of this agent left non-final are marked final.

A kill -9 (or power loss) leaves the run Running, which blocks the queue's limit. The agent is the
only worker of its queue, so at start-up any of its queue's runs in Pending/Running/Cancelling
that carries this worker's markers (`infrastructure_pid` ``plate-resort:<worker>:<pid>`` or the
worker-name label), or no marker at all (killed between the claim and the markers), is from an
earlier process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from device_agent.worker.run_states import StateKind
from resort_common.names import WORKER_TYPE

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

__all__ = ["is_ours", "recover_orphans", "run_identifier_prefix"]

logger = logging.getLogger(__name__)

#: How many of the queue's non-final runs one recovery looks at.
RECOVERY_LIMIT = 200


def run_identifier_prefix(worker_name: str) -> str:
    """Start of the `infrastructure_pid` this worker writes on its runs (the pid follows)."""
    return f"{WORKER_TYPE}:{worker_name}:"


def is_ours(run: FlowRun, worker_name: str) -> bool:
    """True if `run` carries `worker_name`'s markers, or none at all."""
    worker_label = (run.labels or {}).get("prefect.worker.name")
    return (
        (run.infrastructure_pid or "").startswith(run_identifier_prefix(worker_name))
        or worker_label == worker_name
        or (not run.infrastructure_pid and worker_label is None)
    )


async def recover_orphans(
    client: PrefectClient,
    worker_name: str,
    queue_filters: dict[str, Any],
    force_state: Callable[[UUID, StateKind, str], Awaitable[None]],
    executing: UUID | None = None,
) -> list[UUID]:
    """Mark the queue's runs a previous incarnation of `worker_name` left non-final.

    Args:
        client: the worker's API client.
        worker_name: this agent's worker name.
        queue_filters: `read_flow_runs` filters selecting the worker's pool and queue.
        force_state: `(run id, "cancelled" | "crashed", message)`, forcing the run's state.
        executing: the run this process executes (never touched).

    Returns:
        The ids of the runs marked: Cancelling ones Cancelled, the others Crashed.
    """
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs = await client.read_flow_runs(
        limit=RECOVERY_LIMIT,
        sort=FlowRunSort.ID_DESC,
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(
                    any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
                )
            )
        ),
        **queue_filters,
    )
    recovered: list[UUID] = []
    for run in runs:
        if not is_ours(run, worker_name) or run.id == executing:
            continue
        if run.state is not None and run.state.is_cancelling():
            await force_state(run.id, "cancelled", "Cancelled while the agent was down.")
        else:
            await force_state(
                run.id,
                "crashed",
                f"Agent {worker_name} restarted while this run was in progress "
                "(process killed); check the resort's position before retrying.",
            )
        recovered.append(run.id)
    if recovered:
        logger.warning("marked %d orphaned run(s) of %s final", len(recovered), worker_name)
    return recovered
