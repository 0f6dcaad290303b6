"""Starting a parent flow in-process, under the fleet's tag, through an overloaded server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleet.core import locks
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["START_RETRY_WINDOW", "parent_run_not_created", "start_parent"]

#: seconds to keep re-trying the start of a parent flow on an overloaded server
START_RETRY_WINDOW = 60.0


def parent_run_not_created(exc: BaseException) -> bool:
    """True when `exc` is an overloaded server refusing to *create* the parent flow run.

    Nothing has happened then (no lock, no dispatch), so starting the flow again is safe.
    """
    request = getattr(exc, "request", None)
    return (
        locks.is_transient_server_error(exc)
        and request is not None
        and request.method == "POST"
        and request.url.path.rstrip("/").endswith("/flow_runs")
    )


async def start_parent(inv: Inventory, flow: Callable[..., Any], /, **parameters: Any) -> Any:
    """Run a parent flow in-process; re-try while the server (SQLite) refuses to create its run.

    The run carries the fleet's tag (`names.fleet_tag`): the parent-run watchdog watches it from
    its Running state on (`fleet.core.watchdog`). Prefect's client gives up after a few 503 answers
    under many concurrent schedulers.
    """
    from prefect import tags

    deadline = time.monotonic() + START_RETRY_WINDOW
    delay = 0.2
    while True:
        try:
            with tags(names.fleet_tag(inv)):
                return await flow(**parameters)
        except Exception as exc:
            if not parent_run_not_created(exc) or time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
