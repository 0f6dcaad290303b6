"""The work pools, the resorts' work queues and the concurrency limits `fleet provision` keeps.

* the device pool (`inv.fleet.work_pool`, type `names.WORKER_TYPE`; its base job template is left
  to the agents' worker, which fills an empty one on its first hello) and the control pool
  (type "process", Prefect's default process template) of the parent flows;
* one work queue per resort (`names.work_queue_name`, limit 1, paused while `active: false`; a
  queue drained by `fleet drain` stays paused until `fleet resume`);
* one global concurrency limit per resort (`names.lock_name`, limit 1) and the fleet-wide move
  limit (`names.fleet_limit_name`, limit `max_concurrent_moves`) when the inventory sets one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleet.core.errors import ProvisionError
from fleet.core.provision.connection import PAGE
from fleet.core.provision.diff import changed_fields, detail
from resort_common import names

if TYPE_CHECKING:
    from prefect.client.schemas.objects import WorkQueue

    from fleet.core.inventory import Inventory, Resort
    from fleet.core.provision.plan import Provisioner

__all__ = [
    "CONTROL_POOL_TYPE",
    "DEFAULT_QUEUE",
    "DRAINED_MARK",
    "desired_limits",
    "ensure_limits",
    "ensure_pool",
    "ensure_queues",
    "queue_description",
]

CONTROL_POOL_TYPE = "process"
DEFAULT_QUEUE = "default"
#: in a queue's description while `fleet drain` holds it paused
DRAINED_MARK = "Paused: drained by `fleet drain`"
_INACTIVE_MARK = "Paused: inactive in the inventory."


def queue_description(inv: Inventory, resort: Resort) -> str:
    """The description `fleet provision` gives a resort's queue (it says when it is inactive)."""
    base = f"Resort {resort.name} of fleet {inv.fleet.name} (managed by `fleet provision`)."
    return base if resort.active else f"{base} {_INACTIVE_MARK}"


# --------------------------------------------------------------------------- pools


def ensure_pool(p: Provisioner, name: str, pool_type: str, description: str) -> bool:
    """Ensure a work pool; returns True when it exists on the server afterwards.

    Raises:
        ProvisionError: a pool of that name exists with another type.
    """
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    try:
        current = p.client.read_work_pool(name)
    except ObjectNotFound:
        p.note("work pool", name, "create", f"type {pool_type}")
        if not p.dry_run:
            template: dict[str, Any] = {}
            if pool_type == CONTROL_POOL_TYPE:
                from prefect.workers.process import ProcessWorker

                template = ProcessWorker.get_default_base_job_template()
            p.client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=pool_type,
                    description=description,
                    base_job_template=template,
                )
            )
        return not p.dry_run
    if current.type != pool_type:
        raise ProvisionError(
            f"work pool {name!r} exists with type {current.type!r}, the fleet needs "
            f"{pool_type!r}: delete it (`prefect work-pool delete {name}`) or rename the pool "
            "in the inventory"
        )
    diff = changed_fields({"description": current.description}, {"description": description})
    if diff:
        p.note("work pool", name, "update", detail({"description": current.description}, diff))
        if not p.dry_run:
            p.client.update_work_pool(name, WorkPoolUpdate(**diff))
    else:
        p.note("work pool", name, "unchanged", f"type {pool_type}")
    return True


# --------------------------------------------------------------------------- queues


def _read_queues(p: Provisioner, pool: str, exists: bool) -> dict[str, WorkQueue]:
    if not exists:
        return {}
    out: dict[str, WorkQueue] = {}
    offset = 0
    while True:
        page = p.client.read_work_queues(work_pool_name=pool, limit=PAGE, offset=offset)
        out.update({q.name: q for q in page})
        if len(page) < PAGE:
            return out
        offset += PAGE


def _paused_note(desired: dict[str, Any]) -> str:
    return "paused" if desired["is_paused"] else "limit 1"


def ensure_queues(p: Provisioner, pool: str, exists: bool) -> dict[str, WorkQueue]:
    """Ensure one queue per resort; returns the queues of resorts no longer listed."""
    inv = p.inv
    current = _read_queues(p, pool, exists)
    for resort in inv.resorts:
        qname = names.work_queue_name(resort)
        desired: dict[str, Any] = {
            "concurrency_limit": 1,
            "is_paused": not resort.active,
            "description": queue_description(inv, resort),
        }
        queue = current.get(qname)
        if queue is None:
            p.note("work queue", f"{pool}/{qname}", "create", _paused_note(desired))
            if not p.dry_run:
                p.client.create_work_queue(name=qname, work_pool_name=pool, **desired)
            continue
        description = queue.description or ""
        have = {
            "concurrency_limit": queue.concurrency_limit,
            "is_paused": queue.is_paused,
            "description": description,
        }
        if resort.active and queue.is_paused and DRAINED_MARK in description:
            # Drained by an operator: provisioning does not undo that, `fleet resume` does.
            desired["is_paused"] = True
            desired["description"] = description
        diff = changed_fields(have, desired)
        if diff:
            p.note("work queue", f"{pool}/{qname}", "update", detail(have, diff))
            if not p.dry_run:
                p.client.update_work_queue(id=queue.id, **diff)
        else:
            p.note("work queue", f"{pool}/{qname}", "unchanged", _paused_note(desired))
    wanted = {names.work_queue_name(r) for r in inv.resorts} | {DEFAULT_QUEUE}
    return {q: current[q] for q in current if q not in wanted}


# --------------------------------------------------------------------------- concurrency limits


def _read_limits(p: Provisioner) -> dict[str, Any]:
    out: dict[str, Any] = {}
    offset = 0
    while True:
        page = p.client.read_global_concurrency_limits(limit=PAGE, offset=offset)
        out.update({gcl.name: gcl for gcl in page})
        if len(page) < PAGE:
            return out
        offset += PAGE


def desired_limits(inv: Inventory) -> dict[str, int]:
    """The global concurrency limits the inventory asks for, by name: resort locks, move limit."""
    desired: dict[str, int] = {names.lock_name(r): 1 for r in inv.resorts}
    if inv.fleet.max_concurrent_moves is not None:
        desired[names.fleet_limit_name(inv)] = int(inv.fleet.max_concurrent_moves)
    return desired


def ensure_limits(p: Provisioner) -> dict[str, Any]:
    """Ensure the desired limits; returns every limit the server held before, by name."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )

    current = _read_limits(p)
    for lname, limit in desired_limits(p.inv).items():
        gcl = current.get(lname)
        if gcl is None:
            p.note("concurrency limit", lname, "create", f"limit {limit}")
            if not p.dry_run:
                p.client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=lname, limit=limit, active=True)
                )
            continue
        have = {"limit": gcl.limit, "active": gcl.active}
        diff = changed_fields(have, {"limit": limit, "active": True})
        if diff:
            p.note("concurrency limit", lname, "update", detail(have, diff))
            if not p.dry_run:
                p.client.update_global_concurrency_limit(
                    lname, GlobalConcurrencyLimitUpdate(**diff)
                )
        else:
            p.note("concurrency limit", lname, "unchanged", f"limit {limit}")
    return current
