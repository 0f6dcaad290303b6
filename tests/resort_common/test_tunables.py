"""resort_common.tunables: the inventory and the agent's settings accept exactly the same values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from device_agent.settings import DeviceConfig
from fleet.core.errors import InventoryError
from fleet.core.inventory import BUILTIN_DEFAULTS, parse_inventory
from resort_common.tunables import DEVICE_DEFAULTS, MAX_SPEED, MAX_TORQUE_LIMIT, SDK_BAUDRATES

INVENTORY = """\
fleet: {{name: lab, work_pool: lab-resorts}}
defaults: {{hotels: [A, B]}}
resorts: [{{name: r1, host: pi, serial_port: /dev/ttyUSB0, {key}: {value}}}]
"""

# (tunable, a value just inside its range, one just outside)
EDGES = [
    ("speed", MAX_SPEED, MAX_SPEED + 0.5),
    ("acceleration", 10000.0, 10000.5),
    ("torque_limit", MAX_TORQUE_LIMIT, MAX_TORQUE_LIMIT + 0.1),
    ("motor_id", 252, 253),
    ("rooms_per_hotel", 100, 101),
    ("offset_angle", -360.0, -360.5),
    ("homing_offset", 90.0, 90.5),
    ("move_timeout", 600.0, 600.5),
    ("max_current", 4.0, 4.1),
    ("baudrate", SDK_BAUDRATES[-1], 4500000),
]


def _inventory_accepts(key: str, value: object) -> bool:
    try:
        parse_inventory(INVENTORY.format(key=key, value=value), "lab.yaml")
    except InventoryError:
        return False
    return True


def _agent_accepts(key: str, value: object) -> bool:
    try:
        DeviceConfig(name="r1", hotels=("A", "B"), **{key: value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("key", "inside", "outside"), EDGES, ids=[e[0] for e in EDGES])
def test_inventory_and_agent_agree_on_each_range(key: str, inside: object, outside: object) -> None:
    assert _inventory_accepts(key, inside) and _agent_accepts(key, inside)
    assert not _inventory_accepts(key, outside)
    assert not _agent_accepts(key, outside)


def test_inventory_and_agent_share_the_defaults() -> None:
    config = DeviceConfig(name="r1", hotels=("A", "B"))
    for key, value in DEVICE_DEFAULTS.items():
        assert getattr(config, key) == value == BUILTIN_DEFAULTS[key], key
