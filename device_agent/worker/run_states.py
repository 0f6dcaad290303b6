"""Final states the worker forces on its runs: after the engine returned, or when it cannot run.

Prefect's engine reports a run's states itself, but a run cancelled while executing stays
`Cancelling` (the engine returns after the motor halted), and a run whose engine raised may stay
`Running`. The worker leaves neither: it forces `Cancelled` or `Crashed`. It also forces the
states of runs it refuses (cancelled before the start, agent stopping) or finds orphaned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

__all__ = ["CANCELLED_BY_HALT", "StateKind", "finalize_after_engine", "force_state"]

logger = logging.getLogger(__name__)

#: The message of a run cancelled while executing (the motor was halted).
CANCELLED_BY_HALT = "Cancelled: the motor was halted."

StateKind = Literal["cancelled", "crashed", "scheduled"]


def finalize_after_engine(
    flow_run_id: UUID, cancelled: bool, cancel_reason: str | None, reported: Any = None
) -> None:
    """Leave no run Cancelling or Running after the engine returned (device thread, sync client).

    Args:
        flow_run_id: the run the engine returned from.
        cancelled: a cancel was requested while it executed.
        cancel_reason: the message of its `Cancelled` state (default `CANCELLED_BY_HALT`).
        reported: the state the engine returned. A `Completed` one is the state the server
            accepted (the engine keeps the server's answer to its proposal), so an uncancelled
            run that reports it needs no re-read: that read would sit between the move's end
            and the next run's claim.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed

    if not cancelled and reported is not None and getattr(reported, "is_completed", bool)():
        return

    client = get_client(sync_client=True)
    try:
        current = client.read_flow_run(flow_run_id).state
    except Exception:
        logger.warning("could not re-read flow run %s after it ended", flow_run_id)
        return
    if current is None:
        return
    if cancelled or current.is_cancelling():
        if not current.is_cancelled():
            reason = cancel_reason or CANCELLED_BY_HALT
            client.set_flow_run_state(flow_run_id, Cancelled(message=reason), force=True)
    elif not current.is_final():
        client.set_flow_run_state(
            flow_run_id,
            Crashed(message=f"The engine returned in state {current.name}; marked Crashed."),
            force=True,
        )


async def force_state(client: Any, flow_run_id: UUID, kind: StateKind, message: str) -> None:
    """Force the run into a `kind` state with `message` (a failure is logged, not raised)."""
    from prefect.states import Cancelled, Crashed, Scheduled

    factories: dict[str, Callable[..., State[Any]]] = {
        "cancelled": Cancelled,
        "crashed": Crashed,
        "scheduled": Scheduled,
    }
    state = factories[kind](message=message)
    try:
        await client.set_flow_run_state(flow_run_id, state, force=True)
    except Exception:
        logger.exception("could not mark flow run %s %s", flow_run_id, kind)
