"""The one module of `flows` (and `fleet.client`, above it) that uses Prefect's internal names.

Each function names the public alternative and why it does not serve here. Where a public API
serves, the other modules use it directly: the parent run's id comes from
`prefect.runtime.flow_run` (`flows.dispatch`), a device run's result from
`PrefectClient.read_artifacts` (`flows.results`).
`tests/flows/test_prefect_adapter.py` pins every name and signature relied on, and checks that no
other module of `flows` or `fleet.client` uses a private Prefect name.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_claimed_flow_run", "run_sync", "wait_for_final_event"]

R = TypeVar("R")


def run_sync(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run `coroutine` to completion from synchronous code (the blocking `FleetClient`).

    `prefect.utilities.asyncutils.run_coro_as_sync` (internal) runs it on Prefect's own "run
    sync" loop thread, so the async clients Prefect caches are shared by every call, and it also
    works when the caller already runs an event loop (a notebook, a flow). The public
    `asyncio.run` does neither: it fails inside a running loop and starts a new loop per call.
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(coroutine)


async def wait_for_final_event(flow_run_id: Any, timeout: int, client: Any) -> Any:
    """The flow run once a final-state event arrives (public `prefect.flow_runs.wait_for_flow_run`).

    It follows the run's events through `prefect.events.clients.get_events_subscriber` with that
    function's default `reconnection_attempts` (internal): when the server is away for longer
    than those attempts, the subscription ends with `ConnectionRefusedError` or, on a clean close,
    early with `FlowRunWaitTimeout`. `flows.waiting.wait_final` subscribes again in both cases.
    A subscriber of our own would need the internal `get_events_subscriber` directly, with the
    same reliance; the public function serves, and the reliance on its reconnect policy is pinned.
    """
    from prefect.flow_runs import wait_for_flow_run

    return await wait_for_flow_run(flow_run_id, timeout=timeout, client=client)


async def run_claimed_flow_run(flow: Any, flow_run: Any) -> Any:
    """Execute `flow_run` (claimed: Pending) of the async `flow` in this process; its final state.

    `prefect.flow_engine.run_flow` (internal module) with `flow_run=` and `return_type="state"`:
    the engine proposes Running, runs the body and reports the final state, as a worker's
    subprocess would. The public alternatives start something else: calling the flow creates a
    new run, and `prefect worker start` runs each claimed run in a new process (seconds of
    imports per run, which `fleet controller` exists to avoid).
    """
    from prefect.flow_engine import run_flow

    return await run_flow(flow, flow_run=flow_run, return_type="state")  # type: ignore[misc]
