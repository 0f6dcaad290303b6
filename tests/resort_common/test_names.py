"""resort_common.names: the boundary names of docs/DESIGN.md (fleet `demo`, resort `resort-a`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet.core.inventory import load_inventory
from resort_common import names

DEMO = Path(__file__).resolve().parents[2] / "inventory" / "demo.yaml"


def test_design_table_values() -> None:
    inv = load_inventory(DEMO)
    r = inv.resort("resort-a")
    assert inv.fleet.work_pool == "demo-resorts"
    assert names.WORKER_TYPE == "plate-resort"
    assert names.control_pool_name(inv) == "demo-control"
    assert names.work_queue_name(r) == names.work_queue_name("resort-a") == "resort-a"
    assert names.lock_name(r) == "resort:resort-a"
    assert names.fleet_limit_name(inv) == names.fleet_limit_name("demo") == "fleet:demo:moves"
    assert names.device_deployment_name("activate-hotel", r) == "activate-hotel/resort-a"
    assert names.DEVICE_FLOWS["activate-hotel"] == "flows.device:activate_hotel"
    parent = names.parent_deployment_name("fleet-activate-hotel", "demo")
    assert parent == "fleet-activate-hotel/demo"
    assert names.PARENT_FLOWS["fleet-activate-hotel"] == "flows.parent:activate_hotel"
    assert names.estop_variable_name(r) == "fleet_estop__resort_a"
    assert names.status_variable_name(r) == "fleet_status__resort_a"
    assert names.worker_name(r) == "agent-resort-a"
    assert names.resource_id(r) == "plate-resort.resort.resort-a"


def test_motion_flows_are_device_flows() -> None:
    assert {"activate-hotel", "go-home", "move-to-angle", "move-sequence"} == names.MOTION_FLOWS
    assert set(names.DEVICE_FLOWS) >= names.MOTION_FLOWS
    assert len(names.DEVICE_FLOWS) == 9
    for entrypoint in (*names.DEVICE_FLOWS.values(), *names.PARENT_FLOWS.values()):
        assert re.fullmatch(r"flows\.\w+:\w+", entrypoint)


@pytest.mark.parametrize("resort", ["a", "resort-a", "r2-d2-x", "x" * 40])
def test_variable_names_are_prefect_safe(resort: str) -> None:
    for name in (
        names.estop_variable_name(resort),
        names.status_variable_name(resort),
        names.lock_holder_variable_name(resort),
        names.lock_waiting_variable_name(resort),
    ):
        assert re.fullmatch(r"[a-z0-9_]+", name), name


def test_unknown_flow_names_raise() -> None:
    with pytest.raises(KeyError, match="unknown device flow"):
        names.device_deployment_name("fly", "resort-a")
    with pytest.raises(KeyError, match="unknown parent flow"):
        names.parent_deployment_name("fly", "demo")
