"""fleet.core.inventory: examples validate, defaults resolve, resolved models, committed schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from fleet.core.errors import DeviceSelectionError, InventoryError
from fleet.core.inventory import (
    BUILTIN_DEFAULTS,
    Inventory,
    Resort,
    inventory_schema,
    load_inventory,
    parse_inventory,
    pinned_versions,
)
from tests.fleet.inventory_cases import BASE, DEMO, LAB, RB, REPO, SERVER, WP, resort_b, sub


def test_the_base_inventory_is_valid() -> None:
    inv = parse_inventory(BASE, "x.yaml")
    assert inv.resort_names == ("resort-a", "resort-b")


# --- the examples ------------------------------------------------------------------------------


def test_demo_inventory() -> None:
    inv = load_inventory(DEMO)
    assert inv.path == DEMO
    assert inv.fleet.name == "demo"
    assert inv.fleet.work_pool == "demo-resorts"
    assert inv.fleet.control_pool == "demo-control"
    assert inv.resort_names == ("resort-a", "resort-b", "resort-c")
    for resort in inv.resorts:
        assert resort.emulate and resort.active
        assert resort.host == "127.0.0.1"
        assert 30 <= resort.speed <= 120
        assert resort.serial_port == str(REPO / ".fleet-state" / "demo" / f"tty-{resort.name}")
    assert inv.resort("resort-b").hotels == ("A", "B", "C", "D", "E", "F")
    assert {label for r in inv.resorts for label in r.labels} >= {"incubator-side", "reader-side"}


def test_lab_example_inventory() -> None:
    inv = load_inventory(LAB)
    assert len(inv.resorts) == 4
    assert [r.active for r in inv.resorts].count(False) == 1
    assert not any(r.emulate for r in inv.resorts)
    assert all(r.serial_port.startswith("/dev/serial/by-id/usb-FTDI_") for r in inv.resorts)
    assert len({r.host for r in inv.resorts}) == 4
    assert inv.fleet.api_url is not None and inv.fleet.api_url.startswith("http")
    assert inv.server is not None
    assert [h.name for h in inv.server.hosts] == ["lab-prefect-1.lan", "lab-prefect-2.lan"]
    assert inv.server.redis_password_var == "vault_fleet_redis_password"


def test_server_block_is_optional_and_filled_with_defaults() -> None:
    assert parse_inventory(BASE, "x.yaml").server is None
    server = parse_inventory(BASE + SERVER, "x.yaml").server
    assert server is not None
    assert [(h.name, server.replicas_of(h)) for h in server.hosts] == [("ctl-1", 2), ("ctl-2", 3)]
    assert server.database_password_var == "vault_fleet_db_password"
    assert server.redis_password_var is None
    assert (server.balancer_port, server.api_port) == (4200, 4201)
    resolved = parse_inventory(BASE + SERVER, "x.yaml").to_resolved_dict()
    assert resolved["server"]["hosts"][0] == {
        "name": "ctl-1",
        "address": "10.0.0.5",
        "replicas": None,
    }


def test_pinned_versions_are_the_package_pins() -> None:
    pins = pinned_versions()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"prefect=={pins["prefect"]}"' in pyproject
    assert f'"prefect-redis=={pins["prefect-redis"]}"' in pyproject
    assert parse_inventory(BASE + SERVER + f"  prefect_version: {pins['prefect']}\n", "x.yaml")


# --- defaults and resolution -----------------------------------------------------------------


def test_defaults_are_inherited_and_overridden() -> None:
    text = sub("  hotels: [A, B, C, D]\n", "  hotels: [A, B, C, D]\n  speed: 45\n  labels: [x]\n")
    text = text.replace(RB, RB + "    speed: 90.5\n    motor_id: 7\n    labels: []\n")
    inv = parse_inventory(text, "x.yaml")
    a, b = inv.resorts
    # resort-a: defaults block, else the built-in defaults
    assert a.speed == 45.0 and a.labels == ("x",) and a.hotels == ("A", "B", "C", "D")
    assert a.motor_id == BUILTIN_DEFAULTS["motor_id"]
    assert a.acceleration == BUILTIN_DEFAULTS["acceleration"]
    assert a.emulate is False and a.active is True
    # resort-b: its own keys win (an empty list overrides too)
    assert b.speed == 90.5 and b.motor_id == 7 and b.labels == ()
    assert b.serial_port == "/dev/ttyUSB0"  # built-in default
    assert b.hotels == a.hotels


def test_builtin_defaults_fill_an_otherwise_empty_resort() -> None:
    inv = parse_inventory(BASE, "x.yaml")
    b = inv.resort("resort-b")
    for key, value in BUILTIN_DEFAULTS.items():
        got = getattr(b, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_relative_serial_port_resolves_against_the_inventory_directory(tmp_path: Path) -> None:
    folder = tmp_path / "inventory"
    folder.mkdir()
    text = resort_b("    emulate: true\n    serial_port: ../state/tty-b\n")
    (folder / "fleet.yaml").write_text(text)
    inv = load_inventory(folder / "fleet.yaml")
    assert inv.resort("resort-b").serial_port == str(tmp_path / "state" / "tty-b")
    assert inv.resort("resort-a").serial_port == "/dev/ttyUSB0"  # absolute: untouched


def test_relative_paths_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inv = load_inventory(os.path.relpath(DEMO, tmp_path))
    assert inv.resort("resort-a").serial_port == str(REPO / ".fleet-state/demo/tty-resort-a")
    assert inv.path == DEMO


def test_same_port_on_different_hosts_is_fine() -> None:
    inv = parse_inventory(resort_b("    serial_port: /dev/ttyUSB0\n"), "x.yaml")
    assert {r.serial_port for r in inv.resorts} == {"/dev/ttyUSB0"}


def test_same_relative_port_spelled_differently_is_a_duplicate(tmp_path: Path) -> None:
    text = sub("    serial_port: /dev/ttyUSB0\n", "    serial_port: ./tty\n    emulate: true\n")
    text = text.replace(RB, "    host: pi-a\n    serial_port: sub/../tty\n    emulate: true\n")
    with pytest.raises(InventoryError, match=r"resorts\[1\]\.serial_port: host 'pi-a'"):
        parse_inventory(text, "x.yaml", base_dir=tmp_path)


def test_control_pool_defaults_to_fleet_name_and_can_be_set() -> None:
    assert parse_inventory(BASE, "x.yaml").fleet.control_pool == "lab-control"
    inv = parse_inventory(sub(WP, WP + "  control_pool: parents\n"), "x.yaml")
    assert inv.fleet.control_pool == "parents"
    assert inv.fleet.max_concurrent_moves is None and inv.fleet.api_url is None
    assert inv.fleet.parent_heartbeat == 30.0  # the watchdog's default beat
    assert (
        parse_inventory(sub(WP, WP + "  parent_heartbeat: 12\n"), "x.yaml").fleet.parent_heartbeat
        == 12
    )


def test_unknown_resort_names_the_known_ones() -> None:
    inv = parse_inventory(BASE, "x.yaml")
    with pytest.raises(DeviceSelectionError, match=r"'resort-z'.*known: resort-a, resort-b"):
        inv.resort("resort-z")


def test_models_are_frozen() -> None:
    inv = parse_inventory(BASE, "x.yaml")
    with pytest.raises(ValidationError):
        inv.resorts[0].speed = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        inv.fleet.name = "other"  # type: ignore[misc]
    assert isinstance(inv, Inventory) and isinstance(inv.resorts[0], Resort)


def test_resolved_dict_has_defaults_and_derived_names() -> None:
    data = load_inventory(DEMO).to_resolved_dict()
    assert data["fleet"]["control_pool"] == "demo-control"
    assert data["fleet"]["fleet_limit"] == "fleet:demo:moves"
    assert data["fleet"]["parent_watchdog"] == "fleet:demo:parent-watchdog"
    assert data["fleet"]["parent_heartbeat"] == 30.0
    assert data["fleet"]["worker_type"] == "plate-resort"
    first = data["resorts"][0]
    assert first["speed"] == 60.0 and first["rooms_per_hotel"] == 20
    assert first["names"]["work_queue"] == "resort-a"
    assert first["names"]["lock"] == "resort:resort-a"
    assert first["names"]["estop_variable"] == "fleet_estop__resort_a"
    assert first["names"]["deployments"]["activate-hotel"] == "activate-hotel/resort-a"


def test_schema_is_committed_and_up_to_date() -> None:
    import json

    committed = json.loads((REPO / "inventory" / "schema.json").read_text())
    assert committed == inventory_schema(), "run: fleet inventory schema > inventory/schema.json"
    resort = committed["$defs"]["ResortEntry"]
    assert resort["additionalProperties"] is False
    assert set(resort["required"]) == {"name", "host"}
    assert "degrees per second" in resort["properties"]["speed"]["description"]
