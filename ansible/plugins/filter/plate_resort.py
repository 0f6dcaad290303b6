"""Ansible filters: agent settings and control-host files, built on the controller by the package.

``plate_resort_agent_settings`` turns (fleet inventory file, resort name) into the JSON-ready dict
of ``device_agent.settings.AgentSettings`` through ``flows.agent_settings.agent_settings_for``,
then applies the Pi-side paths (state directory, emulator link) and re-validates the result, so
every name in the file comes from ``resort_common.names`` and the schema is checked before anything
is copied to a Pi.

``plate_resort_server_env`` and ``plate_resort_server_haproxy`` build a control host's process
environments and HAProxy configuration (role ``fleet_server``) from the inventory's ``server:``
block through ``fleet.core.server.control_host``: the same settings ``fleet server up --replicas N``
gives its processes on one machine.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def plate_resort_agent_settings(
    resort_name: str,
    fleet_inventory: str,
    state_dir: str,
    api_url: str | None = None,
    emulator_instant: bool | None = None,
) -> dict[str, Any]:
    """Agent settings of `resort_name` as a JSON-ready dict, with the Pi's own paths.

    Args:
        resort_name: resort in the fleet inventory.
        fleet_inventory: path of the fleet inventory file on the controller.
        state_dir: the agent's state directory on the Pi (one per resort).
        api_url: Prefect API URL the Pi uses (default: the inventory's `fleet.api_url`).
        emulator_instant: override the emulator's `instant` switch (emulated resorts only).

    Raises:
        AnsibleFilterError: unknown resort or invalid inventory/settings (one line each).
    """
    try:
        from device_agent.settings import AgentSettings
        from fleet.core.inventory import load_inventory
        from flows.agent_settings import agent_settings_for
    except ImportError as exc:
        raise AnsibleFilterError(f"plate-resort-fleet is not importable: {exc}") from exc
    try:
        inv = load_inventory(fleet_inventory)
        settings = agent_settings_for(inv, resort_name, state_dir=state_dir)
        data = settings.model_dump(mode="json")
        if api_url:
            data["api_url"] = api_url
        if data.get("emulator") is not None:
            # The agent creates the emulator's pty link itself; on the Pi it lives in the
            # state directory (the controller-side path means nothing there).
            data["device"]["serial_port"] = f"{state_dir}/tty"
            if emulator_instant is not None:
                data["emulator"]["instant"] = bool(emulator_instant)
        return AgentSettings.model_validate(data).model_dump(mode="json")
    except Exception as exc:  # InventoryError, DeviceSelectionError, ValidationError: one line
        message = " ".join(str(exc).split())
        raise AnsibleFilterError(f"agent settings for {resort_name!r}: {message}") from exc


def _server_block(fleet_inventory: str) -> Any:
    try:
        from fleet.core.inventory import load_inventory
    except ImportError as exc:
        raise AnsibleFilterError(f"plate-resort-fleet is not importable: {exc}") from exc
    try:
        inv = load_inventory(fleet_inventory)
    except Exception as exc:  # InventoryError: one line
        raise AnsibleFilterError(" ".join(str(exc).split())) from exc
    if inv.server is None:
        raise AnsibleFilterError(f"{fleet_inventory}: no server: block (the control hosts)")
    return inv.server


def plate_resort_server_env(
    role: str,
    fleet_inventory: str,
    *,
    port: int,
    home: str,
    database_password: str,
    redis_password: str | None = None,
    auth_string: str | None = None,
    register_blocks: bool = True,
) -> dict[str, str]:
    """Environment of one Prefect process of a control host (`api` replica or `services`).

    Raises:
        AnsibleFilterError: invalid inventory, no `server:` block, unknown role.
    """
    from fleet.core.server.control_host import control_host_env

    if role not in ("api", "services"):
        raise AnsibleFilterError(f"plate_resort_server_env: role must be api or services: {role}")
    return control_host_env(
        _server_block(fleet_inventory),
        "api" if role == "api" else "services",
        port=int(port),
        home=home,
        database_password=database_password,
        redis_password=redis_password or None,
        auth_string=auth_string or None,
        register_blocks=bool(register_blocks),
    )


def plate_resort_server_haproxy(fleet_inventory: str) -> str:
    """HAProxy's configuration of a control host: every replica of every control host."""
    from fleet.core.server.control_host import control_host_haproxy

    return control_host_haproxy(_server_block(fleet_inventory))


class FilterModule:
    """Filters of the plate-resort rollout."""

    def filters(self) -> dict[str, Any]:
        """Name -> callable."""
        return {
            "plate_resort_agent_settings": plate_resort_agent_settings,
            "plate_resort_server_env": plate_resort_server_env,
            "plate_resort_server_haproxy": plate_resort_server_haproxy,
        }
