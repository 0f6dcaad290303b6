"""Wait for a device run's final state, through a server restart or a dropped connection.

A parent that dispatched a device run must learn how it ended: the run goes on at the agent
whatever happens to the parent's connection. Prefect's `wait_for_flow_run` follows the run's
events on a websocket (`flows.prefect_adapter.wait_for_final_event`); when the server is away for
longer than the subscriber's reconnect attempts, it raises `ConnectionRefusedError`. Giving up
there would release the resort's lock while the run is still queued or moving, and report a
failure for an operation that goes on to complete (or is refused for the lost lease).
`wait_final` keeps waiting, re-subscribing, until the run's own timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fleet.core import locks
from fleet.core.errors import FleetError

__all__ = ["confirm_final", "is_transient_wait_error", "retry_transient", "wait_final"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: seconds between two attempts to reach the server again while waiting (doubling, capped)
FIRST_RETRY, MAX_RETRY = 0.5, 5.0
#: seconds one subscription waits for the final-state event; then it subscribes again, which
#: reads the run's state first: a final-state event that never arrives (seen on several servers
#: under load) costs at most this long instead of the run's whole timeout
EVENT_SLICE = 10.0


def is_transient_wait_error(exc: BaseException) -> bool:
    """Whether `exc` is the server being away or overloaded, not an answer about the run.

    Transient: what `locks.is_transient_server_error` calls so (429/5xx, HTTP transport errors),
    a refused or reset socket (`OSError`), a closed or refused websocket.
    """
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    if isinstance(exc, FleetError):
        return False
    if locks.is_transient_server_error(exc):
        return True
    return isinstance(exc, OSError | ConnectionClosed | InvalidHandshake)


async def confirm_final(client: Any, run: Any, bound: float = 10.0) -> Any:
    """Re-read a run that `wait_for_flow_run` returned on a final-state event but still reads
    non-final: the server can publish the event before its transaction commits (seen on a loaded
    SQLite server as "ended Running"), so give the state `bound` seconds to become readable."""
    deadline = time.monotonic() + bound
    while (run.state is None or not run.state.is_final()) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        run = await client.read_flow_run(run.id)
    return run


async def wait_final(flow_run_id: Any, timeout: float) -> Any:
    """The flow run once final, waiting at most `timeout` seconds in all.

    A server that is away (refused, reset, 5xx) is waited for, with a warning, until the
    deadline; the run's state is read afresh after each reconnect, so a final state reached
    meanwhile is not missed. Each subscription lasts at most `EVENT_SLICE` seconds, so a
    final-state event that never arrives delays the answer by that much, not by the timeout.

    Raises:
        FlowRunWaitTimeout: the run was not final within `timeout`.
        Exception: any error that is not the server being away (`is_transient_wait_error`).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowRunWaitTimeout

    from flows.prefect_adapter import wait_for_final_event

    deadline = time.monotonic() + timeout
    delay = FIRST_RETRY
    lost_at: float | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FlowRunWaitTimeout(f"flow run {flow_run_id} not final within {timeout:.0f} s")
        window = max(1, math.ceil(min(remaining, EVENT_SLICE)))
        began = time.monotonic()
        try:
            async with get_client() as client:
                run = await wait_for_final_event(flow_run_id, window, client)
                run = await confirm_final(client, run)
        except Exception as exc:
            if isinstance(exc, FlowRunWaitTimeout) and time.monotonic() - began >= window - 0.5:
                if deadline - time.monotonic() > 0:
                    continue  # no final event within the slice: subscribe again (reads the state)
                raise
            # A server shutting down closes the websocket cleanly; the subscriber then ends and
            # `wait_for_flow_run` reports a timeout before its own: that is a lost server too.
            if not isinstance(exc, FlowRunWaitTimeout) and not is_transient_wait_error(exc):
                raise
            if lost_at is None:
                lost_at = time.monotonic()
                _log.warning(
                    "lost the server while waiting for run %s (%s: %s); waiting on",
                    flow_run_id,
                    type(exc).__name__,
                    exc,
                )
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, MAX_RETRY)
            continue
        if lost_at is not None:
            _log.warning(
                "server back after %.1f s; run %s is %s",
                time.monotonic() - lost_at,
                flow_run_id,
                run.state.name if run.state else "unknown",
            )
        return run


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    window: float,
    *,
    first: float | None = None,
    what: str = "server call",
) -> T:
    """`await call()`, called again while the server is away, for at most `window` seconds.

    `first`: the first delay (default `FIRST_RETRY`), doubled up to `MAX_RETRY`; `what`: named in
    the warning logged before each retry.

    Raises:
        Exception: the last error once `window` has passed, or any error that is not transient.
    """
    deadline = time.monotonic() + window
    delay = FIRST_RETRY if first is None else first
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient_wait_error(exc) or time.monotonic() + delay > deadline:
                raise
            _log.warning(
                "%s: server away (%s: %s); trying again in %.1f s",
                what,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY)
