"""fleet.core.estop and fleet.core.status against a real server, without agents (offline)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fleet.core.errors import DeviceSelectionError, EstopError
from resort_common import names

pytestmark = pytest.mark.orchestration


@pytest.fixture(scope="module")
def inv(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fleet.core.inventory import load_inventory
    from fleet.core.provision import provision
    from tests.support.inventories import write_inventory

    directory = tmp_path_factory.mktemp("estop-status")
    path = write_inventory(
        directory / "inventory.yaml", "fst", ["r1", "r2"], api_url=prefect_server.api_url
    )
    inventory = load_inventory(path)
    provision(inventory)
    return inventory


def _latch(name: str) -> Any:
    from prefect import get_client

    async def read() -> Any:
        async with get_client() as client:
            v = await client.read_variable_by_name(name)
            return v.value if v is not None else None

    return asyncio.run(read())


def test_estop_without_agent_sets_latch_and_reports_no_ack(inv: Any) -> None:
    from fleet.core.estop import clear_estop, estop

    with pytest.raises(EstopError, match=r"not acknowledged within 0\.5 s by r1"):
        estop(inv, ["r1"], "test", timeout=0.5)
    latch = _latch(names.estop_variable_name("r1"))
    assert latch["estopped"] is True and latch["reason"] == "test"
    with pytest.raises(EstopError, match="run the clear again once the agent is online"):
        clear_estop(inv, ["r1"], timeout=0.3)
    assert _latch(names.estop_variable_name("r1"))["estopped"] is False
    with pytest.raises(DeviceSelectionError, match="known: r1, r2"):
        estop(inv, ["nope"], timeout=0.3)


def test_status_of_offline_fleet(inv: Any) -> None:
    from fleet.core.status import read_status

    rows = read_status(inv)
    assert [r.name for r in rows] == ["r1", "r2"]
    assert all(not r.online and not r.connected and r.queue_paused is False for r in rows)


def test_the_status_of_named_resorts_reads_only_theirs(inv: Any) -> None:
    """Selecting a named resort reads its own status, not the whole fleet's."""
    from fleet.core.selection import read_statuses
    from fleet.core.status import aread_status, read_status

    full = {r.name: r for r in read_status(inv)}
    assert asyncio.run(aread_status(inv, ["r2"])) == [full["r2"]]
    assert asyncio.run(aread_status(inv, [])) == []
    assert list(asyncio.run(read_statuses(inv, ["r1"]))) == ["r1"]


def test_cli_arguments_and_errors(inv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli import main

    path = str(inv.path)
    assert main(["estop", "--inventory", path]) == 2
    assert "at least one RESORT" in capsys.readouterr().err
    assert main(["estop", "r1", "--all", "--inventory", path]) == 2
    assert main(["estop", "r2", "--inventory", path, "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "not acknowledged" in err and "Traceback" not in err
    assert main(["status", "--inventory", path]) == 0
    out = capsys.readouterr().out
    assert "RESORT" in out and "r2" in out and "STOPPED" in out
    assert main(["status", "--inventory", str(Path(path).with_name("missing.yaml"))]) == 2
