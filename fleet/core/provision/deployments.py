"""The deployments `fleet provision` keeps: device subflows per resort and the parent flows.

* the device subflow deployments of each resort on its queue (`names.device_deployment_name`,
  entrypoints from `names.DEVICE_FLOWS`, parameter schemas from `fleet.core.flow_schemas`);
* the parent-flow deployments on the control pool's default queue (`names.PARENT_FLOWS`), whose
  `inventory` parameter defaults to the provisioned inventory file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleet.core.flow_schemas import DEVICE_FLOW_SCHEMAS, PARENT_FLOW_SCHEMAS
from fleet.core.provision.connection import PAGE
from fleet.core.provision.diff import changed_fields, detail
from fleet.core.provision.work_pools import DEFAULT_QUEUE
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory
    from fleet.core.provision.plan import Provisioner

__all__ = ["Stale", "desired_deployments", "ensure_deployments"]

#: A deployment the inventory no longer lists: ((flow name, deployment name), deployment).
Stale = tuple[tuple[str, str], Any]


def desired_deployments(inv: Inventory) -> dict[tuple[str, str], dict[str, Any]]:
    """Every deployment the inventory asks for, by (flow name, deployment name)."""
    device_pool, control_pool = inv.fleet.work_pool, names.control_pool_name(inv)
    desired: dict[tuple[str, str], dict[str, Any]] = {}
    for resort in inv.resorts:
        for flow_name, entrypoint in names.DEVICE_FLOWS.items():
            desired[(flow_name, resort.name)] = {
                "work_pool_name": device_pool,
                "work_queue_name": names.work_queue_name(resort),
                "entrypoint": entrypoint,
                "parameters": {},
                "parameter_openapi_schema": DEVICE_FLOW_SCHEMAS[flow_name],
                "enforce_parameter_schema": True,
                "tags": [names.fleet_tag(inv), f"resort:{resort.name}"],
                "description": (
                    f"Device subflow {flow_name} on resort {resort.name} "
                    "(managed by `fleet provision`)."
                ),
            }
    for flow_name, entrypoint in names.PARENT_FLOWS.items():
        schema = PARENT_FLOW_SCHEMAS.get(flow_name)
        full = names.parent_deployment_name(flow_name, inv)
        has_inventory = schema is not None and "inventory" in schema["properties"]
        desired[(flow_name, full.split("/", 1)[1])] = {
            "work_pool_name": control_pool,
            "work_queue_name": DEFAULT_QUEUE,
            "entrypoint": entrypoint,
            # Runs started from the UI or by automations find the provisioned inventory.
            "parameters": {"inventory": str(inv.path)} if has_inventory else {},
            "parameter_openapi_schema": schema or {"type": "object", "properties": {}},
            "enforce_parameter_schema": schema is not None,
            "tags": [names.fleet_tag(inv)],
            "description": f"Parent flow {flow_name} (managed by `fleet provision`).",
        }
    return desired


def _read_deployments(p: Provisioner, flow_names: list[str]) -> list[tuple[str, Any]]:
    """Existing deployments of the given flows as (flow name, deployment).

    Paged in creation order: the server's default order (by name) is not total (every fleet has
    a `fleet-batch/<fleet>` and every resort an `activate-hotel/<resort>`), and PostgreSQL returns
    ties in any order, so offset pages in that order skip some rows and repeat others.
    """
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import DeploymentSort

    flow_filter = FlowFilter(name=FlowFilterName(any_=flow_names))
    found = p.client.read_flows(flow_filter=flow_filter, limit=len(flow_names))  # names are unique
    flows = {f.id: f.name for f in found}
    if not flows:
        return []
    out: dict[Any, tuple[str, Any]] = {}
    offset = 0
    while True:
        page = p.client.read_deployments(
            flow_filter=flow_filter, limit=PAGE, offset=offset, sort=DeploymentSort.CREATED_DESC
        )
        out.update((d.id, (flows[d.flow_id], d)) for d in page if d.flow_id in flows)
        if len(page) < PAGE:
            return list(out.values())
        offset += PAGE


def ensure_deployments(p: Provisioner) -> list[Stale]:
    """Ensure the device and parent deployments.

    Returns:
        The deployments of the fleet's flows in the fleet's pools that the inventory no longer
        lists (`fleet.core.provision.prune` deletes them).
    """
    from prefect.client.schemas.actions import DeploymentUpdate

    inv = p.inv
    desired = desired_deployments(inv)
    flow_names = [*names.DEVICE_FLOWS, *names.PARENT_FLOWS]
    existing = {(f, d.name): d for f, d in _read_deployments(p, flow_names)}
    flow_ids: dict[str, Any] = {}
    for (flow_name, dname), want in desired.items():
        label = f"{flow_name}/{dname}"
        dep = existing.get((flow_name, dname))
        if dep is None:
            p.note(
                "deployment",
                label,
                "create",
                f"on {want['work_pool_name']}/{want['work_queue_name']}",
            )
            if not p.dry_run:
                if flow_name not in flow_ids:
                    flow_ids[flow_name] = p.client.create_flow_from_name(flow_name)
                p.client.create_deployment(
                    flow_id=flow_ids[flow_name], name=dname, paused=False, **want
                )
            continue
        have = {k: getattr(dep, k) for k in want}
        have["tags"] = sorted(have["tags"] or [])
        want_cmp = {**want, "tags": sorted(want["tags"])}
        diff = changed_fields(have, want_cmp)
        if diff:
            p.note("deployment", label, "update", detail(have, diff))
            if not p.dry_run:
                p.client.update_deployment(dep.id, DeploymentUpdate(**diff))
        else:
            p.note("deployment", label, "unchanged", f"on {want['work_queue_name']}")
    ours = {inv.fleet.work_pool, names.control_pool_name(inv)}
    return [
        (key, dep)
        for key, dep in existing.items()
        if key not in desired and dep.work_pool_name in ours
    ]
