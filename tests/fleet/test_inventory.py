"""fleet.core.inventory: examples validate; each malformed inventory gets its one-line error."""

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
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "inventory" / "demo.yaml"
LAB = REPO / "inventory" / "lab.example.yaml"

# A small valid inventory; line numbers below refer to it (fleet = line 1, resort-b = line 10).
BASE = """\
fleet:
  name: lab
  work_pool: lab-resorts
defaults:
  hotels: [A, B, C, D]
resorts:
  - name: resort-a
    host: pi-a
    serial_port: /dev/ttyUSB0
  - name: resort-b
    host: pi-b
"""
RB = "    host: pi-b\n"  # last line of resort-b: append keys after it (they land on line 12)
WP = "  work_pool: lab-resorts\n"  # append fleet keys after it (line 4)


def sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def resort_b(extra: str) -> str:
    return sub(RB, RB + extra)


SDK_RATES = (
    "9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, "
    "1152000, 2000000, 2500000, 3000000, 3500000, 4000000"
)

# (id, file text, the exact lines of the InventoryError)
MALFORMED: list[tuple[str, str, list[str]]] = [
    (
        "unknown-top-level-key",
        BASE + "extras: 1\n",
        ["x.yaml:12: extras: unknown key (allowed: fleet, defaults, resorts)"],
    ),
    (
        "unknown-resort-key-typo",
        resort_b("    sped: 60\n"),
        ["x.yaml:12: resorts[1].sped: unknown key (did you mean 'speed'?)"],
    ),
    (
        "unknown-fleet-key",
        sub(WP, WP + "  pool: x\n"),
        ["x.yaml:4: fleet.pool: unknown key (did you mean 'work_pool'?)"],
    ),
    (
        "motor-id-wrong-type",
        resort_b("    motor_id: one\n"),
        ["x.yaml:12: resorts[1].motor_id: must be an integer (got 'one')"],
    ),
    (
        "motor-id-above-range",
        resort_b("    motor_id: 999\n"),
        ["x.yaml:12: resorts[1].motor_id: must be <= 252 (got 999)"],
    ),
    (
        "motor-id-below-range",
        resort_b("    motor_id: -1\n"),
        ["x.yaml:12: resorts[1].motor_id: must be >= 0 (got -1)"],
    ),
    (
        "motor-id-float",
        resort_b("    motor_id: 1.5\n"),
        ["x.yaml:12: resorts[1].motor_id: must be an integer (got 1.5)"],
    ),
    (
        "speed-zero",
        resort_b("    speed: 0\n"),
        ["x.yaml:12: resorts[1].speed: must be > 0 (got 0)"],
    ),
    (
        "speed-above-range",
        resort_b("    speed: 360\n"),
        ["x.yaml:12: resorts[1].speed: must be <= 270 (got 360)"],
    ),
    (
        "speed-not-a-number",
        resort_b("    speed: fast\n"),
        ["x.yaml:12: resorts[1].speed: must be a number (got 'fast')"],
    ),
    (
        "acceleration-negative-in-defaults",
        sub("  hotels: [A, B, C, D]\n", "  hotels: [A, B, C, D]\n  acceleration: -5\n"),
        ["x.yaml:6: defaults.acceleration: must be >= 0 (got -5)"],
    ),
    (
        "baudrate-not-an-sdk-rate",
        resort_b("    baudrate: 56000\n"),
        [
            "x.yaml:12: resorts[1].baudrate: must be a rate the Dynamixel SDK accepts: "
            f"{SDK_RATES} (got 56000)"
        ],
    ),
    (
        "rotation-direction-2",
        resort_b("    rotation_direction: 2\n"),
        ["x.yaml:12: resorts[1].rotation_direction: must be 1 or -1 (got 2)"],
    ),
    (
        "rotation-direction-bool",
        resort_b("    rotation_direction: true\n"),
        ["x.yaml:12: resorts[1].rotation_direction: must be 1 or -1 (got true)"],
    ),
    (
        "emulate-quoted-string",
        resort_b("    emulate: 'yes'\n"),
        ["x.yaml:12: resorts[1].emulate: must be true or false (got 'yes')"],
    ),
    (
        "move-timeout-above-range",
        resort_b("    move_timeout: 3600\n"),
        ["x.yaml:12: resorts[1].move_timeout: must be <= 600 (got 3600)"],
    ),
    (
        "max-current-above-range",
        resort_b("    max_current: 4.5\n"),
        ["x.yaml:12: resorts[1].max_current: must be <= 4 (got 4.5)"],
    ),
    (
        "hotels-empty",
        sub("[A, B, C, D]", "[]"),
        ["x.yaml:5: defaults.hotels: must have at least 1 item (got 0)"],
    ),
    (
        "hotels-duplicate",
        sub("[A, B, C, D]", "[A, B, A]"),
        ["x.yaml:5: defaults.hotels: duplicate hotel name 'A'"],
    ),
    (
        "hotels-more-than-8",
        sub("[A, B, C, D]", "[A, B, C, D, E, F, G, H, J]"),
        ["x.yaml:5: defaults.hotels: must have at most 8 items (got 9)"],
    ),
    (
        "hotel-name-lowercase",
        sub("[A, B, C, D]", "[a, B]"),
        ["x.yaml:5: defaults.hotels[0]: must be 1-4 uppercase letters or digits (got 'a')"],
    ),
    (
        "hotels-nowhere",
        sub("  hotels: [A, B, C, D]\n", "  speed: 20\n").replace(RB, RB + "    hotels: [A]\n"),
        ["x.yaml:7: resorts[0].hotels: required key missing (set it here or in defaults)"],
    ),
    (
        "resort-name-duplicate",
        sub("name: resort-b", "name: resort-a"),
        [
            "x.yaml:10: resorts[1].name: duplicate resort name 'resort-a' "
            "(first at resorts[0], line 7)"
        ],
    ),
    (
        "resort-name-not-a-slug",
        sub("name: resort-b", "name: Resort_B"),
        [
            "x.yaml:10: resorts[1].name: must be a slug: a lowercase letter, then lowercase "
            "letters, digits or '-', at most 40 characters (got 'Resort_B')"
        ],
    ),
    (
        "host-and-serial-port-duplicate",
        sub("host: pi-b", "host: pi-a"),
        [
            "x.yaml:10: resorts[1].serial_port: host 'pi-a' and serial port '/dev/ttyUSB0' "
            "are already used by resort-a (resorts[0])"
        ],
    ),
    (
        "host-missing",
        sub(RB, ""),
        ["x.yaml:10: resorts[1].host: required key missing"],
    ),
    (
        "host-with-space",
        sub("host: pi-b", "host: 'pi b'"),
        ["x.yaml:11: resorts[1].host: must be a hostname or an IP address (got 'pi b')"],
    ),
    (
        "fleet-block-missing",
        sub("fleet:\n  name: lab\n" + WP, ""),
        ["x.yaml:1: fleet: required key missing"],
    ),
    (
        "work-pool-missing",
        sub(WP, ""),
        ["x.yaml:1: fleet.work_pool: required key missing"],
    ),
    (
        "fleet-block-not-a-mapping",
        sub("fleet:\n  name: lab\n" + WP, "fleet: lab\n"),
        ["x.yaml:1: fleet: must be a mapping (got 'lab')"],
    ),
    (
        "control-pool-equals-work-pool",
        sub(WP, WP + "  control_pool: lab-resorts\n"),
        ["x.yaml:4: fleet.control_pool: must differ from fleet.work_pool"],
    ),
    (
        "work-pool-equals-default-control-pool",
        sub(WP, "  work_pool: lab-control\n"),
        [
            "x.yaml:3: fleet.work_pool: must differ from the control pool "
            "(default lab-control; set fleet.control_pool)"
        ],
    ),
    (
        "api-url-not-http",
        sub(WP, WP + "  api_url: ftp://server/api\n"),
        [
            "x.yaml:4: fleet.api_url: must be an http(s) URL such as http://127.0.0.1:4200/api "
            "(got 'ftp://server/api')"
        ],
    ),
    (
        "max-concurrent-moves-zero",
        sub(WP, WP + "  max_concurrent_moves: 0\n"),
        ["x.yaml:4: fleet.max_concurrent_moves: must be >= 1 (got 0)"],
    ),
    (
        "parent-heartbeat-too-short",
        sub(WP, WP + "  parent_heartbeat: 2\n"),
        ["x.yaml:4: fleet.parent_heartbeat: must be >= 5 (got 2)"],
    ),
    (
        "empty-fleet",
        BASE.split("resorts:", maxsplit=1)[0] + "resorts: []\n",
        ["x.yaml:6: resorts: empty fleet: at least one resort is required"],
    ),
    (
        "resorts-missing",
        BASE.split("resorts:", maxsplit=1)[0],
        ["x.yaml:1: resorts: required key missing"],
    ),
    (
        "resort-not-a-mapping",
        BASE + "  - resort-c\n",
        ["x.yaml:12: resorts[2]: must be a mapping (got 'resort-c')"],
    ),
    (
        "min-voltage-not-below-max",
        resort_b("    min_voltage: 12\n    max_voltage: 11.5\n"),
        ["x.yaml:12: resorts[1].min_voltage: min_voltage (12) must be below max_voltage (11.5)"],
    ),
    (
        "relative-serial-port-on-real-hardware",
        resort_b("    serial_port: tty-b\n"),
        [
            "x.yaml:12: resorts[1].serial_port: relative path 'tty-b' is only allowed with "
            "emulate: true (a real port needs an absolute path such as /dev/serial/by-id/...)"
        ],
    ),
    (
        "labels-not-a-list",
        resort_b("    labels: a, b\n"),
        ["x.yaml:12: resorts[1].labels: must be a list (got 'a, b')"],
    ),
    (
        "duplicate-yaml-key",
        resort_b("    host: pi-c\n"),
        ["x.yaml:12: resorts[1].host: duplicate key (first at line 11)"],
    ),
    (
        "not-yaml",
        "fleet: [unclosed\nresorts:\n",
        ["x.yaml:2: not valid YAML: expected ',' or ']', but got ':'"],
    ),
    (
        "top-level-not-a-mapping",
        "- fleet\n- resorts\n",
        ["x.yaml:1: top level must be a mapping of fleet, defaults, resorts (got a list)"],
    ),
    (
        "empty-file",
        "",
        ["x.yaml:1: empty file: expected a mapping with keys fleet, defaults, resorts"],
    ),
    (
        "every-problem-collected",
        sub(WP, "").replace(RB, RB + "    motor_id: 300\n    speed: -1\n"),
        [
            "x.yaml:1: fleet.work_pool: required key missing",
            "x.yaml:11: resorts[1].motor_id: must be <= 252 (got 300)",
            "x.yaml:12: resorts[1].speed: must be > 0 (got -1)",
        ],
    ),
]


def test_the_base_inventory_is_valid() -> None:
    inv = parse_inventory(BASE, "x.yaml")
    assert inv.resort_names == ("resort-a", "resort-b")


def test_the_table_has_at_least_25_distinct_cases() -> None:
    assert len({case_id for case_id, _, _ in MALFORMED}) == len(MALFORMED) >= 25
    assert len({text for _, text, _ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_inventory_is_rejected_with_its_exact_message(
    text: str, expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        load_inventory("x.yaml")
    assert info.value.problems == expected
    assert str(info.value) == "\n".join(expected)
    assert all("\n" not in line for line in info.value.problems)


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        load_inventory("nope.yaml")
    assert info.value.problems == ["nope.yaml: cannot read inventory: no such file or directory"]


def test_directory_instead_of_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "inv").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        load_inventory("inv")
    assert info.value.problems == ["inv: cannot read inventory: is a directory"]


def test_binary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.yaml").write_bytes(b"\xff\xfe\x00garbage")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        load_inventory("x.yaml")
    assert info.value.problems == ["x.yaml: cannot read inventory: not UTF-8 text"]


def test_recursive_alias_is_rejected_not_a_crash() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory("fleet: &a [*a]\n", "x.yaml")
    assert info.value.problems == ["x.yaml:1: not valid YAML: recursive alias"]


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
