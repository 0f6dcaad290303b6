"""plate-resort-fleet control plane: inventory, names, selection, locks, provisioning, status.

Runs anywhere (a lab PC, CI, the Prefect server host). Never imports `device_agent` or `flows`;
see docs/DESIGN.md.
"""

from __future__ import annotations

from fleet.core.errors import (
    DeviceBusyError,
    DeviceSelectionError,
    DispatchError,
    EstopError,
    FleetError,
    InventoryError,
    LeaseError,
    PlanError,
    ProvisionError,
    ServerError,
    ServerUnavailableError,
)

__all__ = [
    "DeviceBusyError",
    "DeviceSelectionError",
    "DispatchError",
    "EstopError",
    "FleetError",
    "InventoryError",
    "LeaseError",
    "PlanError",
    "ProvisionError",
    "ServerError",
    "ServerUnavailableError",
]
