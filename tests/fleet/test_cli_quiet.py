"""`fleet` speaks to people: an expected failure is one line and an exit code, no Prefect noise.

The command runs as a user runs it (its own process, the installed `fleet` script) against a
real server, on a provisioned fleet whose resort has no agent (offline).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet.core.inventory import load_inventory
from fleet.core.provision import provision
from tests.support.inventories import write_inventory

pytestmark = pytest.mark.orchestration

_FLEET = str(Path(sys.executable).with_name("fleet"))


@pytest.fixture(scope="module")
def offline_fleet(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_inventory(tmp_path_factory.mktemp("quiet") / "inv.yaml", "qt", ["qt-a"])
    provision(load_inventory(path))
    return path


def _fleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    return subprocess.run(
        [_FLEET, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_activating_an_offline_resort_is_one_line_and_an_exit_code(offline_fleet: Path) -> None:
    done = _fleet("activate", "qt-a", "B", "--inventory", str(offline_fleet))
    assert done.returncode not in (0, None)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fleet: error: ") and "qt-a" in lines[0] and "offline" in lines[0]
    assert done.stdout == ""


def test_debug_shows_what_prefect_logged(offline_fleet: Path) -> None:
    done = _fleet("--debug", "activate", "qt-a", "B", "--inventory", str(offline_fleet))
    assert done.returncode != 0
    assert "Traceback" in done.stderr
