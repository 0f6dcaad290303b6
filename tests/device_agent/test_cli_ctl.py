"""`device-agent ctl` against the emulator process: the README walk-through and the error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from device_agent.cli import main
from device_agent.settings import AgentSettings

_REPO = Path(__file__).resolve().parents[2]


def _ctl(capsys: pytest.CaptureFixture[str], *argv: str, **kw: Any) -> tuple[int, str, str]:
    code = main(["ctl", *argv], **kw)
    out, err = capsys.readouterr()
    return code, out, err


def _json(out: str) -> dict[str, Any]:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def test_readme_walkthrough_activate_fault_reboot_continue(
    emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator(instant=True)
    port = str(emu.link)
    code, out, _ = _ctl(capsys, "--port", port, "activate", "B", "--json")
    assert code == 0
    result = _json(out)
    assert result["ok"] is True and result["hotel"] == "B"
    assert result["position"] == pytest.approx(90.0)

    emu.fault("overload")
    code, out, err = _ctl(capsys, "--port", port, "activate", "C")
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "MotorFaultError" in err and "overload" in err

    code, out, _ = _ctl(capsys, "--port", port, "health", "--json")
    assert code == 0 and _json(out)["hardware_errors"] == ["overload"]

    code, out, _ = _ctl(capsys, "--port", port, "--json", "reboot")
    assert code == 0
    health = _json(out)
    assert health["hardware_errors"] == [] and health["torque"] is False  # the move enables it

    code, out, _ = _ctl(capsys, "--port", port, "activate", "C")
    assert code == 0 and "hotel C in position" in out


def test_every_action_in_text_and_json(emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator(instant=True)
    port = ["--port", str(emu.link)]
    assert _ctl(capsys, *port, "move", "45")[0] == 0
    code, out, _ = _ctl(capsys, *port, "position", "--json")
    assert code == 0
    assert _json(out)["position"] == pytest.approx(45.0)
    assert _json(out)["hotel"] is None
    code, out, _ = _ctl(capsys, *port, "home")
    assert code == 0 and "hotel A in position" in out
    code, out, _ = _ctl(capsys, *port, "speed", "60", "--acceleration", "0", "--json")
    assert code == 0 and _json(out)["speed"] == 60.0
    code, out, _ = _ctl(capsys, *port, "health")
    assert code == 0 and "voltage 12.0 V" in out and "hardware errors: none" in out
    code, out, _ = _ctl(capsys, *port, "estop", "--json")
    assert code == 0 and _json(out)["torque"] is False
    assert emu.stats()["torque"] is False
    code, out, _ = _ctl(capsys, *port, "position")
    assert code == 0 and "0.00 deg, hotel A in position" in out


def test_json_error_object_and_exit_code(emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator(instant=True)
    emu.fault("shock")
    code, out, err = _ctl(capsys, "--port", str(emu.link), "activate", "B", "--json")
    assert code == 1
    payload = _json(out)
    assert payload["ok"] is False and payload["error"] == "MotorFaultError", payload
    assert payload["hardware_errors"] == ["electrical_shock"]
    assert "electrical_shock" in err


def test_inventory_settings_come_from_the_resolver(
    emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator(instant=True)
    seen: list[tuple[str, str]] = []

    def resolver(inventory: str, device: str) -> AgentSettings:
        seen.append((inventory, device))
        return AgentSettings.model_validate(
            {
                "device": {
                    "name": device,
                    "serial_port": str(emu.link),
                    "hotels": ["H1", "H2", "H3"],
                    "offset_angle": 30.0,
                    "rotation_direction": -1,
                },
                "work_pool": "p",
                "work_queue": device,
                "worker_name": "w",
                "status_variable": "s",
                "estop_variable": "e",
                "resource_id": "r",
            }
        )

    code, out, _ = _ctl(
        capsys,
        "--inventory",
        "lab.yaml",
        "--device",
        "resort-x",
        "activate",
        "H2",
        "--json",
        settings_resolver=resolver,
    )
    assert code == 0, out
    assert seen == [("lab.yaml", "resort-x")]
    result = _json(out)
    assert result["device"] == "resort-x" and result["position"] == pytest.approx(150.0, abs=0.1)
    assert emu.stats()["position_deg"] == pytest.approx(210.0, abs=0.1)  # turned the other way


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["activate", "B"], 2, "--port"),
        (["--port", "/x", "--baud", "250000", "home"], 2, "--baud 250000"),
        (["--inventory", "lab.yaml", "--device", "r", "home"], 2, "--inventory"),
        (["--inventory", "lab.yaml", "home"], 2, "--device"),
        (["--port", "/nonexistent/ttyUSB7", "home"], 1, "/nonexistent/ttyUSB7 does not exist"),
    ],
)
def test_usage_and_port_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, needle: str
) -> None:
    got, _out, err = _ctl(capsys, *argv)
    assert got == code
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_hotel_is_a_usage_error(emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator(instant=True)
    code, _, err = _ctl(capsys, "--port", str(emu.link), "activate", "Z")
    assert code == 2 and "'Z' is not one of A, B, C, D" in err


def test_installed_console_script_runs_ctl(emulator: Any) -> None:
    emu = emulator(instant=True)
    script = str(Path(sys.executable).with_name("device-agent"))
    proc = subprocess.run(
        [script, "ctl", "--port", str(emu.link), "activate", "D", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=_REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _json(proc.stdout)["hotel"] == "D"


def test_console_script_resolves_the_demo_inventory(emulator: Any) -> None:
    emu = emulator(instant=True)
    script = str(Path(sys.executable).with_name("device-agent"))
    argv = [script, "ctl", "--inventory", str(_REPO / "inventory" / "demo.yaml")]
    argv += ["--device", "resort-b", "--port", str(emu.link), "activate", "B", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=_REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    result = _json(proc.stdout)
    assert result["device"] == "resort-b" and result["hotel"] == "B"
    assert result["position"] == pytest.approx(75.0, abs=0.1)  # six hotels, offset 15 degrees


@pytest.fixture(autouse=True)
def _state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every ctl call looks for agents' latches under a fresh state root, not the machine's."""
    root = tmp_path / "agents"
    monkeypatch.setenv("PLATE_RESORT_STATE_DIR", str(root))
    return root


def test_ctl_honours_an_agents_latch_for_its_port(
    emulator: Any, capsys: pytest.CaptureFixture[str], _state_root: Path
) -> None:
    from device_agent.pi_latch import LatchFile

    emu = emulator(instant=True)
    port = ["--port", str(emu.link)]
    latch = LatchFile.in_state_dir(
        _state_root / "resort-a", resort="resort-a", serial_port=str(emu.link)
    )
    latch.write(True, "fleet estop: arm in the carousel", "cmd-1", by="lab@host")
    writes = emu.stats()["writes"]
    code, out, err = _ctl(capsys, *port, "activate", "B")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "EmergencyStopError" in err and "arm in the carousel" in err and "estop-clear" in err
    assert emu.stats()["writes"] == writes  # the motor saw no write
    assert emu.stats()["torque"] is False
    code, out, _ = _ctl(capsys, *port, "reboot")
    assert code == 1
    assert _ctl(capsys, *port, "position")[0] == 0  # reads are allowed

    code, out, _ = _ctl(capsys, *port, "estop-clear", "--json")
    assert code == 0 and _json(out)["cleared"] == [str(latch.path)]
    assert latch.latched() is None
    assert _ctl(capsys, *port, "activate", "B")[0] == 0

    code, out, _ = _ctl(capsys, *port, "estop", "--json")
    result = _json(out)
    assert code == 0 and result["torque"] is False and result["latched"] == [str(latch.path)]
    assert latch.latched() is not None and emu.stats()["torque"] is False
    assert _ctl(capsys, *port, "home")[0] == 1  # ctl's own stop latches the agent's resort too


def test_an_unreadable_latch_refuses_motion(
    emulator: Any, capsys: pytest.CaptureFixture[str], _state_root: Path
) -> None:
    emu = emulator(instant=True)
    (_state_root / "resort-a").mkdir(parents=True)
    (_state_root / "resort-a" / "estop-latch.json").write_text("{not json")
    code, _, err = _ctl(capsys, "--port", str(emu.link), "move", "45")
    assert code == 1 and "latch unreadable" in err
    assert emu.stats()["torque"] is False


def test_ctl_on_a_port_another_process_holds_is_refused_naming_it(
    emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator(instant=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from device_agent.transport import SdkTransport\n"
            f"t = SdkTransport({str(emu.link)!r}, 57600, 1)\n"
            "t.open(); print('held', flush=True); time.sleep(60)\n",
        ],
        cwd=_REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, out, err = _ctl(capsys, "--port", str(emu.link), "activate", "B")
        assert code == 1 and out == ""
        assert len(err.strip().splitlines()) == 1
        assert f"is held by pid {holder.pid}" in err and "SdkTransport" in err
        assert emu.stats()["writes"] == 0
    finally:
        holder.kill()
        holder.wait(10)
    assert _ctl(capsys, "--port", str(emu.link), "activate", "B")[0] == 0  # free again
