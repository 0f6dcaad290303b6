"""Turns a resort of the fleet inventory into the device side's `AgentSettings`.

Used by `device-agent run --inventory FILE --device NAME` (see `flows.agent_main`) and by the
rollout, which writes the result as the Pi's settings file. Every name comes from
`resort_common.names`.
"""

from __future__ import annotations

import os
from pathlib import Path

from device_agent.errors import ConfigurationError
from device_agent.settings import AgentSettings, DeviceConfig, EmulatorOptions
from fleet.core.alerts import offline_after
from fleet.core.errors import DeviceSelectionError, InventoryError
from fleet.core.inventory import Inventory, Resort, load_inventory
from resort_common import names

__all__ = [
    "AGENT_STATE_ROOT",
    "AgentInventoryError",
    "UnknownDeviceError",
    "agent_settings_for",
    "default_state_dir",
    "resolve_agent_settings",
    "with_local_server",
]

#: Where a real (non-emulated) agent keeps its state on the Pi: `<root>/<resort>`.
AGENT_STATE_ROOT = Path("/var/lib/plate-resort-agent")

#: Device fields copied one to one from the resort into `DeviceConfig`.
_DEVICE_FIELDS = tuple(name for name in DeviceConfig.model_fields if name != "name")


class AgentInventoryError(InventoryError, ConfigurationError):
    """The inventory given to `device-agent --inventory` is invalid (exit 2 on the device CLI)."""


class UnknownDeviceError(DeviceSelectionError, ConfigurationError):
    """`--device NAME` is not a resort of the inventory (exit 2 on the device CLI)."""


def default_state_dir(inv: Inventory, resort: Resort) -> Path:
    """State directory of the resort's agent.

    Emulated resorts keep state beside the repository, `<inventory dir>/../.fleet-state/<fleet>/
    <resort>` (the same tree their relative serial links point into); real ones use
    `/var/lib/plate-resort-agent/<resort>` on the Pi.
    """
    if resort.emulate:
        base = Path(inv.path).parent / ".." / ".fleet-state" / inv.fleet.name / resort.name
        return Path(os.path.normpath(base))
    return AGENT_STATE_ROOT / resort.name


def agent_settings_for(
    inv: Inventory, resort: Resort | str, state_dir: Path | str | None = None
) -> AgentSettings:
    """The `AgentSettings` of one resort of `inv`.

    Args:
        inv: the loaded inventory.
        resort: the resort (or its name).
        state_dir: override of the agent's state directory (default: `default_state_dir`).

    Raises:
        DeviceSelectionError: `resort` is a name that is not in the inventory.
    """
    if isinstance(resort, str):
        resort = inv.resort(resort)
    state = Path(state_dir) if state_dir is not None else default_state_dir(inv, resort)
    device = DeviceConfig(
        name=resort.name, **{field: getattr(resort, field) for field in _DEVICE_FIELDS}
    )
    emulator = EmulatorOptions(log_file=state / "emulator-writes.jsonl") if resort.emulate else None
    return AgentSettings(
        device=device,
        api_url=inv.fleet.api_url,
        work_pool=inv.fleet.work_pool,
        work_queue=names.work_queue_name(resort),
        worker_name=names.worker_name(resort),
        status_variable=names.status_variable_name(resort),
        estop_variable=names.estop_variable_name(resort),
        resource_id=names.resource_id(resort),
        state_dir=state,
        emulator=emulator,
        heartbeat=inv.fleet.agent_heartbeat,
        offline_after=offline_after(inv) if inv.fleet.alerts is not None else None,
    )


def resolve_agent_settings(
    inventory_path: str | os.PathLike[str], device_name: str
) -> AgentSettings:
    """Load the inventory at `inventory_path` and build the settings of resort `device_name`.

    Raises:
        AgentInventoryError: the inventory is unreadable or invalid (an `InventoryError` that the
            device CLI also reports as a configuration error).
        UnknownDeviceError: no such resort (a `DeviceSelectionError` naming the known resorts).
    """
    try:
        inv = load_inventory(inventory_path)
    except InventoryError as exc:
        raise AgentInventoryError(exc.problems) from exc
    try:
        resort = inv.resort(device_name)
    except DeviceSelectionError as exc:
        raise UnknownDeviceError(str(exc)) from exc
    return with_local_server(agent_settings_for(inv, resort))


def with_local_server(settings: AgentSettings) -> AgentSettings:
    """Fill in the API of the local server `fleet server up` started, as `fleet` finds it.

    Only when neither the inventory (`fleet.api_url`) nor `PREFECT_API_URL` names a server: the
    state directory is `$FLEET_STATE_DIR`, else `./.fleet-state`. A server that requires an auth
    string gets it through `PREFECT_API_AUTH_STRING` (unless that is set already). Without a
    recorded server the settings are returned as they are (`device-agent run` then says what
    to set).
    """
    from fleet.core.errors import FleetError
    from fleet.core.server import resolve_api

    if settings.api_url or os.environ.get("PREFECT_API_URL"):
        return settings
    try:
        target = resolve_api()
    except FleetError:
        return settings
    if target.auth_string and not os.environ.get("PREFECT_API_AUTH_STRING"):
        os.environ["PREFECT_API_AUTH_STRING"] = target.auth_string
    return settings.model_copy(update={"api_url": target.url})
