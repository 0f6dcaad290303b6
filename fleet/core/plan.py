"""Batch plans: the `operations:` file format, its model and its validation against the inventory.

A plan is YAML or JSON (or a Python list of dicts)::

    operations:
      - {resort: resort-a, action: activate_hotel, hotel: B}
      - {selector: {labels: [cold], hotel: C}, action: activate_hotel, hotel: C}
      - {resort: resort-b, action: move_to_angle, angle: 90}
      - {resort: resort-b, action: go_home}

Every problem of the whole plan is reported at once, one line each, prefixed with the operation's
index (`operations[3].hotel: ...`), before anything is queued.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleet.core.errors import DeviceSelectionError, PlanError
from fleet.core.selection import Selector, matching_resorts
from resort_common.tunables import MAX_ACCELERATION, MAX_SPEED

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "ACTIONS",
    "FULL_TURN",
    "MAX_ANGLE",
    "MIN_ANGLE",
    "Operation",
    "Plan",
    "full_turn_time",
    "known_resort",
    "load_plan",
    "parse_plan",
    "validate_operation",
    "validate_plan",
    "validate_speed",
]

Action = Literal["activate_hotel", "go_home", "move_to_angle"]
ACTIONS: tuple[str, ...] = ("activate_hotel", "go_home", "move_to_angle")
MIN_ANGLE = 0.0
MAX_ANGLE = 360.0
#: degrees of the longest single move: moves never cross the seam, so just under one turn
FULL_TURN = 360.0

#: plan action -> device subflow name (`resort_common.names.DEVICE_FLOWS`)
DEVICE_FLOW_OF = {
    "activate_hotel": "activate-hotel",
    "go_home": "go-home",
    "move_to_angle": "move-to-angle",
}


class Operation(BaseModel):
    """One step of a plan: a target (resort or selector) and an action with its argument."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resort: str | None = Field(default=None, min_length=1)
    selector: Selector | None = None
    action: Action
    hotel: str | None = Field(default=None, min_length=1)
    angle: float | None = None

    @model_validator(mode="after")
    def _shape(self) -> Operation:
        if (self.resort is None) == (self.selector is None):
            raise ValueError("give exactly one of 'resort' or 'selector'")
        if self.action == "activate_hotel" and self.hotel is None:
            raise ValueError("activate_hotel needs 'hotel'")
        if self.action == "move_to_angle":
            if self.angle is None:
                raise ValueError("move_to_angle needs 'angle'")
            if not MIN_ANGLE <= self.angle < MAX_ANGLE:
                raise ValueError(
                    f"angle {self.angle:g} is out of range; allowed {MIN_ANGLE:g} <= angle < "
                    f"{MAX_ANGLE:g} degrees"
                )
        if self.action != "activate_hotel" and self.hotel is not None and self.selector is None:
            raise ValueError(f"{self.action} takes no 'hotel'")
        if self.action != "move_to_angle" and self.angle is not None:
            raise ValueError(f"{self.action} takes no 'angle'")
        return self

    @property
    def target(self) -> str:
        """The resort name, or `selector(labels=[..] hotel=..)`."""
        return self.resort or f"selector({self.selector.describe() if self.selector else ''})"

    def effective_selector(self) -> Selector | None:
        """The selector, with the hotel to activate added when the selector names none."""
        if self.selector is None:
            return None
        if self.action == "activate_hotel" and self.selector.hotel is None:
            return self.selector.model_copy(update={"hotel": self.hotel})
        return self.selector

    def parameters(self) -> dict[str, Any]:
        """Device-subflow parameters for this action."""
        if self.action == "activate_hotel":
            return {"hotel": self.hotel}
        if self.action == "move_to_angle":
            return {"angle": self.angle}
        return {}

    def describe(self) -> str:
        """`activate_hotel B on resort-a` for tables and logs."""
        arg = ""
        if self.action == "activate_hotel":
            arg = f" {self.hotel}"
        elif self.action == "move_to_angle" and self.angle is not None:
            arg = f" {self.angle:g}"
        return f"{self.action}{arg} on {self.target}"


class Plan(BaseModel):
    """A batch: operations in order (per resort, the order is kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operations: tuple[Operation, ...] = Field(min_length=1)


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after[_shape()]",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _format(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        where = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        lines.append(f"{where}: {msg}" if where else msg)
    return lines


def parse_plan(data: Any, *, source: str = "plan") -> Plan:
    """Build a `Plan` from parsed YAML/JSON (a mapping with `operations`, or a bare list).

    Raises:
        PlanError: one line per problem, each naming the operation index and field.
    """
    if isinstance(data, list):
        data = {"operations": data}
    if not isinstance(data, dict):
        raise PlanError(f"{source}: expected a mapping with 'operations:' (a list of operations)")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError([f"{source}: {line}" for line in _format(exc)]) from None


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a YAML or JSON plan file.

    Raises:
        PlanError: unreadable file, bad syntax or a malformed plan.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read plan ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PlanError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return parse_plan(data, source=str(path))


def validate_operation(inventory: Inventory, op: Operation) -> list[str]:
    """Problems of one operation against the inventory (empty when fine)."""
    problems: list[str] = []
    if op.resort is not None:
        try:
            resort = inventory.resort(op.resort)
        except DeviceSelectionError as exc:
            return [f"resort: {exc}"]
        if op.action == "activate_hotel" and op.hotel not in resort.hotels:
            problems.append(
                f"hotel: {op.hotel!r} is not a hotel of {resort.name}; allowed: "
                f"{', '.join(resort.hotels)}"
            )
        if not resort.active:
            problems.append(f"resort: {resort.name} is inactive in the inventory")
        return problems
    assert op.selector is not None
    selector = op.selector
    if op.action == "activate_hotel" and selector.hotel not in (None, op.hotel):
        problems.append(
            f"selector.hotel: {selector.hotel!r} differs from the hotel to activate {op.hotel!r}"
        )
    selector = op.effective_selector() or selector
    matches = [r for r in matching_resorts(inventory, selector) if r.active]
    if not matches:
        problems.append(f"selector: no active resort in the inventory fits {selector.describe()}")
    return problems


def validate_plan(inventory: Inventory, plan: Plan, *, source: str = "plan") -> None:
    """Check every operation against the inventory; nothing is queued by this.

    Raises:
        PlanError: one line per problem, `SOURCE: operations[i].field: reason`.
    """
    problems: list[str] = []
    for index, op in enumerate(plan.operations):
        for line in validate_operation(inventory, op):
            problems.append(f"{source}: operations[{index}].{line}")
    if problems:
        raise PlanError(problems)


def known_resort(inventory: Inventory, name: str) -> Any:
    """The inventory's resort called `name`.

    Raises:
        PlanError: `resort: unknown resort ...` (a bad request: nothing is queued).
    """
    try:
        return inventory.resort(name)
    except DeviceSelectionError as exc:
        raise PlanError(f"resort: {exc}") from None


def full_turn_time(speed: float, acceleration: float) -> float:
    """Seconds a `FULL_TURN` move takes at `speed` deg/s, `acceleration` deg/s^2 (0: rectangular).

    The servo's velocity profile is a trapezoid (a triangle when the ramps meet).
    """
    if acceleration <= 0:
        return FULL_TURN / speed
    if speed * speed / acceleration >= FULL_TURN:  # never reaches `speed`
        return 2.0 * math.sqrt(FULL_TURN / acceleration)
    return FULL_TURN / speed + speed / acceleration


def validate_speed(
    inventory: Inventory, resort: str, speed: float, acceleration: float | None = None
) -> None:
    """Check a `set-speed` request against the inventory before anything is queued.

    The speed must be in the inventory's range, and a full-turn move at it must fit the resort's
    `move_timeout` (else every long move would fail as "not reached in time").

    Raises:
        PlanError: one line per problem, naming the parameter and what is allowed.
    """
    target = known_resort(inventory, resort)
    problems: list[str] = []
    if not target.active:
        problems.append(f"resort: {target.name} is inactive in the inventory")
    if not (math.isfinite(speed) and 0 < speed <= MAX_SPEED):
        problems.append(
            f"speed: {speed:g} deg/s is out of range; allowed 0 < speed <= {MAX_SPEED:g} deg/s"
        )
    if acceleration is not None and not (
        math.isfinite(acceleration) and 0 <= acceleration <= MAX_ACCELERATION
    ):
        problems.append(
            f"acceleration: {acceleration:g} deg/s^2 is out of range; allowed 0 <= acceleration "
            f"<= {MAX_ACCELERATION:g} deg/s^2 (0 = rectangular profile)"
        )
    if not problems:
        accel = target.acceleration if acceleration is None else acceleration
        needed = full_turn_time(speed, accel)
        if needed > target.move_timeout:
            problems.append(
                f"speed: a full-turn move would take {needed:.1f} s at {speed:g} deg/s, longer "
                f"than {target.name}'s move_timeout of {target.move_timeout:g} s; allowed: a "
                "faster speed, or raise move_timeout in the inventory"
            )
    if problems:
        raise PlanError(problems)
