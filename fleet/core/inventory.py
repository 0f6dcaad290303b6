"""The fleet inventory: file format (pydantic models), loading, and line-numbered validation.

An inventory is one YAML file with three blocks::

    fleet:    {name, work_pool, control_pool?, api_url?, max_concurrent_moves?, parent_heartbeat?,
               agent_heartbeat?, health_interval?, alerts?: {webhook_url | webhook_url_env | block,
               token_env?, offline_after?, lock_held_after?}}
    defaults: {any resort tunable}          # every resort inherits these
    resorts:  [{name, host, ...tunables}]   # and may override them

`load_inventory(path)` returns an `Inventory` whose `resorts` have the defaults applied (built-in
defaults < `defaults:` < the resort's own keys) and relative serial paths resolved against the
file's directory. Every problem is reported, each as one line
``FILE:LINE: key.path: reason``, in one `fleet.core.errors.InventoryError`.

Units everywhere: degrees of the carousel, seconds, deg/s, deg/s^2, volts, amperes, Celsius.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleet.core._inventory_yaml import (
    KeyPath,
    MarkedLoader,
    Problems,
    describe_error,
    show_value,
)
from fleet.core.alerts import DEFAULT_AGENT_HEARTBEAT, OFFLINE_BEATS, AlertSettings
from fleet.core.errors import DeviceSelectionError, InventoryError
from fleet.core.watchdog import DEFAULT_PARENT_HEARTBEAT, MISSED_BEATS
from resort_common import names
from resort_common.tunables import (
    DEVICE_DEFAULTS,
    HOTEL_PATTERN,
    MAX_ACCELERATION,
    MAX_SPEED,
    MAX_TORQUE_LIMIT,
    SDK_BAUDRATES,
    Acceleration,
    HomingOffset,
    Hotels,
    MaxCurrent,
    MaxTemperature,
    MaxVoltage,
    MinVoltage,
    MotorId,
    MoveTimeout,
    OffsetAngle,
    PositionTolerance,
    RoomsPerHotel,
    RotationDirection,
    SerialPort,
    Speed,
    TorqueLimit,
)

__all__ = [
    "DEFAULT_INVENTORY",
    "INVENTORY_ENV",
    "MAX_ACCELERATION",
    "MAX_SPEED",
    "MAX_TORQUE_LIMIT",
    "SDK_BAUDRATES",
    "Fleet",
    "Inventory",
    "InventoryFile",
    "Resort",
    "ResortEntry",
    "ResortSettings",
    "inventory_path",
    "inventory_schema",
    "load_inventory",
    "parse_inventory",
]

SLUG_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
POOL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$"
LABEL_PATTERN = r"^[^\s,]{1,64}$"
URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"

# Why a string did not match its pattern, in words (by pattern).
_PATTERN_HINTS = {
    SLUG_PATTERN: "must be a slug: a lowercase letter, then lowercase letters, digits or '-', "
    "at most 40 characters",
    HOTEL_PATTERN: "must be 1-4 uppercase letters or digits",
    POOL_PATTERN: "must be lowercase letters, digits or '-', at most 63 characters",
    HOST_PATTERN: "must be a hostname or an IP address",
    LABEL_PATTERN: "must be 1-64 characters without spaces or commas",
    URL_PATTERN: "must be an http(s) URL such as http://127.0.0.1:4200/api",
}

_INPUT = ConfigDict(extra="forbid", frozen=True, strict=True)

Baudrate = int
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]

# Built-in defaults of every setting: the device's (`resort_common.tunables`) and the fleet's own.
# `hotels` has none: set it in `defaults:` or on each resort.
BUILTIN_DEFAULTS: dict[str, Any] = {
    **DEVICE_DEFAULTS,
    "emulate": False,
    "active": True,
    "labels": [],
}

_DESCRIPTIONS = {
    "serial_port": "Serial device of the U2D2 on the resort's host. Use a stable "
    "/dev/serial/by-id/... path; relative paths (emulated resorts only) are resolved against "
    "the inventory file's directory. Default /dev/ttyUSB0.",
    "baudrate": "Bus speed in baud; one the Dynamixel SDK accepts (XM430 factory: 57600). "
    "Default 57600.",
    "motor_id": "Dynamixel ID of the carousel motor, 0-252. Default 1.",
    "hotels": "Hotel names in carousel order (1-8 unique names of 1-4 uppercase letters or "
    "digits); hotels are evenly spaced, the first at offset_angle.",
    "rooms_per_hotel": "Plate positions per hotel, 1-100 (rooms are numbered from 1). Default 20.",
    "offset_angle": "Carousel angle of the first hotel, degrees (-360 to 360). Default 0.",
    "rotation_direction": "1 or -1: which way the motor turns for increasing carousel angles. "
    "Default 1.",
    "speed": "Carousel speed in degrees per second (>0, at most 270). Default 30.",
    "acceleration": "Carousel acceleration in degrees per second squared (0 = rectangular "
    "velocity profile, at most 10000). Default 60.",
    "position_tolerance": "How close a move must end to its target, degrees (>0, at most 10). "
    "Default 1.",
    "move_timeout": "Seconds a move may take before it fails (>0, at most 600). Default 30.",
    "max_temperature": "Health warning above this motor temperature, degrees Celsius "
    "(>0, at most 100). Default 70.",
    "min_voltage": "Health warning below this input voltage, volts (0-16). Default 10.",
    "max_voltage": "Health warning above this input voltage, volts (0-20). Default 14.8.",
    "max_current": "Health warning above this motor current, amperes (>0, at most 4). Default 2.",
    "torque_limit": "Force cap of a move: the motor current (amperes) the servo may use in "
    "current-based position mode. A jammed carousel pushes with at most this; the move then "
    "fails as jammed. 0.1-3.2 (the servo's Current Limit). Default 1.0.",
    "homing_offset": "Homing Offset written to the servo (EEPROM 20), degrees (-90 to 90): shifts "
    "where the motor's 0/360 seam lies. Default 0.",
    "emulate": "true: the agent starts a motor emulator on a pty at serial_port instead of "
    "opening hardware. Default false.",
    "active": "false: out of service (never selected, not provisioned for moves). Default true.",
    "labels": "Free-form tags for selecting resorts (e.g. incubator-side). Default none.",
}


def _opt(key: str) -> Any:
    return Field(default=None, description=_DESCRIPTIONS[key])


def _reject_non_int(value: Any) -> Any:
    """Pydantic's `Literal[1, -1]` accepts true and 1.0 even in strict mode; the file does not."""
    if value is not None and type(value) is not int:
        raise ValueError(f"must be 1 or -1 (got {show_value(value)})")
    return value


class ResortSettings(BaseModel):
    """The `defaults:` block: every resort tunable, all optional."""

    model_config = _INPUT

    serial_port: SerialPort | None = _opt("serial_port")
    baudrate: Baudrate | None = _opt("baudrate")
    motor_id: MotorId | None = _opt("motor_id")
    hotels: Hotels | None = _opt("hotels")
    rooms_per_hotel: RoomsPerHotel | None = _opt("rooms_per_hotel")
    offset_angle: OffsetAngle | None = _opt("offset_angle")
    rotation_direction: RotationDirection | None = _opt("rotation_direction")
    speed: Speed | None = _opt("speed")
    acceleration: Acceleration | None = _opt("acceleration")
    position_tolerance: PositionTolerance | None = _opt("position_tolerance")
    move_timeout: MoveTimeout | None = _opt("move_timeout")
    max_temperature: MaxTemperature | None = _opt("max_temperature")
    min_voltage: MinVoltage | None = _opt("min_voltage")
    max_voltage: MaxVoltage | None = _opt("max_voltage")
    max_current: MaxCurrent | None = _opt("max_current")
    torque_limit: TorqueLimit | None = _opt("torque_limit")
    homing_offset: HomingOffset | None = _opt("homing_offset")
    emulate: bool | None = _opt("emulate")
    active: bool | None = _opt("active")
    labels: list[Label] | None = _opt("labels")

    _strict_int = field_validator("rotation_direction", mode="before")(_reject_non_int)

    @field_validator("baudrate")
    @classmethod
    def _check_baudrate(cls, value: int | None) -> int | None:
        if value is not None and value not in SDK_BAUDRATES:
            raise ValueError(
                f"must be a rate the Dynamixel SDK accepts: "
                f"{', '.join(map(str, SDK_BAUDRATES))} (got {value})"
            )
        return value

    @field_validator("hotels")
    @classmethod
    def _check_hotels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            seen: set[str] = set()
            for hotel in value:
                if hotel in seen:
                    raise ValueError(f"duplicate hotel name {hotel!r}")
                seen.add(hotel)
        return value


class ResortEntry(ResortSettings):
    """One item of `resorts:`: its name and host, plus any tunable to override `defaults:`."""

    name: str = Field(pattern=SLUG_PATTERN, description="Unique resort name (a slug).")
    host: str = Field(
        pattern=HOST_PATTERN, description="Hostname or IP address of the Pi that drives it."
    )


class FleetSettings(BaseModel):
    """The `fleet:` block."""

    model_config = _INPUT

    name: str = Field(pattern=SLUG_PATTERN, description="Fleet name (a slug).")
    work_pool: str = Field(
        pattern=POOL_PATTERN,
        description=f"Prefect work pool of the device agents (type {names.WORKER_TYPE}).",
    )
    control_pool: str | None = Field(
        default=None,
        pattern=POOL_PATTERN,
        description="Prefect work pool of the parent flows. Default <name>-control.",
    )
    api_url: str | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="Prefect API URL the agents use, e.g. http://lab-server:4200/api. "
        "Default: the agent's own PREFECT_API_URL.",
    )
    max_concurrent_moves: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Fleet-wide limit of simultaneous moves (power budget). Default: no limit.",
    )
    parent_heartbeat: float | None = Field(
        default=None,
        ge=5.0,
        le=600.0,
        description="Seconds between the heartbeats of a running parent flow. A parent run "
        f"silent for {MISSED_BEATS} of them (its process died) is marked Crashed by the "
        f"automation `fleet provision` creates. Default {DEFAULT_PARENT_HEARTBEAT:g}.",
    )
    agent_heartbeat: float | None = Field(
        default=None,
        ge=1.0,
        le=300.0,
        description="Seconds between two status publications (heartbeats) of an idle agent; it "
        f"also probes the idle servo this often. Default {DEFAULT_AGENT_HEARTBEAT:g}.",
    )
    health_interval: float | None = Field(
        default=None,
        ge=10.0,
        le=604800.0,
        description="Seconds between scheduled `fleet-health` runs (served by `fleet "
        "controller`). Default: no schedule.",
    )
    alerts: AlertSettings | None = Field(
        default=None,
        description="Notifications of incidents (hardware error, link lost, e-stop, agent "
        "offline, lock held too long), sent by Prefect automations. Default: none.",
    )


class InventoryFile(BaseModel):
    """A fleet inventory file: the fleet, defaults every resort inherits, and the resorts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="Fleet inventory")

    fleet: FleetSettings
    defaults: ResortSettings = Field(
        default_factory=ResortSettings, description="Tunables every resort inherits."
    )
    resorts: list[ResortEntry] = Field(
        min_length=1, description="The resorts (at least one), each a plate carousel on a Pi."
    )


# ---------------------------------------------------------------------------------------------
# The resolved view used by everything else.

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


class Resort(BaseModel):
    """One resort with the defaults applied (units: see the field descriptions of the file)."""

    model_config = _RESOLVED

    name: str
    host: str
    serial_port: str
    baudrate: int
    motor_id: MotorId
    hotels: tuple[str, ...] = Field(min_length=1, max_length=8)
    rooms_per_hotel: RoomsPerHotel
    offset_angle: OffsetAngle
    rotation_direction: RotationDirection
    speed: Speed = Field(description="deg/s of the carousel")
    acceleration: Acceleration = Field(description="deg/s^2; 0 = rectangular profile")
    position_tolerance: PositionTolerance = Field(description="degrees")
    move_timeout: MoveTimeout = Field(description="seconds")
    max_temperature: MaxTemperature = Field(description="Celsius")
    min_voltage: MinVoltage = Field(description="volts")
    max_voltage: MaxVoltage = Field(description="volts")
    max_current: MaxCurrent = Field(description="amperes")
    torque_limit: TorqueLimit = Field(description="amperes")
    homing_offset: HomingOffset = Field(description="degrees")
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
        }


def inventory_schema() -> dict[str, Any]:
    """JSON Schema of the inventory file format (for editor completion)."""
    schema = InventoryFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://plate-resort-fleet/inventory.schema.json",
        **schema,
    }


# ---------------------------------------------------------------------------------------------
# Loading: YAML with a line per key path (fleet.core._inventory_yaml), validation collecting every
# problem, then checks across keys and resorts.


def _allowed_keys(path: KeyPath) -> list[str]:
    """Keys allowed in the mapping at `path` (for 'unknown key' hints)."""
    model: type[BaseModel] | None = None
    if path == ():
        model = InventoryFile
    elif path == ("fleet",):
        model = FleetSettings
    elif path == ("fleet", "alerts"):
        model = AlertSettings
    elif path == ("defaults",):
        model = ResortSettings
    elif len(path) == 2 and path[0] == "resorts" and isinstance(path[1], int):
        model = ResortEntry
    return list(model.model_fields) if model else []


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "too_short" and tuple(error["loc"]) == ("resorts",):
        return "empty fleet: at least one resort is required"
    return describe_error(error, allowed_keys=_allowed_keys, pattern_hints=_PATTERN_HINTS)


def _resolve_port(port: str, base_dir: Path) -> str:
    if "://" in port or os.path.isabs(port):
        return port
    return os.path.normpath(os.path.join(base_dir, port))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_pools(fleet: Mapping[str, Any], problems: Problems) -> None:
    """The parent flows' pool must not be the device pool (also when it is the default)."""
    control, work, name = fleet.get("control_pool"), fleet.get("work_pool"), fleet.get("name")
    if control is not None and control == work:
        problems.add(("fleet", "control_pool"), "must differ from fleet.work_pool")
    elif control is None and isinstance(name, str) and work == f"{name}-control":
        problems.add(
            ("fleet", "work_pool"),
            f"must differ from the control pool (default {name}-control; set fleet.control_pool)",
        )


def _check_offline_bound(fleet: Mapping[str, Any], problems: Problems) -> None:
    """An agent is not offline before it has missed at least two heartbeats."""
    alerts = fleet.get("alerts")
    bound = alerts.get("offline_after") if isinstance(alerts, Mapping) else None
    beat = fleet.get("agent_heartbeat", DEFAULT_AGENT_HEARTBEAT)
    if _is_number(bound) and _is_number(beat) and bound < 2 * beat:
        problems.add(
            ("fleet", "alerts", "offline_after"),
            f"must be at least 2 x fleet.agent_heartbeat ({2 * beat:g} s; default "
            f"{OFFLINE_BEATS} x, got {bound:g})",
        )


def _cross_checks(data: Mapping[str, Any], problems: Problems, base_dir: Path) -> None:
    """Checks across keys and resorts, on the raw data (so they run even when others fail)."""
    fleet = data.get("fleet")
    if isinstance(fleet, Mapping):
        _check_pools(fleet, problems)
        _check_offline_bound(fleet, problems)
    raw_defaults = data.get("defaults")
    defaults = raw_defaults if isinstance(raw_defaults, Mapping) else {}
    scope = {**BUILTIN_DEFAULTS, **defaults}
    if (
        ("min_voltage" in defaults or "max_voltage" in defaults)
        and _is_number(scope["min_voltage"])
        and _is_number(scope["max_voltage"])
        and scope["min_voltage"] >= scope["max_voltage"]
    ):
        key = "min_voltage" if "min_voltage" in defaults else "max_voltage"
        problems.add(
            ("defaults", key),
            f"min_voltage ({show_value(scope['min_voltage'])}) must be below "
            f"max_voltage ({show_value(scope['max_voltage'])})",
        )
    resorts = data.get("resorts")
    if not isinstance(resorts, list):
        return
    names_seen: dict[str, int] = {}
    ports_seen: dict[tuple[str, str], tuple[str, int]] = {}
    for index, entry in enumerate(resorts):
        if not isinstance(entry, Mapping):
            continue
        here = ("resorts", index)
        merged = {**scope, **{k: v for k, v in entry.items() if v is not None}}
        name = entry.get("name")
        if isinstance(name, str):
            if name in names_seen:
                problems.add(
                    (*here, "name"),
                    f"duplicate resort name {name!r} (first at resorts[{names_seen[name]}], "
                    f"line {problems.line_of(('resorts', names_seen[name], 'name'))})",
                )
            else:
                names_seen[name] = index
        if merged.get("hotels") is None and "hotels" not in entry:
            problems.add((*here, "hotels"), "required key missing (set it here or in defaults)")
        if (
            ("min_voltage" in entry or "max_voltage" in entry)
            and _is_number(merged["min_voltage"])
            and _is_number(merged["max_voltage"])
            and merged["min_voltage"] >= merged["max_voltage"]
        ):
            key = "min_voltage" if "min_voltage" in entry else "max_voltage"
            problems.add(
                (*here, key),
                f"min_voltage ({show_value(merged['min_voltage'])}) must be below "
                f"max_voltage ({show_value(merged['max_voltage'])})",
            )
        host, port, emulate = entry.get("host"), merged.get("serial_port"), merged.get("emulate")
        relative = isinstance(port, str) and port and not os.path.isabs(port) and "://" not in port
        if relative and emulate is False:
            problems.add(
                (*here, "serial_port"),
                f"relative path {port!r} is only allowed with emulate: true "
                "(a real port needs an absolute path such as /dev/serial/by-id/...)",
            )
        if isinstance(host, str) and isinstance(port, str) and port:
            pair = (host.lower(), _resolve_port(port, base_dir))
            if pair in ports_seen:
                other, other_index = ports_seen[pair]
                problems.add(
                    (*here, "serial_port"),
                    f"host {host!r} and serial port {port!r} are already used by {other} "
                    f"(resorts[{other_index}])",
                )
            else:
                ports_seen[pair] = (str(name), index)


def parse_inventory(
    text: str, source: str = "<inventory>", base_dir: Path | None = None
) -> Inventory:
    """Parse and validate inventory YAML `text`.

    Args:
        text: the YAML document.
        source: how to name the file in messages (the path as the user gave it).
        base_dir: directory relative serial paths are resolved against (default: cwd).

    Raises:
        InventoryError: one line per problem, ``source:LINE: key.path: reason``.
    """
    base_dir = (base_dir or Path.cwd()).resolve()
    loader = MarkedLoader(text)
    try:
        data = loader.load_marked()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{mark.line + 1}:" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError([f"{source}:{where} not valid YAML: {reason}"]) from exc
    finally:
        loader.dispose()
    problems = Problems(source, loader.lines)
    if data is None:
        problems.add((), "empty file: expected a mapping with keys fleet, defaults, resorts")
        raise InventoryError(list(problems))
    if not isinstance(data, Mapping):
        problems.add(
            (), f"top level must be a mapping of fleet, defaults, resorts (got {show_value(data)})"
        )
        raise InventoryError(list(problems))
    for path, line, first in loader.duplicates:
        problems.add(path, f"duplicate key (first at line {first})", line=line)
    parsed: InventoryFile | None = None
    try:
        parsed = InventoryFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems.add(tuple(error["loc"]), _reason(error))
    _cross_checks(data, problems, base_dir)
    if problems or parsed is None:
        raise InventoryError(list(problems))
    return _resolve(parsed, source, base_dir)


def _resolve(parsed: InventoryFile, source: str, base_dir: Path) -> Inventory:
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
    )
    defaults = parsed.defaults.model_dump(exclude_none=True)
    resorts = []
    for entry in parsed.resorts:
        values = {**BUILTIN_DEFAULTS, **defaults, **entry.model_dump(exclude_none=True)}
        values["serial_port"] = _resolve_port(values["serial_port"], base_dir)
        values["hotels"] = tuple(values["hotels"])
        values["labels"] = tuple(values["labels"])
        resorts.append(Resort.model_validate(values))
    path = Path(source)
    return Inventory(
        path=path if path.is_absolute() else (Path.cwd() / path).resolve(),
        fleet=fleet,
        defaults=parsed.defaults,
        resorts=tuple(resorts),
    )


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate the inventory file at `path`.

    Raises:
        InventoryError: unreadable file or invalid inventory; one line per problem, each
            ``FILE:LINE: key.path: reason``.
    """
    source = os.fspath(path)
    file = Path(source)
    try:
        text = file.read_text(encoding="utf-8")
    except IsADirectoryError as exc:
        raise InventoryError([f"{source}: cannot read inventory: is a directory"]) from exc
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise InventoryError([f"{source}: cannot read inventory: {reason}"]) from exc
    except UnicodeDecodeError as exc:
        raise InventoryError([f"{source}: cannot read inventory: not UTF-8 text"]) from exc
    inv = parse_inventory(text, source=source, base_dir=file.resolve().parent)
    return inv.model_copy(update={"path": file.resolve()})


INVENTORY_ENV = "FLEET_INVENTORY"
DEFAULT_INVENTORY = Path("inventory/demo.yaml")


def inventory_path(option: str | os.PathLike[str] | None = None) -> Path:
    """The inventory file a command uses: `option`, else `$FLEET_INVENTORY`, else the demo's.

    Raises:
        InventoryError: none given and `inventory/demo.yaml` is absent from the current directory.
    """
    if option:
        return Path(option)
    if os.environ.get(INVENTORY_ENV):
        return Path(os.environ[INVENTORY_ENV])
    if DEFAULT_INVENTORY.exists():
        return DEFAULT_INVENTORY
    raise InventoryError(
        [f"no inventory: pass --inventory FILE or set {INVENTORY_ENV} ({DEFAULT_INVENTORY} absent)"]
    )


def dump_schema() -> str:
    """The JSON Schema as committed in inventory/schema.json (2-space indent, trailing newline)."""
    return json.dumps(inventory_schema(), indent=2) + "\n"
