"""Target selection: which resort an operation runs on (a named one, or the best by selector).

A selector lists labels that must all be present and optionally a hotel the resort must have.
Candidates that are inactive, drained, offline, e-stopped or faulted are skipped; among the rest the
least busy wins (fewest Scheduled/Pending/Running device runs on its queue, ties by inventory
order). When nothing fits, `DeviceSelectionError` says why each candidate was skipped.

`choose()` is the pure rule (inventory, statuses, queue load -> resort); `select_resort()` gathers
the live facts from the Prefect server and calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from fleet.core.errors import DeviceSelectionError
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory, Resort

__all__ = [
    "BUSY_STATES",
    "Selector",
    "choose",
    "matching_resorts",
    "queue_load",
    "select_resort",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

BUSY_STATES = ("SCHEDULED", "PENDING", "RUNNING")


class Selector(BaseModel):
    """Pick any resort that has all `labels` and (when set) the hotel `hotel`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: tuple[str, ...] = Field(default=(), description="labels that must all be present")
    hotel: str | None = Field(default=None, description="the resort must have this hotel")

    def describe(self) -> str:
        """`labels=[a, b] hotel=B` for messages."""
        parts = []
        if self.labels:
            parts.append(f"labels=[{', '.join(self.labels)}]")
        if self.hotel:
            parts.append(f"hotel={self.hotel}")
        return " ".join(parts) or "any resort"


class _StatusLike(Protocol):
    name: str
    online: bool
    moving: bool
    estopped: bool
    faulted: bool


def _mismatch(resort: Resort, selector: Selector) -> str | None:
    missing = [label for label in selector.labels if label not in resort.labels]
    if missing:
        return f"lacks label(s) {', '.join(missing)}"
    if selector.hotel is not None and selector.hotel not in resort.hotels:
        return f"has no hotel {selector.hotel}"
    return None


def matching_resorts(inventory: Inventory, selector: Selector) -> list[Any]:
    """Resorts whose static facts (labels, hotels) fit `selector`, active or not."""
    return [r for r in inventory.resorts if _mismatch(r, selector) is None]


def unavailable_reason(resort: Resort, status: _StatusLike | None) -> str | None:
    """Why `resort` cannot take work now (None when it can)."""
    if not resort.active:
        return "inactive"
    if status is None:
        return "offline (no status published by its agent)"
    if getattr(status, "queue_paused", False):
        return "drained (queue paused)"
    if not status.online:
        return "offline"
    if status.estopped:
        return "e-stopped"
    if status.faulted:
        last = getattr(status, "last_error", None)
        return f"faulted ({last})" if last else "faulted"
    return None


def choose(
    inventory: Inventory,
    *,
    resort: str | None = None,
    selector: Selector | None = None,
    statuses: Mapping[str, _StatusLike | None],
    load: Mapping[str, int] | None = None,
) -> Any:
    """Pick the target resort from known facts.

    Args:
        inventory: the fleet inventory.
        resort: a resort name (exclusive with `selector`).
        selector: labels/hotel to match.
        statuses: resort name -> its published status (missing or None = offline).
        load: resort name -> queued/running device runs (default 0).

    Raises:
        DeviceSelectionError: unknown resort, or no candidate fits (lists why each was skipped).
    """
    if (resort is None) == (selector is None):
        raise DeviceSelectionError("give exactly one of a resort name or a selector")
    load = load or {}
    if resort is not None:
        target = inventory.resort(resort)  # unknown -> DeviceSelectionError naming known resorts
        reason = unavailable_reason(target, statuses.get(target.name))
        if reason is not None:
            raise DeviceSelectionError(f"resort {target.name} is not available: {reason}")
        return target

    assert selector is not None
    skipped: list[str] = []
    fits: list[tuple[int, int, Any]] = []
    for index, candidate in enumerate(inventory.resorts):
        reason = _mismatch(candidate, selector) or unavailable_reason(
            candidate, statuses.get(candidate.name)
        )
        if reason is not None:
            skipped.append(f"{candidate.name}: {reason}")
            continue
        fits.append((load.get(candidate.name, 0), index, candidate))
    if not fits:
        detail = "; ".join(skipped) if skipped else "the inventory lists no resorts"
        raise DeviceSelectionError(f"no resort fits {selector.describe()}: {detail}")
    fits.sort(key=lambda item: (item[0], item[1]))
    return fits[0][2]


async def queue_load(
    inventory: Inventory, resort_names: Iterable[str], client: Any
) -> dict[str, int]:
    """Device runs Scheduled, Pending or Running on each resort's work queue."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
        WorkQueueFilter,
        WorkQueueFilterName,
    )
    from prefect.client.schemas.objects import StateType

    states = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType(s) for s in BUSY_STATES])
        )
    )
    pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[inventory.fleet.work_pool]))
    load: dict[str, int] = {}
    for name in resort_names:
        load[name] = await client.count_flow_runs(
            flow_run_filter=states,
            work_pool_filter=pool,
            work_queue_filter=WorkQueueFilter(
                name=WorkQueueFilterName(any_=[names.work_queue_name(name)])
            ),
        )
    return load


async def read_statuses(
    inventory: Inventory, only: Collection[str] | None = None
) -> dict[str, Any]:
    """Resort name -> published status (`fleet.core.status.aread_status`; of `only` these)."""
    from fleet.core.status import aread_status

    statuses: Sequence[Any] = await aread_status(inventory, only)
    return {s.name: s for s in statuses}


async def select_resort(
    inventory: Inventory,
    *,
    resort: str | None = None,
    selector: Selector | None = None,
    client: Any = None,
    extra_load: Mapping[str, int] | None = None,
) -> Any:
    """Pick the target resort from the live fleet (status variables and queue load).

    Args:
        inventory: the fleet inventory.
        resort: a resort name (exclusive with `selector`).
        selector: labels/hotel to match.
        client: an open `PrefectClient` (default: a new one).
        extra_load: load to add per resort (e.g. work a batch already assigned).

    Raises:
        DeviceSelectionError: unknown resort, or no candidate fits.
    """
    if client is None:
        from prefect.client.orchestration import get_client

        async with get_client() as own:
            return await select_resort(
                inventory, resort=resort, selector=selector, client=own, extra_load=extra_load
            )
    # a named resort: only its own status decides (a fleet of 50 is not read for one activation)
    statuses = await read_statuses(inventory, [resort] if resort is not None else None)
    load: dict[str, int] = {}
    if selector is not None:
        candidates = [r.name for r in matching_resorts(inventory, selector)]
        load = await queue_load(inventory, candidates, client)
        for name, extra in (extra_load or {}).items():
            load[name] = load.get(name, 0) + extra
    target = choose(inventory, resort=resort, selector=selector, statuses=statuses, load=load)
    logger.debug("selected %s (load %s)", target.name, load)
    return target
