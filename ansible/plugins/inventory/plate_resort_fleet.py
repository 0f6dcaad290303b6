"""Ansible inventory plugin: the Pis and the resorts they drive, read from the fleet inventory.

The fleet inventory (``inventory/*.yaml``) is read through the package's own loader
(``fleet.core.inventory.load_inventory``), so Ansible sees exactly what the control plane sees and a
broken file fails the run with the loader's one-line errors. Names that cross a system boundary
(work queue, worker name) come from ``resort_common.names``.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

DOCUMENTATION = r"""
name: plate_resort_fleet
short_description: Raspberry Pis and their plate resorts from a plate-resort fleet inventory
description:
  - Reads a plate-resort fleet inventory through C(fleet.core.inventory.load_inventory).
  - One Ansible host per Pi (the resorts' C(host) value); a Pi that drives several resorts is one
    host with several entries in C(plate_resort_resorts).
  - Groups - C(plate_resort_pis) (every Pi), C(resort_<name>) (the Pi of that resort, dashes
    become underscores), C(fleet_<fleet name>), plus C(keyed_groups)/C(groups) from constructed.
  - With a C(server) block, the control hosts form the group C(fleet_servers) (a child of
    C(fleet_<fleet name>)); each gets C(plate_resort_server) (the block, defaults applied),
    C(plate_resort_server_host) (its name, address, replicas, and C(first), the host that also runs
    the background services and the migration) and the pinned C(plate_resort_prefect_version) and
    C(plate_resort_prefect_redis_version).
  - Requires the C(plate-resort-fleet) package in the controller's Python (the project venv).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: Token that marks this file as a source for this plugin.
    required: true
    choices: [plate_resort_fleet]
    type: str
  fleet_inventory:
    description:
      - Path of the fleet inventory file. A relative path is joined with the directory of this
        plugin configuration file (not the current working directory).
    required: true
    type: str
  include_inactive:
    description: Also list resorts with C(active = false) (their agents are then deployed too).
    type: bool
    default: false
"""

EXAMPLES = r"""
# inventory/lab.yml
plugin: plate_resort_fleet
fleet_inventory: ../../inventory/lab.example.yaml
compose:
  ansible_user: "'pi'"
keyed_groups:
  - key: plate_resort_resorts | length | string
    prefix: resorts
"""

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class InventoryModule(BaseInventoryPlugin, Constructable):
    """Build hosts (Pis), groups and host variables from a fleet inventory."""

    NAME = "plate_resort_fleet"
    # Values come from a project-owned, schema-validated file (names restricted by regex), so
    # they need not be tagged unsafe; untagged values keep `ansible-inventory --list` plain JSON.
    trusted_by_default = True

    def verify_file(self, path: str) -> bool:
        """Accept plugin config files ending in .yml/.yaml (content checked by `plugin:`)."""
        return super().verify_file(path) and path.endswith((".yml", ".yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        """Read the fleet inventory named in the config at `path` and populate `inventory`."""
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        fleet_file = self.get_option("fleet_inventory")
        if not os.path.isabs(fleet_file):
            fleet_file = os.path.join(os.path.dirname(os.path.abspath(path)), fleet_file)
        fleet_file = os.path.normpath(fleet_file)

        try:
            from fleet.core.errors import FleetError
            from fleet.core.inventory import load_inventory
            from resort_common import names
        except ImportError as exc:
            raise AnsibleParserError(
                f"plate_resort_fleet: the plate-resort-fleet package is not importable by "
                f"{sys.executable}: {exc}"
            ) from exc
        try:
            inv = load_inventory(fleet_file)
        except (FleetError, OSError) as exc:
            raise AnsibleParserError(str(exc)) from exc

        self._populate(inv, names, fleet_file)

    def _populate(self, inv: Any, names: Any, fleet_file: str) -> None:
        include_inactive = self.get_option("include_inactive")
        strict = self.get_option("strict")
        try:
            version = metadata.version("plate-resort-fleet")
        except metadata.PackageNotFoundError:
            version = None

        pis_group = self.inventory.add_group("plate_resort_pis")
        fleet_group = self.inventory.add_group(_group_safe(f"fleet_{inv.fleet.name}"))
        self.inventory.add_child(fleet_group, pis_group)
        fleet_vars = {
            "plate_resort_fleet_inventory": fleet_file,
            "plate_resort_fleet_name": inv.fleet.name,
            "plate_resort_work_pool": inv.fleet.work_pool,
            "plate_resort_api_url": inv.fleet.api_url,
            "plate_resort_fleet_version": version,
        }
        for key, value in fleet_vars.items():
            self.inventory.set_variable(fleet_group, key, value)

        # Always there (empty without a server: block), so the server play matches no host quietly.
        servers_group = self.inventory.add_group("fleet_servers")
        self.inventory.add_child(fleet_group, servers_group)
        if inv.server is not None:
            self._populate_servers(inv.server, servers_group, fleet_vars, strict)

        by_host: dict[str, list[Any]] = {}
        for resort in inv.resorts:
            if resort.active or include_inactive:
                by_host.setdefault(resort.host, []).append(resort)

        for host, resorts in by_host.items():
            hostname = self.inventory.add_host(host, group=pis_group)
            if host in _LOCAL_HOSTS:
                self.inventory.set_variable(hostname, "ansible_connection", "local")
            else:
                self.inventory.set_variable(hostname, "ansible_host", host)
            entries = [_resort_entry(resort, names) for resort in resorts]
            self.inventory.set_variable(hostname, "plate_resort_resorts", entries)
            for resort in resorts:
                group = self.inventory.add_group(_group_safe(f"resort_{resort.name}"))
                self.inventory.add_host(hostname, group=group)
            hostvars = self.inventory.get_host(hostname).get_vars()
            hostvars = {**fleet_vars, **hostvars}
            self._set_composite_vars(self.get_option("compose"), hostvars, hostname, strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, hostname, strict)
            self._add_host_to_keyed_groups(
                self.get_option("keyed_groups"), hostvars, hostname, strict
            )

    def _populate_servers(
        self, server: Any, group: str, fleet_vars: dict[str, Any], strict: bool
    ) -> None:
        """The control hosts of the `server:` block: members of `group`, and their variables."""
        from fleet.core.inventory import pinned_versions

        pins = pinned_versions()
        server_vars = {
            "plate_resort_server": server.model_dump(mode="json"),
            "plate_resort_prefect_version": pins.get("prefect"),
            "plate_resort_prefect_redis_version": pins.get("prefect-redis"),
        }
        for key, value in server_vars.items():
            self.inventory.set_variable(group, key, value)
        for index, host in enumerate(server.hosts):
            hostname = self.inventory.add_host(host.name, group=group)
            address = host.address or host.name
            if address in _LOCAL_HOSTS:
                self.inventory.set_variable(hostname, "ansible_connection", "local")
            else:
                self.inventory.set_variable(hostname, "ansible_host", address)
            entry = {
                "name": host.name,
                "address": address,
                "replicas": server.replicas_of(host),
                "first": index == 0,
            }
            self.inventory.set_variable(hostname, "plate_resort_server_host", entry)
            hostvars = {**fleet_vars, **server_vars, **self.inventory.get_host(hostname).get_vars()}
            self._set_composite_vars(self.get_option("compose"), hostvars, hostname, strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, hostname, strict)
            self._add_host_to_keyed_groups(
                self.get_option("keyed_groups"), hostvars, hostname, strict
            )


def _group_safe(name: str) -> str:
    """Ansible group names: letters, digits and underscores."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _resort_entry(resort: Any, names: Any) -> dict[str, Any]:
    """Host variable entry of one resort: what the role needs, names from `resort_common.names`."""
    return {
        "name": resort.name,
        "serial_port": str(resort.serial_port),
        "baudrate": resort.baudrate,
        "motor_id": resort.motor_id,
        "hotels": list(resort.hotels),
        "emulate": bool(resort.emulate),
        "active": bool(resort.active),
        "labels": list(resort.labels),
        "work_queue": names.work_queue_name(resort),
        "worker_name": names.worker_name(resort),
    }
