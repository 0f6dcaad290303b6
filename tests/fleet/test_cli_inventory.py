"""`fleet inventory check|show|schema` through `fleet.cli.main([...])`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.core.inventory import inventory_schema
from tests.fleet.inventory_cases import DEMO, LAB, MALFORMED, REPO

BAD = """\
fleet:
  name: Lab
  work_pool: lab-resorts
resorts:
  - name: resort-a
    host: pi-a
    hotels: [A, A]
    motor_id: 999
"""


def test_check_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "check", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: 3 resorts")
    assert err == ""


def test_check_counts_inactive_resorts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "check", str(LAB)]) == 0
    assert capsys.readouterr().out == "ok: 4 resorts (1 inactive) in fleet lab\n"


def test_check_invalid_file_prints_one_line_per_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    monkeypatch.chdir(tmp_path)
    assert main(["inventory", "check", "bad.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "fleet: error: bad.yaml:2: fleet.name: must be a slug: a lowercase letter, then lowercase "
        "letters, digits or '-', at most 40 characters (got 'Lab')",
        "fleet: error: bad.yaml:7: resorts[0].hotels: duplicate hotel name 'A'",
        "fleet: error: bad.yaml:8: resorts[0].motor_id: must be <= 252 (got 999)",
    ]
    assert "Traceback" not in err


@pytest.mark.parametrize("verb", ["check", "show"])
def test_missing_file_exit_2_without_traceback(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["inventory", verb, str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"fleet: error: {missing}: cannot read inventory: no such file or directory\n"


def test_non_yaml_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("fleet: {name: [\n")
    assert main(["inventory", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fleet: error: {path}:2: not valid YAML: ")
    assert len(err.splitlines()) == 1


def test_show_json_is_the_resolved_view(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "show", str(DEMO), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fleet"]["name"] == "demo"
    assert data["fleet"]["control_pool"] == "demo-control"
    assert [r["name"] for r in data["resorts"]] == ["resort-a", "resort-b", "resort-c"]
    resort_c = data["resorts"][2]
    assert resort_c["rotation_direction"] == -1
    assert resort_c["rooms_per_hotel"] == 20  # built-in default applied
    assert resort_c["names"]["worker"] == "agent-resort-c"
    assert resort_c["names"]["status_variable"] == "fleet_status__resort_c"


def test_show_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "show", str(LAB)]) == 0
    out = capsys.readouterr().out
    assert "fleet lab" in out
    assert "control pool  lab-control" in out
    assert "move limit    3 (fleet:lab:moves)" in out
    assert "parent beat   30 s (a silent parent run is Crashed after 120 s)" in out
    header = next(line for line in out.splitlines() if line.startswith("RESORT"))
    assert header.split()[:3] == ["RESORT", "ACTIVE", "HOST"]
    row4 = next(line for line in out.splitlines() if line.startswith("resort-4 "))
    assert row4.split()[1] == "no"
    assert "resort:resort-3" in out and "fleet_estop__resort_3" in out


def test_schema_prints_the_committed_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == inventory_schema()
    assert out == (REPO / "inventory" / "schema.json").read_text()


def test_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["inventory", "check"])
    assert info.value.code == 2
    assert "FILE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_every_malformed_inventory_exits_2_with_its_lines_and_no_traceback(
    text: str,
    expected: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "x.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["inventory", "check", "x.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"fleet: error: {line}" for line in expected]
