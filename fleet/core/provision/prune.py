"""`fleet provision --prune`: delete the fleet's objects that the inventory no longer lists.

Never foreign objects: only queues in the fleet's device pool, deployments of the fleet's flows in
the fleet's pools, the fleet's move limit, and the locks of resorts that still had a queue or a
deployment there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleet.core.provision.work_pools import desired_limits
from resort_common import names

if TYPE_CHECKING:
    from prefect.client.schemas.objects import WorkQueue

    from fleet.core.inventory import Inventory
    from fleet.core.provision.deployments import Stale
    from fleet.core.provision.plan import Provisioner

__all__ = ["dropped_resorts", "prune_deployments", "prune_limits", "prune_queues"]


def dropped_resorts(inv: Inventory, stale: list[Stale], queues: dict[str, WorkQueue]) -> set[str]:
    """Names of the resorts that still have a device deployment or a queue but are not listed."""
    device_pool = inv.fleet.work_pool
    return {dname for (_, dname), dep in stale if dep.work_pool_name == device_pool} | set(queues)


def prune_deployments(p: Provisioner, stale: list[Stale]) -> None:
    """Delete the fleet's deployments the inventory no longer lists."""
    for (flow_name, dname), dep in sorted(stale, key=lambda kv: kv[0]):
        p.note("deployment", f"{flow_name}/{dname}", "delete", "not in the inventory")
        if not p.dry_run:
            p.client.delete_deployment(dep.id)


def prune_queues(p: Provisioner, pool: str, dropped: dict[str, WorkQueue]) -> None:
    """Delete dropped resorts' queues (after their deployments: deleting a queue first would take
    the deployments with it unreported)."""
    for qname in sorted(dropped):
        p.note("work queue", f"{pool}/{qname}", "delete", "not in the inventory")
        if not p.dry_run:
            p.client.delete_work_queue_by_id(dropped[qname].id)


def prune_limits(p: Provisioner, current: dict[str, Any], dropped: set[str]) -> None:
    """Delete the locks of dropped resorts, and the move limit when the inventory sets none.

    Args:
        p: the provisioner.
        current: the limits the server held, by name (`ensure_limits`).
        dropped: names of the dropped resorts (`dropped_resorts`).
    """
    desired = desired_limits(p.inv)
    fleet_limit = names.fleet_limit_name(p.inv)
    stale = {names.lock_name(r) for r in dropped}
    if fleet_limit not in desired:
        stale.add(fleet_limit)
    for lname in sorted(stale - set(desired)):
        if lname in current:
            p.note("concurrency limit", lname, "delete", "not in the inventory")
            if not p.dry_run:
                p.client.delete_global_concurrency_limit_by_name(lname)
