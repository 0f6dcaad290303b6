"""Run Prefect's background services alone, in one process (the multi-server topology).

`python -m fleet.core._services_main` is what `fleet server up --replicas N` starts next to the
API replicas (which run with `PREFECT__SERVER_WEBSERVER_ONLY=1`): the scheduler, the late-run and
cancellation loops, the event triggers of automations, and the rest, each once. It runs what
`prefect server services start` runs, after the scheduler fix of `fleet.core._server_main`.
SIGTERM cancels the services and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

__all__ = ["main"]


async def _serve() -> None:
    from fleet.core.prefect_adapter import run_all_services

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run_all_services()


def main() -> None:
    """Serve until SIGTERM."""
    from fleet.core.prefect_adapter import allow_scheduled_runs_on_sqlalchemy_21

    allow_scheduled_runs_on_sqlalchemy_21()
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
