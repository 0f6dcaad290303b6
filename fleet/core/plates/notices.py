"""Change notices: whoever opened the registry is told which resorts' rooms changed.

Every operation that changes rooms (reserve, end of a hand-off, expiry, resolve, a count) calls
`on_change(registry, resorts)` once its transaction committed. The control plane uses it to keep
each resort's occupancy artifact in the Prefect UI current (`fleet.core.plates.occupancy`). A
failing notice is logged and never undoes or fails the change: the database is the record.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["ChangeNotices", "OnChange"]

logger = logging.getLogger(__name__)

#: `on_change(registry, resorts)`: the resorts (sorted, no repeats) whose rooms just changed.
OnChange = Callable[[Any, list[str]], Awaitable[None]]


class ChangeNotices:
    """The `on_change` hook of a `PlateRegistry` (None: nobody is told)."""

    on_change: OnChange | None = None

    async def _changed(self, resorts: Iterable[str]) -> None:
        changed = sorted(set(resorts))
        if self.on_change is None or not changed:
            return
        try:
            await self.on_change(self, changed)
        except Exception as exc:  # the change is committed; a stale view is only reported
            logger.warning("plate registry: telling about %s failed: %s", ", ".join(changed), exc)
