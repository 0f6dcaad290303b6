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
