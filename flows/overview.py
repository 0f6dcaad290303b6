"""Publication of the fleet overview artifact from a health run's fresh readings."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flows.dispatch import run_logger

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["OVERVIEW_TIMEOUT", "publish_overview"]

#: seconds the health run may spend updating the fleet overview artifact
OVERVIEW_TIMEOUT = 20.0


async def publish_overview(inventory: Inventory, results: Mapping[str, Mapping[str, Any]]) -> None:
    """Update the fleet overview artifact with the fresh readings; a failure only warns."""
    from fleet.core.overview import apublish_overview

    health = {
        name: r["result"]
        for name, r in results.items()
        if r.get("state") == "Completed" and isinstance(r.get("result"), Mapping)
    }
    try:
        await asyncio.wait_for(apublish_overview(inventory, health=health), OVERVIEW_TIMEOUT)
    except Exception as exc:
        run_logger(__name__).warning("fleet overview not updated: %r", exc)
