"""The fleet inventory: the YAML file a lab writes (`fleet:`, `defaults:`, `resorts:`), loaded.

`load_inventory(path)` reads and validates a file (`loading`, `checks`, line-numbered YAML in
`_yaml`) into the resolved `Inventory` (`resolved`). The file's models: `fleet_block`,
`resort_block`, `server_block` (the control hosts, optional), and `schema` (the whole file,
exported as JSON Schema). Units everywhere: degrees of the carousel, seconds, deg/s, deg/s^2,
volts, amperes, Celsius.
"""

from __future__ import annotations

from fleet.core.inventory.fleet_block import AlertSettings, FleetSettings, RegistrySettings
from fleet.core.inventory.loading import (
    DEFAULT_INVENTORY,
    INVENTORY_ENV,
    inventory_path,
    load_inventory,
    parse_inventory,
)
from fleet.core.inventory.resolved import Fleet, Inventory, Resort
from fleet.core.inventory.resort_block import BUILTIN_DEFAULTS, ResortEntry, ResortSettings
from fleet.core.inventory.schema import InventoryFile, dump_schema, inventory_schema
from fleet.core.inventory.server_block import ServerHost, ServerSettings, pinned_versions

__all__ = [
    "BUILTIN_DEFAULTS",
    "DEFAULT_INVENTORY",
    "INVENTORY_ENV",
    "AlertSettings",
    "Fleet",
    "FleetSettings",
    "Inventory",
    "InventoryFile",
    "RegistrySettings",
    "Resort",
    "ResortEntry",
    "ResortSettings",
    "ServerHost",
    "ServerSettings",
    "dump_schema",
    "inventory_path",
    "inventory_schema",
    "load_inventory",
    "parse_inventory",
    "pinned_versions",
]
