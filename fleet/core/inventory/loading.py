"""Loading an inventory: which file, reading it, and validation with one line per problem.

`load_inventory(path)` returns an `Inventory` whose `resorts` have the defaults applied (built-in
defaults < `defaults:` < the resort's own keys) and relative serial paths resolved against the
file's directory. Every problem is reported, each as one line ``FILE:LINE: key.path: reason``,
in one `fleet.core.errors.InventoryError`: the YAML is read with a line per key path
(`fleet.core.inventory._yaml`), validated against the file's models collecting every error, then
checked across keys and resorts (`fleet.core.inventory.checks`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fleet.core.errors import InventoryError
from fleet.core.inventory._yaml import (
    KeyPath,
    MarkedLoader,
    Problems,
    describe_error,
    show_value,
)
from fleet.core.inventory.checks import cross_checks
from fleet.core.inventory.fleet_block import AlertSettings, FleetSettings, RegistrySettings
from fleet.core.inventory.patterns import PATTERN_HINTS
from fleet.core.inventory.resolved import Inventory, resolve
from fleet.core.inventory.resort_block import ResortEntry, ResortSettings
from fleet.core.inventory.schema import InventoryFile
from fleet.core.inventory.server_block import ServerHost, ServerSettings

__all__ = [
    "DEFAULT_INVENTORY",
    "INVENTORY_ENV",
    "inventory_path",
    "load_inventory",
    "parse_inventory",
]


def _allowed_keys(path: KeyPath) -> list[str]:
    """Keys allowed in the mapping at `path` (for 'unknown key' hints)."""
    model: type[BaseModel] | None = None
    if path == ():
        model = InventoryFile
    elif path == ("fleet",):
        model = FleetSettings
    elif path == ("fleet", "alerts"):
        model = AlertSettings
    elif path == ("fleet", "registry"):
        model = RegistrySettings
    elif path == ("server",):
        model = ServerSettings
    elif len(path) == 3 and path[:2] == ("server", "hosts") and isinstance(path[2], int):
        model = ServerHost
    elif path == ("defaults",):
        model = ResortSettings
    elif len(path) == 2 and path[0] == "resorts" and isinstance(path[1], int):
        model = ResortEntry
    return list(model.model_fields) if model else []


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "too_short" and tuple(error["loc"]) == ("resorts",):
        return "empty fleet: at least one resort is required"
    return describe_error(error, allowed_keys=_allowed_keys, pattern_hints=PATTERN_HINTS)


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
    cross_checks(data, problems, base_dir)
    if problems or parsed is None:
        raise InventoryError(list(problems))
    return resolve(parsed, source, base_dir)


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
