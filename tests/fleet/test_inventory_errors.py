"""fleet.core.inventory loading: each malformed inventory gets its exact one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.errors import InventoryError
from fleet.core.inventory import load_inventory, parse_inventory
from tests.fleet.inventory_cases import MALFORMED


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
