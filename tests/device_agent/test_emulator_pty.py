"""The emulator process on a pty, driven through the REAL SDK PortHandler and its control socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dynamixel_sdk import COMM_RX_CORRUPT, COMM_RX_TIMEOUT, COMM_SUCCESS, PacketHandler, PortHandler

from device_agent.cli import main as device_main
from tests.support.emulator import EmulatorProcess, start_emulator

ALERT = 0x80
Factory = Callable[..., EmulatorProcess]


@pytest.fixture
def connect() -> Iterator[Callable[..., PortHandler]]:
    """Open SDK ports on emulator links (closed at teardown)."""
    ports: list[PortHandler] = []

    def open_port(link: Path, baud: int = 57600) -> PortHandler:
        port = PortHandler(os.fspath(link))
        assert port.openPort()
        assert port.setBaudRate(baud)
        ports.append(port)
        return port

    yield open_port
    for port in ports:
        with contextlib.suppress(OSError, termios.error, AttributeError):
            port.closePort()


RAW = PacketHandler(2.0)


class _Retrying:
    """The SDK packet handler, retrying a call that timed out (-3001) up to 3 times.

    On a loaded 2-core box the SDK's busy-wait can be descheduled past its ~34 ms status timeout
    even though the emulator answered in time (the SDK reads, then checks the clock); a driver
    retries such a transaction too. Fault tests that expect silence use `RAW`.
    """

    def __getattr__(self, name: str) -> Any:
        method = getattr(RAW, name)

        def call(*args: Any) -> Any:
            for _ in range(3):
                out = method(*args)
                result = out[1] if isinstance(out, tuple) and len(out) == 3 else out[0]
                if result != COMM_RX_TIMEOUT:
                    break
            return out

        return call


PH: Any = _Retrying()


def _read4(port: PortHandler, addr: int) -> tuple[int, int, int]:
    return PH.read4ByteTxRx(port, 1, addr)


def test_sdk_pings_reads_and_writes_through_the_pty(emulator: Factory, connect: Any) -> None:
    emu = emulator(instant=True)
    assert emu.link.is_symlink()
    assert os.readlink(emu.link).startswith("/dev/pts/")
    port = connect(emu.link)
    assert PH.ping(port, 1) == (1020, COMM_SUCCESS, 0)
    assert PH.write1ByteTxRx(port, 1, 64, 1) == (COMM_SUCCESS, 0)
    assert PH.write4ByteTxRx(port, 1, 116, 1024) == (COMM_SUCCESS, 0)
    assert _read4(port, 132) == (1024, COMM_SUCCESS, 0)
    assert PH.write1ByteTxRx(port, 1, 11, 4) == (COMM_SUCCESS, 0x07)  # EEPROM locked
    stats = emu.stats()
    assert stats["position"] == 1024
    assert stats["position_deg"] == pytest.approx(90.0)
    assert stats["torque"] is True
    assert stats["host_baud"] == 57600
    assert stats["packets"] == 5


def test_sdk_opens_are_counted(emulator: Factory, connect: Any) -> None:
    emu = emulator(instant=True)
    assert emu.stats()["opens"] == 0
    port = connect(emu.link)  # openPort at 1 Mbps, then setBaudRate reopens
    assert PH.ping(port, 1)[1] == COMM_SUCCESS
    assert emu.stats()["opens"] == 2
    port.closePort()
    connect(emu.link)
    assert emu.stats()["opens"] == 4


def test_timed_move_through_the_pty(emulator: Factory, connect: Any) -> None:
    emu = emulator()
    port = connect(emu.link)
    assert PH.write1ByteTxRx(port, 1, 64, 1) == (COMM_SUCCESS, 0)
    assert PH.write4ByteTxRx(port, 1, 112, 100) == (COMM_SUCCESS, 0)
    start = time.monotonic()
    assert PH.write4ByteTxRx(port, 1, 116, 1024) == (COMM_SUCCESS, 0)
    assert PH.read1ByteTxRx(port, 1, 122) == (1, COMM_SUCCESS, 0)
    while True:  # a reply delayed by a loaded box (-3001) is retried, as a driver would
        moving, result, _ = PH.read1ByteTxRx(port, 1, 122)
        if result == COMM_SUCCESS and not moving:
            break
        assert time.monotonic() - start < 10
        time.sleep(0.01)
    assert time.monotonic() - start >= 0.65  # 1024 pulses at PV 100: 655.36 ms
    assert _read4(port, 132) == (1024, COMM_SUCCESS, 0)


def test_unplug_removes_the_path_and_replug_restores_it(emulator: Factory, connect: Any) -> None:
    emu = emulator(instant=True)
    port = connect(emu.link)
    PH.write1ByteTxRx(port, 1, 64, 1)
    PH.write4ByteTxRx(port, 1, 116, 3000)
    pts = os.readlink(emu.link)
    emu.fault("unplug")
    assert not emu.link.exists()
    assert not emu.link.is_symlink()
    assert not Path(pts).exists()
    with pytest.raises(termios.error):
        RAW.ping(port, 1)  # clearPort -> tcflush on a hung-up tty
    assert emu.stats()["plugged"] is False
    with pytest.raises(Exception, match="could not open port"):
        PortHandler(os.fspath(emu.link)).openPort()
    emu.fault("replug")
    assert emu.link.is_symlink()
    fresh = connect(emu.link)
    assert PH.ping(fresh, 1) == (1020, COMM_SUCCESS, 0)
    assert _read4(fresh, 132) == (3000, COMM_SUCCESS, 0)  # the servo kept its state


def test_baud_mismatch_gets_no_reply(emulator: Factory, connect: Any) -> None:
    emu = emulator(instant=True, baud=115200)
    port = connect(emu.link, baud=57600)
    assert RAW.ping(port, 1)[1] == COMM_RX_TIMEOUT
    assert emu.stats()["baud_mismatches"] >= 1
    assert port.setBaudRate(115200)
    assert PH.ping(port, 1) == (1020, COMM_SUCCESS, 0)


def test_faults_through_the_control_socket(emulator: Factory, connect: Any) -> None:
    emu = emulator(instant=True)
    port = connect(emu.link)
    PH.write1ByteTxRx(port, 1, 64, 1)
    emu.fault("overload")
    assert PH.read1ByteTxRx(port, 1, 70) == (0x20, COMM_SUCCESS, ALERT)
    assert PH.read1ByteTxRx(port, 1, 64) == (0, COMM_SUCCESS, ALERT)
    stats = emu.stats()
    assert (stats["hardware_error"], stats["torque"], stats["faults"]) == (
        0x20,
        False,
        ["overload"],
    )
    emu.fault("mute")
    assert RAW.ping(port, 1)[1] == COMM_RX_TIMEOUT
    emu.fault("unmute")
    emu.fault("corrupt")
    assert RAW.ping(port, 1)[1] == COMM_RX_CORRUPT
    emu.fault("clear")
    assert RAW.reboot(port, 1) == (COMM_SUCCESS, ALERT)
    time.sleep(0.1)
    assert PH.read1ByteTxRx(port, 1, 70) == (0, COMM_SUCCESS, 0)
    answer = emu.request({"fault": "gremlins"})
    assert answer["ok"] is False
    assert "overload" in answer["error"]


def test_late_reply_arrives_after_the_sdk_timeout(emulator: Factory, connect: Any) -> None:
    emu = emulator(instant=True)
    port = connect(emu.link)
    emu.fault("late")
    assert RAW.read1ByteTxRx(port, 1, 146)[1] == COMM_RX_TIMEOUT
    time.sleep(0.08)
    assert port.getBytesAvailable() > 0
    emu.fault("clear")
    value, result, _ = PH.read1ByteTxRx(port, 1, 146)
    assert result == COMM_SUCCESS
    assert 30 <= value <= 40


def test_fault_cli(emulator: Factory, connect: Any, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator(instant=True)
    port = connect(emu.link)
    assert device_main(["fault", "--link", os.fspath(emu.link), "encoder"]) == 0
    assert PH.read1ByteTxRx(port, 1, 70) == (0x08, COMM_SUCCESS, ALERT)
    missing = emu.link.with_name("nothing-here")
    assert device_main(["fault", "--link", os.fspath(missing), "overload"]) == 1
    err = capsys.readouterr().err
    assert "no emulator" in err
    assert "nothing-here" in err
    assert err.count("\n") == 1


def test_write_log_from_the_process(emulator: Factory, connect: Any) -> None:
    emu = emulator()
    port = connect(emu.link)
    RAW.write1ByteTxRx(port, 1, 64, 1)
    RAW.write4ByteTxRx(port, 1, 112, 50)
    RAW.write4ByteTxRx(port, 1, 116, 2048)
    RAW.write4ByteTxRx(port, 1, 116, 4000)  # while the first move runs
    RAW.reboot(port, 1)
    writes = emu.writes()
    assert [(w["name"], w["value"], w["moving"]) for w in writes] == [
        ("torque_enable", 1, False),
        ("profile_velocity", 50, False),
        ("goal_position", 2048, False),
        ("goal_position", 4000, True),
        ("reboot", None, True),
    ]
    assert emu.stats()["writes"] == 5


def test_sigterm_removes_link_and_socket(tmp_path: Path) -> None:
    link = tmp_path / "ttyDXL"
    emu = start_emulator(link, instant=True)
    ctl = Path(f"{link}.ctl")
    assert ctl.exists()
    assert emu.stop() == 0
    assert not link.is_symlink()
    assert not ctl.exists()


def test_stale_link_is_replaced(tmp_path: Path, emulator: Factory, connect: Any) -> None:
    link = tmp_path / "ttyDXL"
    link.symlink_to("/dev/pts/9999")
    emu = emulator(link, instant=True)
    assert os.readlink(link) != "/dev/pts/9999"
    assert PH.ping(connect(emu.link), 1) == (1020, COMM_SUCCESS, 0)


def test_emulate_cli_refuses_bad_arguments(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "device_agent.emulator", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    bad_baud = run("--link", os.fspath(tmp_path / "t"), "--baud", "250000")
    assert bad_baud.returncode == 2
    assert "--baud 250000: allowed" in bad_baud.stderr
    assert "Traceback" not in bad_baud.stderr
    no_dir = run("--link", os.fspath(tmp_path / "missing" / "t"))
    assert no_dir.returncode == 2
    assert "does not exist" in no_dir.stderr
    assert device_main(["emulate", "--link", os.fspath(tmp_path / "t"), "--motor-id", "300"]) == 2


def test_emulate_verb_runs_until_sigint(tmp_path: Path) -> None:
    link = tmp_path / "ttyDXL"
    script = Path(sys.executable).parent / "device-agent"  # the console script
    cmd = [os.fspath(script), "emulate", "--link", os.fspath(link)]
    cmd += ["--instant", "--motor-id", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert os.fspath(link) in line
        assert "/dev/pts/" in line
        port = PortHandler(os.fspath(link))
        assert port.openPort()
        assert port.setBaudRate(57600)
        assert PH.ping(port, 3) == (1020, COMM_SUCCESS, 0)
        port.closePort()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert not link.is_symlink()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_second_emulator_on_a_served_link_is_refused(emulator: Factory) -> None:
    emu = emulator(instant=True)
    emu.fault("unplug")  # even while the device path is gone, the control socket stays
    cmd = [sys.executable, "-m", "device_agent.emulator", "--link", os.fspath(emu.link)]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert second.returncode == 1
    assert f"another emulator (pid {emu.pid})" in second.stderr
    emu.fault("replug")
    assert emu.stats()["plugged"] is True


def test_power_cycle_and_jam_through_the_cli_and_control_socket(
    emulator: Factory, connect: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator()  # timed: the boot is silent for 0.4 s
    port = connect(emu.link)
    link = os.fspath(emu.link)
    assert PH.write1ByteTxRx(port, 1, 65, 1) == (COMM_SUCCESS, 0)  # LED as a marker
    assert PH.write1ByteTxRx(port, 1, 64, 1) == (COMM_SUCCESS, 0)
    assert device_main(["fault", "--link", link, "power-cycle"]) == 0
    assert '"fault": "power-cycle"' in capsys.readouterr().out
    assert RAW.ping(port, 1)[1] == COMM_RX_TIMEOUT  # booting
    time.sleep(0.5)
    assert PH.ping(port, 1) == (1020, COMM_SUCCESS, 0)
    assert PH.read1ByteTxRx(port, 1, 65) == (0, COMM_SUCCESS, 0)  # RAM back at its defaults
    assert PH.read1ByteTxRx(port, 1, 64) == (0, COMM_SUCCESS, 0)
    assert emu.writes()[-1]["name"] == "power-cycle"

    emu.fault("jam")
    assert PH.write1ByteTxRx(port, 1, 64, 1) == (COMM_SUCCESS, 0)
    assert PH.write4ByteTxRx(port, 1, 116, 2048) == (COMM_SUCCESS, 0)
    time.sleep(0.2)
    stats = emu.stats()
    assert (stats["position"], stats["moving"], stats["faults"]) == (0, True, ["jam"])
    assert stats["present_current"] == 1193
    assert device_main(["fault", "--link", link, "clear"]) == 0
    deadline = time.monotonic() + 5
    while emu.stats()["moving"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stats = emu.stats()
    assert (stats["position"], stats["faults"], stats["hardware_error"]) == (2048, [], 0)


_HOST = """
import sys, time
from dynamixel_sdk import PacketHandler, PortHandler

port = PortHandler(sys.argv[1])
assert port.openPort() and port.setBaudRate(57600)
ph = PacketHandler(2.0)


def write(size, address, value):
    call = {1: ph.write1ByteTxRx, 4: ph.write4ByteTxRx}[size]
    for _ in range(3):  # a loaded box may deschedule the SDK past its timeout
        result = call(port, 1, address, value)
        if result[0] != -3001:
            break
    assert result == (0, 0), result


write(1, 98, 25)  # bus watchdog: 500 ms
write(4, 112, 20)  # 312.5 pulses/s: 4000 pulses take 12.8 s
write(1, 64, 1)
write(4, 116, 4000)
print("moving", flush=True)
time.sleep(60)
"""


def test_watchdog_stops_the_motor_after_its_host_is_killed(emulator: Factory) -> None:
    emu = emulator()
    cmd = [sys.executable, "-c", _HOST, os.fspath(emu.link)]
    host = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        if line.strip() != "moving":
            host.kill()
            pytest.fail(f"the host failed: {line}{host.communicate()[0]}")
        host.kill()  # SIGKILL: no torque-off, no goodbye
        host.wait(10)
        time.sleep(1.0)  # > the 0.5 s watchdog
        stats = emu.stats()
        assert (stats["moving"], stats["torque"], stats["bus_watchdog"]) == (False, True, -1)
        assert 0 < stats["position"] < 1000
        time.sleep(0.3)
        assert emu.stats()["position"] == stats["position"]
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
