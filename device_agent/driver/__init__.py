"""The plate-resort driver: `ResortDriver` over an injected transport, and `open_driver`.

See `device_agent.driver.resort` for the safety rules the driver enforces.
"""

from __future__ import annotations

from device_agent.driver.connection import Interlock
from device_agent.driver.moves import WATCHDOG_UNITS
from device_agent.driver.resort import ResortDriver, open_driver

__all__ = ["WATCHDOG_UNITS", "Interlock", "ResortDriver", "open_driver"]
