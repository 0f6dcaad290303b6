"""A parent-flow request as an `Operation`: the inventory it names, its target, its validation.

Shared by the parent flows (`flows.parent`, `flows.maintenance`, `flows.batch`) and by
`fleet.client`, which validates a request here before it starts any flow run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleet.core.errors import PlanError
from fleet.core.plan import Operation, validate_operation
from fleet.core.selection import Selector

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "as_selector",
    "load_fleet_inventory",
    "make_operation",
    "resolve_inventory_path",
    "step_args",
    "validate_request",
]


def resolve_inventory_path(path: str | os.PathLike[str] | None = None) -> str:
    """`path`, else `$FLEET_INVENTORY`, else `inventory/demo.yaml` (`fleet.core.inventory`)."""
    from fleet.core.inventory import inventory_path

    return str(inventory_path(path))


def load_fleet_inventory(path: str | os.PathLike[str] | None = None) -> Any:
    """Load the inventory named by `resolve_inventory_path(path)` (raises InventoryError)."""
    from fleet.core.inventory import load_inventory

    return load_inventory(resolve_inventory_path(path))


def as_selector(value: Selector | Mapping[str, Any] | None) -> Selector | None:
    """A `Selector` from its dict form (None stays None)."""
    if value is None or isinstance(value, Selector):
        return value
    return Selector.model_validate(dict(value))


def make_operation(action: str, resort: str | None, selector: Any, **args: Any) -> Operation:
    """The `Operation` of one request; a malformed one raises `PlanError` (one line per problem)."""
    from pydantic import ValidationError

    try:
        return Operation(resort=resort, selector=as_selector(selector), action=action, **args)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or action}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise PlanError(lines) from None


def validate_request(inventory: Inventory, op: Operation) -> None:
    """Raise PlanError when `op` cannot run on this inventory (nothing is queued)."""
    problems = validate_operation(inventory, op)
    if problems:
        raise PlanError(problems)


def step_args(step: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The arguments of one `fleet-reserve` step (`hotel`, `angle`); other keys raise PlanError."""
    extra = set(step) - {"action", "hotel", "angle"}
    if extra:
        raise PlanError(f"steps[{index}]: unknown key(s) {', '.join(sorted(extra))}")
    return {k: step[k] for k in ("hotel", "angle") if k in step}
