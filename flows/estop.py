"""The `fleet-estop` flow: `fleet.core.estop` as a Prefect flow (UI button, automation, schedule).

Same behaviour as `fleet estop` and `fleet.core.estop.estop`: latch variable, out-of-band event,
wait for every agent's acknowledgement.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from fleet.core.estop import aclear_estop, aestop
from fleet.core.inventory import load_inventory

__all__ = ["fleet_estop", "fleet_estop_clear"]


@flow(name="fleet-estop", persist_result=False)
async def fleet_estop(
    inventory: str,
    resorts: list[str] | None = None,
    reason: str = "fleet-estop flow",
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Emergency-stop `resorts` of the inventory at path `inventory` (None = all of them)."""
    inv = load_inventory(inventory)
    acks = await aestop(inv, resorts, reason, timeout=timeout)
    get_run_logger().warning("emergency stop acknowledged by %s", [a.resort for a in acks])
    return [a.__dict__ for a in acks]


@flow(name="fleet-estop-clear", persist_result=False)
async def fleet_estop_clear(
    inventory: str, resorts: list[str] | None = None, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Release the e-stop latch of `resorts` (None = all)."""
    inv = load_inventory(inventory)
    acks = await aclear_estop(inv, resorts, timeout=timeout)
    get_run_logger().info("e-stop cleared on %s", [a.resort for a in acks])
    return [a.__dict__ for a in acks]
