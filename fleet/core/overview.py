"""The fleet overview: one keyed Prefect table artifact per fleet, kept current.

The artifact (`resort_common.names.overview_artifact_key(inv)`) has one row per resort
(`overview_rows`).
Prefect keeps every version of a key, so the table holds no volatile field (the description
carries the time) and `publish_overview` writes a version only when the table differs from the
latest one on the server: anyone may publish as often as they like, the history holds changes.

Two publishers keep it current: the `fleet-health` parent flow, with its fresh readings, and
`watch_overview`, run by `fleet controller` in a daemon thread. The watcher publishes at start,
after the agents' `plate-resort.*` events for the fleet's resorts (an agent writes its status
variable before the event) and Prefect's `prefect.work-queue.*` events of the fleet's device pool
(`fleet drain` / `fleet resume`), at most once per `min_interval` s, and every `refresh` s
regardless: a dead agent emits nothing and turns offline when its status goes stale
(`fleet.core.status.stale_after`); heartbeats (`QUIET_EVENTS`) are left to that refresh too. A
dropped subscription is reopened with a backoff (the loop lives in `fleet.core._overview_watch`).
Two publishers racing on one change may both write it (two equal versions): harmless.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fleet.core.status import ResortStatus, aread_status
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "COLUMNS",
    "PUBLISH_TIMEOUT",
    "QUIET_EVENTS",
    "apublish_overview",
    "overview_rows",
    "publish_overview",
    "watch_overview",
]

logger = logging.getLogger(__name__)

#: the table's columns, in order
COLUMNS = (
    "resort",
    "online",
    "link",
    "position (deg)",
    "hotel",
    "moving",
    "e-stop",
    "queue",
    "last error",
    "temperature (C)",
    "voltage (V)",
)
#: agent events that trigger no republication (the periodic refresh covers them)
QUIET_EVENTS = frozenset({"plate-resort.agent.heartbeat"})
#: seconds one publication (status read, artifact read and write) may take in the watcher
PUBLISH_TIMEOUT = 20.0
_MAX_ERROR = 200  # characters of the last error shown


def _number(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return format(value, spec)


def _last_error(status: ResortStatus, reading: Mapping[str, Any]) -> str:
    parts = []
    if status.last_error:
        parts.append(str(status.last_error).strip().splitlines()[0][:_MAX_ERROR])
    hardware = reading.get("hardware_errors") or []
    if hardware:
        parts.append("hardware error: " + ", ".join(str(e) for e in hardware))
    return "; ".join(parts) or "-"


def overview_rows(
    statuses: Sequence[ResortStatus], health: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One human-readable row per resort (keys `COLUMNS`, in order), in the given order.

    Args:
        statuses: the resorts' status (`fleet.core.status.read_status`).
        health: resort name -> a fresh health reading (temperature in C, voltage in V,
            hardware_errors, ...), used instead of the one in the resort's status.
    """
    rows = []
    for status in statuses:
        reading = dict((health or {}).get(status.name) or status.health or {})
        paused = status.queue_paused
        values = (
            status.name,
            ("online" if status.online else "OFFLINE") if status.active else "inactive",
            ("ok" if status.connected else "LOST") if status.online else "-",
            _number(status.position, ".1f"),
            status.active_hotel or "-",
            "yes" if status.moving else "no",
            "ENGAGED" if status.estopped else "-",
            "-" if paused is None else ("paused" if paused else "ready"),
            _last_error(status, reading),
            _number(reading.get("temperature"), ".0f"),
            _number(reading.get("voltage"), ".1f"),
        )
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def _description(inv: Inventory, statuses: Sequence[ResortStatus]) -> str:
    online = sum(1 for s in statuses if s.online)
    stopped = sum(1 for s in statuses if s.estopped)
    now = datetime.datetime.now(datetime.UTC)
    return (
        f"Fleet **{inv.fleet.name}**: {online} of {len(statuses)} resorts online, "
        f"{stopped} e-stopped, as of {now:%Y-%m-%d %H:%M:%S} UTC"
    )


def _table_of(artifact: Any) -> Any:
    try:
        return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    except ValueError:
        return None


async def apublish_overview(
    inv: Inventory,
    *,
    statuses: Sequence[ResortStatus] | None = None,
    health: Mapping[str, Mapping[str, Any]] | None = None,
) -> bool:
    """Async form of `publish_overview`."""
    from prefect import get_client
    from prefect.client.schemas import filters
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.context import FlowRunContext

    if statuses is None:
        statuses = await aread_status(inv)
    table = overview_rows(statuses, health)
    key = names.overview_artifact_key(inv)
    async with get_client() as client:
        latest = await client.read_latest_artifacts(
            artifact_filter=filters.ArtifactCollectionFilter(
                key=filters.ArtifactCollectionFilterKey(any_=[key])
            ),
            limit=1,
        )
        if latest and latest[0].type == "table" and _table_of(latest[0]) == table:
            return False
        ctx = FlowRunContext.get()
        run = ctx.flow_run if ctx is not None else None
        await client.create_artifact(
            ArtifactCreate(
                key=key,
                type="table",
                description=_description(inv, statuses),
                data=json.dumps(table),
                flow_run_id=run.id if run is not None else None,
            )
        )
    return True


def publish_overview(
    inv: Inventory,
    *,
    statuses: Sequence[ResortStatus] | None = None,
    health: Mapping[str, Mapping[str, Any]] | None = None,
) -> bool:
    """Write the fleet's overview table as a new version of its keyed artifact, if it changed.

    Args:
        inv: the inventory.
        statuses: the resorts' status (default: read now, `fleet.core.status.aread_status`).
        health: resort name -> a fresh health reading that replaces the one in its status.

    Returns:
        True when a new version was written; False when the latest one shows the same table.
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    return bool(run_coro_as_sync(apublish_overview(inv, statuses=statuses, health=health)))


def watch_overview(
    inv: Inventory, stop: threading.Event, *, refresh: float = 30.0, min_interval: float = 1.0
) -> None:
    """Keep the fleet's overview artifact current until `stop` is set (see the module docstring).

    Blocking; meant for a daemon thread that sees the caller's Prefect settings (run it in
    `contextvars.copy_context()`). Never raises: problems are logged as warnings.

    Args:
        inv: the inventory.
        stop: set it to end the watch (within 0.2 s, or once a publication in flight ends).
        refresh: seconds between two publications without any event.
        min_interval: seconds between two publications, at least (events are coalesced).
    """
    from fleet.core._overview_watch import watch

    try:
        asyncio.run(watch(inv, stop, refresh, min_interval))
    except Exception as exc:
        logger.warning("overview of fleet %s: watcher stopped: %r", inv.fleet.name, exc)
