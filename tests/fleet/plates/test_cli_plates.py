"""`fleet plates ...` end to end: on the default SQLite registry in a temporary state directory,
and on a PostgreSQL database (URL in the inventory, password from the environment) when
`FLEET_TEST_DATABASE_URL` names a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from fleet.cli import main
from fleet.core.plates.database import head_revision
from tests.support.inventories import write_inventory
from tests.support.registry_db import inventory_registry


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_db: URL) -> Path:
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    options = {}
    if registry_db.get_backend_name() != "sqlite":  # the default: plates.db in the state dir
        options["registry"], password = inventory_registry(registry_db, "PLATES_TEST_PASSWORD")
        monkeypatch.setenv("PLATES_TEST_PASSWORD", password or "")
    return write_inventory(
        tmp_path / "lab.yaml",
        "pl",
        [{"name": "pl-a", "rooms_per_hotel": 2}, {"name": "pl-b", "rooms_per_hotel": 2}],
        **options,
    )


def fleet(capsys: pytest.CaptureFixture[str], inventory: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["plates", *argv, "--inventory", str(inventory)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_registry_that_was_never_migrated_is_named_with_the_command_to_run(
    capsys: pytest.CaptureFixture[str], inventory: Path
) -> None:
    code, _, err = fleet(capsys, inventory, "where", "P1")
    assert code == 3, err
    assert err.strip().endswith(f"this fleet needs {head_revision()}: run `fleet plates migrate`")
    assert len(err.strip().splitlines()) == 1


def test_migrate_import_where_list_export_history(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path
) -> None:
    code, out, _ = fleet(capsys, inventory, "migrate")
    assert code == 0 and f"schema none -> {head_revision()}" in out
    assert "up to date" in fleet(capsys, inventory, "migrate")[1]
    free = json.loads(fleet(capsys, inventory, "list", "--free", "--json")[1])
    assert len(free) == 2 * 4 * 2  # resorts x hotels x rooms

    count = tmp_path / "count.csv"
    count.write_text("resort,hotel,room,plate,labware\npl-a,B,2,P1,96-well\npl-b,A,1,P2,\n")
    code, out, _ = fleet(capsys, inventory, "import", str(count))
    assert code == 0 and "2 occupied rooms" in out

    code, out, _ = fleet(capsys, inventory, "where", "P1", "--json")
    assert code == 0
    assert {k: json.loads(out)[k] for k in ("plate", "resort", "hotel", "room", "state")} == {
        "plate": "P1",
        "resort": "pl-a",
        "hotel": "B",
        "room": 2,
        "state": "occupied",
    }
    code, _, err = fleet(capsys, inventory, "where", "P9")
    assert (code, err.strip()) == (1, "fleet: plate P9 is not in the fleet")
    listed = json.loads(fleet(capsys, inventory, "list", "--resort", "pl-b", "--json")[1])
    assert [(r["plate"], r["hotel"], r["room"]) for r in listed] == [("P2", "A", 1)]

    exported = tmp_path / "again.csv"
    assert fleet(capsys, inventory, "export", str(exported))[0] == 0
    assert exported.read_text().splitlines() == [
        "resort,hotel,room,plate,labware,owner",
        "pl-a,B,2,P1,96-well,",
        "pl-b,A,1,P2,,",
    ]
    code, out, _ = fleet(capsys, inventory, "history", "P1")
    assert code == 0 and "counted" in out and "free -> occupied" in out


def test_a_bad_count_file_names_every_line_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path
) -> None:
    fleet(capsys, inventory, "migrate")
    good = tmp_path / "good.csv"
    good.write_text("resort,hotel,room,plate\npl-a,A,1,KEEP\n")
    assert fleet(capsys, inventory, "import", str(good))[0] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "resort,hotel,room,plate\npl-z,A,1,X1\npl-a,Q,1,X2\npl-a,A,3,X3\npl-a,A,1,bad id\n"
    )
    code, _, err = fleet(capsys, inventory, "import", str(bad))
    assert code == 2
    lines = err.strip().splitlines()
    columns = ["resort", "hotel", "room", "plate"]
    assert [line.split(": ")[:3] for line in lines] == [
        ["fleet", "error", f"{bad}:{n}"] for n in range(2, 6)
    ]
    assert [line.split(": ")[3] for line in lines] == columns
    assert lines[0] == f"fleet: error: {bad}:2: resort: unknown resort 'pl-z' (known: pl-a, pl-b)"
    assert lines[2] == f"fleet: error: {bad}:4: room: must be a whole number from 1 to 2, got '3'"
    assert fleet(capsys, inventory, "where", "KEEP")[0] == 0  # nothing changed
    assert fleet(capsys, inventory, "where", "X1")[0] == 1


def test_resolve_only_applies_to_an_uncertain_room(
    capsys: pytest.CaptureFixture[str], inventory: Path
) -> None:
    fleet(capsys, inventory, "migrate")
    code, _, err = fleet(capsys, inventory, "resolve", "pl-a", "A", "1", "--empty")
    assert code == 2 and err.strip() == "fleet: error: pl-a hotel A room 1 is free, not uncertain"
    code, _, err = fleet(capsys, inventory, "resolve", "pl-a", "Q", "1", "--empty")
    assert code == 2 and "HOTEL: pl-a has hotels A, B, C, D, got 'Q'" in err
    with pytest.raises(SystemExit) as exit_info:
        fleet(capsys, inventory, "resolve", "pl-a", "A", "0", "--empty")
    assert exit_info.value.code == 2
    assert "ROOM must be a room number from 1, got '0'" in capsys.readouterr().err


def test_status_rows_get_the_free_rooms_or_the_reason_they_are_unknown(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path
) -> None:
    from fleet.core.inventory import load_inventory
    from fleet.core.status import ResortStatus, read_free_rooms

    inv = load_inventory(inventory)
    offline = dict(
        online=False, connected=False, position=None, active_hotel=None, moving=False,
        estopped=False, faulted=False, last_error=None, health=None, queue_paused=None,
        current_run=None,
    )  # fmt: skip
    rows = [ResortStatus(name=r.name, **offline) for r in inv.resorts]

    same, why = read_free_rooms(inv, rows)
    assert same == rows
    assert why is not None and why.endswith("run `fleet plates migrate`")
    assert not (tmp_path / "state").exists()  # reading created no registry file

    fleet(capsys, inventory, "migrate")
    count = tmp_path / "count.csv"
    count.write_text("resort,hotel,room,plate\npl-a,B,2,P1\npl-a,C,1,P2\n")
    assert fleet(capsys, inventory, "import", str(count))[0] == 0
    counted, why = read_free_rooms(inv, rows)
    assert why is None
    assert [(r.name, r.rooms_free, r.rooms_total) for r in counted] == [
        ("pl-a", 6, 8),
        ("pl-b", 8, 8),
    ]


def test_a_store_or_retrieve_that_cannot_succeed_is_refused_before_any_server_is_asked(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """No server is configured here: each refusal comes from the inventory or the registry."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert fleet(capsys, inventory, "migrate")[0] == 0
    count = tmp_path / "count.csv"
    count.write_text("resort,hotel,room,plate\npl-a,A,1,P1\npl-a,A,2,P2\n")  # hotel A of pl-a full
    assert fleet(capsys, inventory, "import", str(count))[0] == 0
    before = fleet(capsys, inventory, "list", "--json")[1]
    cases = [
        ("store P3 --resort nope", "resort: 'nope' is not in the fleet; known: pl-a, pl-b"),
        ("store P3 --resort pl-a --hotel Z", "hotel: pl-a has hotels A, B, C, D, got 'Z'"),
        ("store P3 --hotel Z", "hotel: no resort of the fleet has a hotel 'Z'"),
        ("store bad/id", "plate id 'bad/id': must be 1-64 letters"),
        ("store P1 --resort pl-b", "plate P1 is already in pl-a hotel A room 1 (occupied)"),
        ("store P3 --resort pl-a --hotel A", "no free room in pl-a hotel A"),
        ("store P3 --timeout 0", "--timeout: must be a number of seconds above 0, got 0"),
        ("retrieve P9", "plate P9 is not in the fleet"),
    ]
    for argv, message in cases:
        code, out, err = fleet(capsys, inventory, *argv.split())
        assert (code, out) == (2, ""), (argv, err)
        assert err.startswith(f"fleet: error: {message}"), (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert fleet(capsys, inventory, "list", "--json")[1] == before  # nothing changed
