"""The resolved inventory that everything else uses, and how a validated file becomes one.

Resolving fills what the file leaves out: the control pool's default name, the heartbeats'
defaults, and each resort's settings merged from the built-in defaults, `defaults:` and its own
keys, with relative serial paths resolved against the inventory file's directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleet.core.errors import DeviceSelectionError
from fleet.core.inventory.fleet_block import (
    DEFAULT_AGENT_HEARTBEAT,
    DEFAULT_PARENT_HEARTBEAT,
    AlertSettings,
    RegistrySettings,
)
from fleet.core.inventory.resort_block import BUILTIN_DEFAULTS, ResortSettings
from fleet.core.inventory.schema import InventoryFile
from fleet.core.inventory.server_block import ServerSettings
from resort_common import names, tunables

__all__ = ["Fleet", "Inventory", "Resort", "resolve", "resolve_port"]

_RESOLVED = ConfigDict(extra="forbid", frozen=True)


class Fleet(BaseModel):
    """Resolved `fleet:` block (control_pool filled in)."""

    model_config = _RESOLVED

    name: str
    work_pool: str
    control_pool: str
    api_url: str | None = None
    max_concurrent_moves: int | None = None
    parent_heartbeat: float = DEFAULT_PARENT_HEARTBEAT
    agent_heartbeat: float = DEFAULT_AGENT_HEARTBEAT
    health_interval: float | None = None
    alerts: AlertSettings | None = None
    registry: RegistrySettings | None = None


class Resort(BaseModel):
    """One resort with the defaults applied (units: see the field descriptions of the file)."""

    model_config = _RESOLVED

    name: str
    host: str
    serial_port: str
    baudrate: int
    motor_id: tunables.MotorId
    hotels: tuple[str, ...] = Field(min_length=1, max_length=8)
    rooms_per_hotel: tunables.RoomsPerHotel
    offset_angle: tunables.OffsetAngle
    rotation_direction: tunables.RotationDirection
    speed: tunables.Speed = Field(description="deg/s of the carousel")
    acceleration: tunables.Acceleration = Field(description="deg/s^2; 0 = rectangular profile")
    position_tolerance: tunables.PositionTolerance = Field(description="degrees")
    move_timeout: tunables.MoveTimeout = Field(description="seconds")
    max_temperature: tunables.MaxTemperature = Field(description="Celsius")
    min_voltage: tunables.MinVoltage = Field(description="volts")
    max_voltage: tunables.MaxVoltage = Field(description="volts")
    max_current: tunables.MaxCurrent = Field(description="amperes")
    torque_limit: tunables.TorqueLimit = Field(description="amperes")
    homing_offset: tunables.HomingOffset = Field(description="degrees")
    emulate: bool
    active: bool
    labels: tuple[str, ...]

    def derived_names(self) -> dict[str, Any]:
        """Boundary names of this resort (queue, lock, worker, variables, deployments)."""
        return {
            "work_queue": names.work_queue_name(self),
            "lock": names.lock_name(self),
            "worker": names.worker_name(self),
            "estop_variable": names.estop_variable_name(self),
            "lock_holder_variable": names.lock_holder_variable_name(self),
            "status_variable": names.status_variable_name(self),
            "resource_id": names.resource_id(self),
            "deployments": {
                flow: names.device_deployment_name(flow, self) for flow in names.DEVICE_FLOWS
            },
        }


class Inventory(BaseModel):
    """A loaded, valid inventory: `load_inventory(path)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    fleet: Fleet
    defaults: ResortSettings
    resorts: tuple[Resort, ...]
    server: ServerSettings | None = None

    def resort(self, name: str) -> Resort:
        """The resort called `name`.

        Raises:
            DeviceSelectionError: no such resort (the message lists the known ones).
        """
        for resort in self.resorts:
            if resort.name == name:
                return resort
        known = ", ".join(r.name for r in self.resorts)
        raise DeviceSelectionError(
            f"unknown resort {name!r} in fleet {self.fleet.name} ({self.path}); known: {known}"
        )

    @property
    def resort_names(self) -> tuple[str, ...]:
        """Names of all resorts, in file order."""
        return tuple(r.name for r in self.resorts)

    def to_resolved_dict(self) -> dict[str, Any]:
        """JSON-ready view: defaults applied and the derived names of the fleet and each resort."""
        return {
            "path": str(self.path),
            "fleet": {
                **self.fleet.model_dump(mode="json"),
                "worker_type": names.WORKER_TYPE,
                "fleet_limit": names.fleet_limit_name(self),
                "parent_watchdog": names.parent_watchdog_name(self),
                "parent_deployments": {
                    flow: names.parent_deployment_name(flow, self.fleet.name)
                    for flow in names.PARENT_FLOWS
                },
            },
            "resorts": [
                {**r.model_dump(mode="json"), "names": r.derived_names()} for r in self.resorts
            ],
            **({"server": self.server.model_dump(mode="json")} if self.server else {}),
        }


def resolve_port(port: str, base_dir: Path) -> str:
    """A serial port path: relative ones resolved against `base_dir`, URLs and absolute as given."""
    if "://" in port or os.path.isabs(port):
        return port
    return os.path.normpath(os.path.join(base_dir, port))


def resolve(parsed: InventoryFile, source: str, base_dir: Path) -> Inventory:
    """The `Inventory` of a validated file: built-in defaults < `defaults:` < the resort's keys.

    Args:
        parsed: the validated file.
        source: the file's path as the user gave it (made absolute against the cwd).
        base_dir: directory relative serial paths are resolved against.
    """
    fleet_in = parsed.fleet
    fleet = Fleet(
        name=fleet_in.name,
        work_pool=fleet_in.work_pool,
        control_pool=fleet_in.control_pool or f"{fleet_in.name}-control",
        api_url=fleet_in.api_url,
        max_concurrent_moves=fleet_in.max_concurrent_moves,
        parent_heartbeat=fleet_in.parent_heartbeat or DEFAULT_PARENT_HEARTBEAT,
        agent_heartbeat=fleet_in.agent_heartbeat or DEFAULT_AGENT_HEARTBEAT,
        health_interval=fleet_in.health_interval,
        alerts=fleet_in.alerts,
        registry=fleet_in.registry,
    )
    defaults = parsed.defaults.model_dump(exclude_none=True)
    resorts = []
    for entry in parsed.resorts:
        values = {**BUILTIN_DEFAULTS, **defaults, **entry.model_dump(exclude_none=True)}
        values["serial_port"] = resolve_port(values["serial_port"], base_dir)
        values["hotels"] = tuple(values["hotels"])
        values["labels"] = tuple(values["labels"])
        resorts.append(Resort.model_validate(values))
    path = Path(source)
    return Inventory(
        path=path if path.is_absolute() else (Path.cwd() / path).resolve(),
        fleet=fleet,
        defaults=parsed.defaults,
        resorts=tuple(resorts),
        server=parsed.server,
    )
