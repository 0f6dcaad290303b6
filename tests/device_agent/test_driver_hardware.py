"""The driver on a real XM430-W350 (``-m hardware``; set PLATE_RESORT_PORT, e.g. /dev/ttyUSB0).

Turns the carousel: clear the resort before running. Skipped by default (`-m "not hardware"`).
"""

from __future__ import annotations

import os

import pytest

from device_agent.driver import open_driver
from tests.device_agent.driver_support import make_config

pytestmark = pytest.mark.hardware


@pytest.fixture
def port() -> str:
    path = os.environ.get("PLATE_RESORT_PORT")
    if not path:
        pytest.skip("set PLATE_RESORT_PORT to the servo's serial device")
    return path


def test_real_servo_visits_every_hotel_and_reports_health(port: str) -> None:
    driver = open_driver(make_config(serial_port=port, speed=30.0, acceleration=60.0))
    try:
        for hotel in ("B", "C", "D", "A"):
            assert driver.activate_hotel(hotel).hotel == hotel
        health = driver.request_health()
        assert health.hardware_errors == []
        assert 9.5 <= health.voltage <= 16.0
    finally:
        driver.close()


def test_real_servo_connect_leaves_torque_off_and_stop_reads_back(port: str) -> None:
    driver = open_driver(make_config(serial_port=port, speed=30.0, acceleration=60.0))
    try:
        assert driver.emergency_stop() is True
        driver.reconnect()
        assert driver.request_torque() is False  # connect never switches torque on
        assert driver.activate_hotel("B").hotel == "B"
        assert driver.request_torque() is True
        assert driver.emergency_stop() is True
        assert driver.request_torque() is False
    finally:
        driver.close()


def test_real_servo_bus_watchdog_stops_a_move_when_the_host_goes_quiet(port: str) -> None:
    import time

    from device_agent.errors import WatchdogExpiredError

    driver = open_driver(make_config(serial_port=port, speed=20.0, acceleration=60.0))
    quiet: list[float] = []
    driver._sleep = lambda s: time.sleep(quiet.pop() if quiet else s)  # type: ignore[method-assign]
    try:
        driver.go_home()
        quiet.append(2.0)  # the next move's first poll waits longer than the 0.5 s watchdog
        with pytest.raises(WatchdogExpiredError):
            driver.activate_hotel("C")
        assert driver.request_position() < 90.0  # stopped far short of 180
        assert driver.request_torque() is False
    finally:
        driver.close()
