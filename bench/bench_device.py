"""Device benchmark: SDK round trip through the pty emulator, and move time vs the profile model.

Starts the emulator process (timed physics, not instant) on a pty, then through the real Dynamixel
SDK: ~200 reads of Present Position (median, p95, max round trip), and a 90 and a 180 degree move,
each measured by the driver (goal write -> confirmed in position) and compared with the physical
time the velocity-based profile model predicts (ratio = measured / model; the excess is polling
granularity, ~20 ms, plus transaction time).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from device_agent.driver import ResortDriver
from device_agent.settings import DeviceConfig
from device_agent.transport import SdkTransport
from tests.support.emulator import start_emulator

READS = 200
SPEED = 90.0  # deg/s
ACCELERATION = 180.0  # deg/s^2


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _round_trip(transport: SdkTransport) -> dict[str, Any]:
    samples = []
    for _ in range(READS):
        started = time.perf_counter()
        transport.read("present_position")
        samples.append((time.perf_counter() - started) * 1000.0)
    return {
        "reads": READS,
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(_percentile(samples, 0.95), 3),
        "max_ms": round(max(samples), 3),
    }


def _move(driver: ResortDriver, start: float, target: float) -> dict[str, Any]:
    model = driver.estimate_move_time(start, target)
    result = driver.move_to_angle(target)
    return {
        "measured_s": round(result.duration, 3),
        "model_s": round(model, 3),
        "ratio": round(result.duration / model, 3) if model else None,
    }


def run(results_dir: Path) -> dict[str, Any]:
    """Run the device benchmark; returns the numbers (the runner writes them as JSON)."""
    with tempfile.TemporaryDirectory(prefix="bench-emu-") as tmp:
        emu = start_emulator(Path(tmp) / "ttyDXL")
        try:
            config = DeviceConfig(
                name="bench",
                serial_port=str(emu.link),
                hotels=("A", "B", "C", "D"),
                speed=SPEED,
                acceleration=ACCELERATION,
            )
            transport = SdkTransport(config.serial_port, config.baudrate, config.motor_id)
            driver = ResortDriver(transport, config)
            driver.connect()
            try:
                round_trip = _round_trip(transport)
                driver.go_home()
                move_90 = _move(driver, 0.0, 90.0)
                move_180 = _move(driver, 90.0, 270.0)
            finally:
                driver.close()
        finally:
            emu.stop()
    return {
        "sdk_round_trip": round_trip,
        "baudrate": config.baudrate,
        "profile": {"speed_deg_s": SPEED, "acceleration_deg_s2": ACCELERATION},
        "move_90": move_90,
        "move_180": move_180,
    }
