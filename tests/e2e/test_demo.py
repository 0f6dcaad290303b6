"""`make demo` end to end: `python -m fleet.demo` in a temporary copy, non-interactively.

The inventory is copied to `<tmp>/inventory/demo.yaml`, so its relative serial links land in
`<tmp>/.fleet-state/demo/`, and `FLEET_STATE_DIR=<tmp>/.fleet-state` puts the server, the agents'
logs and pid records there too: nothing collides with a developer's own demo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_AUTH_STRING"):
        env.pop(key, None)
    env["FLEET_STATE_DIR"] = str(state)
    return env


def _demo(args: list[str], state: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.demo", *args],
        cwd=REPO,
        env=_env(state),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _printed_table(out: str) -> list[dict[str, str]]:
    """Parse the final table of the demo's output (column spans from its dashed rule)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   step"))
    header, rule = lines[start], lines[start + 1]
    spans, pos = [], 0
    for dashes in rule.split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    names = [header[a:b].strip() for a, b in spans]
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith("["):
            break
        cells = [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0] :].strip()]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def _same_process_alive(record: dict[str, Any] | None) -> bool:
    if not record:
        return False
    try:
        proc = psutil.Process(int(record["pid"]))
        return abs(proc.create_time() - float(record["create_time"])) < 1.0 and (
            proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.environ() if text not in cmd else {}
        except psutil.Error:
            continue
        if text in cmd or any(text in v for v in env.values()):
            found.append(f"{proc.info['pid']}: {cmd}")
    return found


@pytest.mark.orchestration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_runs_the_scenario_and_leaves_nothing_running(tmp_path: Path) -> None:
    (tmp_path / "inventory").mkdir()
    inventory = tmp_path / "inventory" / "demo.yaml"
    shutil.copy(REPO / "inventory" / "demo.yaml", inventory)
    state = tmp_path / ".fleet-state"

    done = _demo(["--inventory", str(inventory)], state, timeout=540)

    out = done.stdout
    assert done.returncode == 0, out[-5000:] + done.stderr[-3000:]
    table = _printed_table(out)
    report = json.loads((state / "demo" / "report.json").read_text())
    assert [r["operation"] for r in table] == [r["operation"] for r in report["rows"]]
    assert sum(r["step"] == "batch" for r in table) == 12
    assert {r["step"] for r in table} == {"batch", "reserve", "e-stop", "plates"}
    not_completed = [r for r in table if r["state"] != "Completed"]
    # Only the intentional e-stop failures: the move the stop interrupted (if the stop caught it
    # moving) and the move refused while the latch was set.
    assert not_completed, out[-3000:]
    assert all(r["step"] == "e-stop" and r["state"] == "Failed (expected)" for r in not_completed)
    refused = next(r for r in table if "while e-stopped" in r["operation"])
    assert refused["state"] == "Failed (expected)"
    assert "e-stopped" in refused["error"]
    assert next(r for r in table if "after clear" in r["operation"])["state"] == "Completed"
    waiting = next(r for r in table if "2nd scheduler" in r["operation"])
    assert waiting["state"] == "Completed"
    assert "second scheduler still waiting" in out
    assert "Prefect UI: http://127.0.0.1:" in out
    # the plate step: three stores and a retrieve, each confirmed by the simulated arm
    plates = [r["operation"] for r in table if r["step"] == "plates"]
    assert plates == [
        "store DEMO-0001 in resort-a hotel D",
        "store DEMO-0002 in resort-b hotel F",
        "store DEMO-0003 in resort-c hotel D",
        "retrieve DEMO-0002",
    ]
    for plate in ("DEMO-0001", "DEMO-0002", "DEMO-0003"):
        assert f"arm$ fleet plates confirm {plate}  -> {plate}: confirm sent" in out
    listed = [line.strip() for line in out.splitlines() if line.startswith("    DEMO-")]
    assert listed == [
        "DEMO-0001: resort-a hotel D room 1 (occupied)",
        "DEMO-0003: resort-c hotel D room 1 (occupied)",
    ]
    assert "/artifacts/key/plates-resort-a" in out
    assert report["ok"] is True

    processes = report["processes"]
    assert processes["server"] is not None  # this demo started the server, so it stopped it
    assert len(processes["agents"]) == 3
    for record in [processes["server"], *processes["agents"], *processes["emulators"]]:
        assert not _same_process_alive(record), record
    assert _processes_mentioning(str(tmp_path)) == []

    again = _demo(["--down"], state, timeout=60)
    assert again.returncode == 0
    assert "nothing to stop" in again.stdout


def test_demo_rejects_a_bad_inventory_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("fleet: {name: demo, work_pool: demo-resorts}\nresorts: []\n")

    done = _demo(["--inventory", str(bad)], tmp_path / "state", timeout=60)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(bad) in done.stderr
    assert not (tmp_path / "state" / "server").exists()  # nothing was started


def test_demo_down_without_a_demo_says_so(tmp_path: Path) -> None:
    done = _demo(["--down"], tmp_path / "state", timeout=60)

    assert done.returncode == 0, done.stderr
    assert "nothing to stop" in done.stdout
