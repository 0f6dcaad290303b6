"""`provision(inv)`: make the Prefect server hold exactly what the inventory describes.

It idempotently creates or updates, on the server Prefect's settings point at, in this order:
the work pools and the resorts' queues (`work_pools`), the device and parent deployments
(`deployments`), the concurrency limits (`work_pools`), the parent-run watchdog, the
`fleet-health` schedule and the alerts (`watching`). With `prune=True` it also deletes the fleet's
objects the inventory no longer lists (`prune`): deployments before their queues (deleting a
queue first would take its deployments with it unreported), locks after the limits are ensured.

It returns a `ProvisionPlan` (`plan`) listing each object as create / update / unchanged /
delete; with `dry_run=True` nothing is changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleet.core.provision.connection import sync_client, translated
from fleet.core.provision.deployments import ensure_deployments
from fleet.core.provision.plan import Provisioner, ProvisionPlan
from fleet.core.provision.prune import (
    dropped_resorts,
    prune_deployments,
    prune_limits,
    prune_queues,
)
from fleet.core.provision.watching import (
    alert_destination,
    ensure_alerts,
    ensure_health_schedule,
    ensure_watchdog,
)
from fleet.core.provision.work_pools import (
    CONTROL_POOL_TYPE,
    ensure_limits,
    ensure_pool,
    ensure_queues,
)
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["provision"]


def provision(inv: Inventory, *, dry_run: bool = False, prune: bool = False) -> ProvisionPlan:
    """Make the server hold the inventory's pools, queues, limits, deployments and watchdog.

    Uses the Prefect API the current settings point at (the CLI wraps this in
    `fleet.core.server.api_settings`).

    Args:
        inv: the loaded inventory.
        dry_run: only compute the plan.
        prune: also delete fleet objects the inventory no longer lists.

    Returns:
        The plan: every object with create / update / unchanged / delete.

    Raises:
        ServerUnavailableError: the server does not answer or refuses our credentials.
        ProvisionError: the server refused a change (e.g. a pool exists with another type).
    """
    with translated(), sync_client() as client:
        destination = alert_destination(inv, client)  # bad input fails before any write
        p = Provisioner(inv, client, dry_run)
        fleet, device_pool = inv.fleet.name, inv.fleet.work_pool
        device_ok = ensure_pool(
            p,
            device_pool,
            names.WORKER_TYPE,
            f"Plate-resort agents of fleet {fleet} (managed by `fleet provision`).",
        )
        ensure_pool(
            p,
            names.control_pool_name(inv),
            CONTROL_POOL_TYPE,
            f"Parent flows of fleet {fleet} (managed by `fleet provision`).",
        )
        dropped_queues = ensure_queues(p, device_pool, device_ok)
        stale = ensure_deployments(p)
        if prune:
            prune_deployments(p, stale)
            prune_queues(p, device_pool, dropped_queues)
        limits = ensure_limits(p)
        if prune:
            prune_limits(p, limits, dropped_resorts(inv, stale, dropped_queues))
        ensure_watchdog(p)
        ensure_health_schedule(p)
        ensure_alerts(p, destination)
    return ProvisionPlan(inv.fleet.name, tuple(p.changes), dry_run)
