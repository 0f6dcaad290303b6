"""Every name that crosses a system boundary (pools, queues, deployments, limits, variables).

The single place where such names are built, from the inventory only; see the table in
docs/DESIGN.md. Functions that take a resort accept its name or any object with a `name`
attribute (e.g. `fleet.core.inventory.Resort`); functions that take the inventory accept an
`fleet.core.inventory.Inventory` (anything with `.fleet.name` / `.fleet.control_pool`).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = [
    "DEVICE_FLOWS",
    "LEASED_FLOWS",
    "MOTION_FLOWS",
    "PARENT_FLOWS",
    "WORKER_TYPE",
    "alert_automation_name",
    "alert_block_name",
    "control_pool_name",
    "device_deployment_name",
    "estop_variable_name",
    "fleet_limit_name",
    "fleet_tag",
    "lock_holder_variable_name",
    "lock_name",
    "lock_waiting_variable_name",
    "occupancy_artifact_key",
    "overview_artifact_key",
    "parent_deployment_name",
    "parent_watchdog_name",
    "resource_id",
    "status_variable_name",
    "work_queue_name",
    "worker_name",
]

#: Prefect worker type of the device agents' work pool (the worker class declares the same).
WORKER_TYPE = "plate-resort"

#: Device subflows (run inside a resort's agent): flow name -> entrypoint.
DEVICE_FLOWS: dict[str, str] = {
    "activate-hotel": "flows.device:activate_hotel",
    "go-home": "flows.device:go_home",
    "move-to-angle": "flows.device:move_to_angle",
    "set-speed": "flows.device:set_speed",
    "request-position": "flows.device:request_position",
    "request-health": "flows.device:request_health",
    "reboot-resort": "flows.device:reboot_resort",
    "emergency-stop": "flows.device:emergency_stop",
    "move-sequence": "flows.sequence:move_sequence",
}

#: Device subflows that move the carousel (take the motion lock, refused while e-stopped).
MOTION_FLOWS: frozenset[str] = frozenset(
    {"activate-hotel", "go-home", "move-to-angle", "move-sequence"}
)

#: Device subflows that need the lease of the resort's lock (parameter `lease`), checked by the
#: agent before the motor sees a write: motion and maintenance. E-stop and reads never do.
LEASED_FLOWS: frozenset[str] = MOTION_FLOWS | {"set-speed", "reboot-resort"}

#: Parent flows (run on the control pool or in-process by the CLI): flow name -> entrypoint.
PARENT_FLOWS: dict[str, str] = {
    "fleet-activate-hotel": "flows.parent:activate_hotel",
    "fleet-go-home": "flows.parent:go_home",
    "fleet-move-to-angle": "flows.parent:move_to_angle",
    "fleet-health": "flows.parent:fleet_health",
    "fleet-recover": "flows.maintenance:recover",
    "fleet-set-speed": "flows.maintenance:set_speed",
    "fleet-reserve": "flows.parent:reserve",
    "fleet-batch": "flows.batch:run_batch",
    "fleet-store-plate": "flows.plates:store_plate",
    "fleet-retrieve-plate": "flows.plates:retrieve_plate",
}


class _Named(Protocol):
    name: str


def _resort(resort: str | _Named) -> str:
    name = resort if isinstance(resort, str) else resort.name
    if not name:
        raise ValueError("resort name must not be empty")
    return name


def _variable_safe(name: str) -> str:
    """Prefect variable names allow lowercase letters, digits and underscores only."""
    return name.lower().replace("-", "_")


def work_queue_name(resort: str | _Named) -> str:
    """Work queue of a resort in the device pool: the resort name (`resort-a`)."""
    return _resort(resort)


def lock_name(resort: str | _Named) -> str:
    """Global concurrency limit (limit 1) that serialises a resort: `resort:resort-a`."""
    return f"resort:{_resort(resort)}"


def fleet_limit_name(inv: Any) -> str:
    """Fleet-wide move limit (`max_concurrent_moves`): `fleet:demo:moves`.

    Args:
        inv: the inventory, or the fleet name as a string.
    """
    fleet = inv if isinstance(inv, str) else inv.fleet.name
    return f"fleet:{fleet}:moves"


def fleet_tag(inv: Any) -> str:
    """Tag on the fleet's deployments and parent flow runs: `fleet:demo`.

    The parent-run watchdog watches tagged parent runs from the moment they turn Running.

    Args:
        inv: the inventory, or the fleet name as a string.
    """
    fleet = inv if isinstance(inv, str) else inv.fleet.name
    return f"fleet:{fleet}"


def parent_watchdog_name(inv: Any) -> str:
    """Automation that marks a fleet's silent parent runs Crashed: `fleet:demo:parent-watchdog`.

    Args:
        inv: the inventory, or the fleet name as a string.
    """
    fleet = inv if isinstance(inv, str) else inv.fleet.name
    return f"fleet:{fleet}:parent-watchdog"


def control_pool_name(inv: Any) -> str:
    """Work pool of the parent flows: `inventory.fleet.control_pool` (default `<fleet>-control`)."""
    return str(inv.fleet.control_pool)


def device_deployment_name(flow_name: str, resort: str | _Named) -> str:
    """Full deployment name of a device subflow on a resort: `activate-hotel/resort-a`.

    Raises:
        KeyError: `flow_name` is not a device subflow.
    """
    if flow_name not in DEVICE_FLOWS:
        raise KeyError(f"unknown device flow {flow_name!r}; known: {', '.join(DEVICE_FLOWS)}")
    return f"{flow_name}/{_resort(resort)}"


def parent_deployment_name(flow_name: str, fleet: str | Any) -> str:
    """Full deployment name of a parent flow for one fleet: `fleet-activate-hotel/demo`.

    Args:
        flow_name: a key of `PARENT_FLOWS`.
        fleet: the fleet's name, or an inventory (its `fleet.name`). Each fleet gets its own
            deployment, so two fleets on one server do not repoint each other's.

    Raises:
        KeyError: `flow_name` is not a parent flow.
    """
    if flow_name not in PARENT_FLOWS:
        raise KeyError(f"unknown parent flow {flow_name!r}; known: {', '.join(PARENT_FLOWS)}")
    fleet_name = fleet if isinstance(fleet, str) else fleet.fleet.name
    return f"{flow_name}/{fleet_name}"


def estop_variable_name(resort: str | _Named) -> str:
    """Prefect variable holding the resort's e-stop latch: `fleet_estop__resort_a`."""
    return f"fleet_estop__{_variable_safe(_resort(resort))}"


def lock_holder_variable_name(resort: str | _Named) -> str:
    """Prefect variable recording who holds the resort's lock: `fleet_lock__resort_a`."""
    return f"fleet_lock__{_variable_safe(_resort(resort))}"


def lock_waiting_variable_name(resort: str | _Named) -> str:
    """Prefect variable a scheduler waiting for the resort's lock announces itself in:
    `fleet_lockwait__resort_a` (a batch keeping the lock across operations yields to it)."""
    return f"fleet_lockwait__{_variable_safe(_resort(resort))}"


def status_variable_name(resort: str | _Named) -> str:
    """Prefect variable the agent publishes its status in: `fleet_status__resort_a`."""
    return f"fleet_status__{_variable_safe(_resort(resort))}"


def worker_name(resort: str | _Named) -> str:
    """Name of the resort's agent (Prefect worker): `agent-resort-a`."""
    return f"agent-{_resort(resort)}"


def resource_id(resort: str | _Named) -> str:
    """Prefect event resource id of the resort: `plate-resort.resort.resort-a`."""
    return f"plate-resort.resort.{_resort(resort)}"


def _fleet_name(inv: Any) -> str:
    return inv if isinstance(inv, str) else str(inv.fleet.name)


def overview_artifact_key(inv: Any) -> str:
    """Keyed Prefect artifact holding the fleet's overview table: `fleet-demo-overview`.

    Artifact keys allow lowercase letters, digits and dashes; fleet names are slugs.

    Args:
        inv: the inventory, or the fleet name as a string.
    """
    return f"fleet-{_fleet_name(inv).lower().replace('_', '-')}-overview"


def occupancy_artifact_key(resort: str | _Named) -> str:
    """Keyed Prefect artifact with a resort's plates, hotel by room: `plates-resort-a`."""
    return f"plates-{_resort(resort).lower()}"


def alert_automation_name(inv: Any, kind: str) -> str:
    """Automation that notifies one kind of incident of a fleet: `fleet:demo:alert:estop`.

    Args:
        inv: the inventory, or the fleet name as a string.
        kind: the alert kind (`fleet.core.alerts.ALERT_KINDS`), or `agent-online`.
    """
    return f"fleet:{_fleet_name(inv)}:alert:{kind}"


def alert_block_name(inv: Any) -> str:
    """Webhook notification block `fleet provision` creates for `alerts.webhook_url`:
    `fleet-demo-alerts` (block names allow lowercase letters, digits and dashes)."""
    return f"fleet-{_fleet_name(inv).lower().replace('_', '-')}-alerts"
