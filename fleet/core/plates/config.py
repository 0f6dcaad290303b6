"""Which database an inventory's plate registry lives in, and opening it ready for use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from fleet.core.errors import InventoryError, RegistryUnavailableError
from fleet.core.plates.database import current_revision, head_revision
from fleet.core.plates.notices import OnChange
from fleet.core.plates.registry import PlateRegistry

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["DEFAULT_FILE", "open_registry", "registry_url", "room_layout"]

#: The registry's SQLite file in the fleet's state directory, when the inventory names none.
DEFAULT_FILE = "plates.db"


def registry_url(inv: Inventory, state: str | os.PathLike[str] | None = None) -> str:
    """The registry's SQLAlchemy URL: `fleet.registry.url` (with the password from
    `password_env`), else an SQLite file in the state directory.

    Raises:
        InventoryError: `password_env` names a variable that is not set.
    """
    settings = getattr(inv.fleet, "registry", None)
    if settings is None or settings.url is None:
        from fleet.core.server import state_dir

        path = Path(state_dir(state)) / DEFAULT_FILE
        return f"sqlite+aiosqlite:///{path}"
    url = make_url(settings.url)
    if settings.password_env:
        password = os.environ.get(settings.password_env)
        if password is None:
            raise InventoryError(
                [
                    f"{inv.path}: fleet.registry.password_env: environment variable "
                    f"{settings.password_env} is not set"
                ]
            )
        url = url.set(password=password)
    return url.render_as_string(hide_password=False)


def room_layout(inv: Inventory) -> list[tuple[str, tuple[str, ...], int]]:
    """`(resort, hotels in carousel order, rooms_per_hotel)` of every resort of `inv`."""
    return [(r.name, tuple(r.hotels), int(r.rooms_per_hotel)) for r in inv.resorts]


async def open_registry(
    inv: Inventory,
    state: str | os.PathLike[str] | None = None,
    *,
    on_change: OnChange | None = None,
) -> PlateRegistry:
    """The registry of `inv`, migrated and with a room row for every room of the inventory;
    `on_change` is told about each change (`fleet.core.plates.notices`).

    Raises:
        RegistryUnavailableError: the database has not been migrated to this version's schema (run
            `fleet plates migrate`), or it cannot be reached.
    """
    url = registry_url(inv, state)
    if url.startswith("sqlite"):
        Path(make_url(url).database or DEFAULT_FILE).parent.mkdir(parents=True, exist_ok=True)
    registry = PlateRegistry(url)
    try:
        revision = await current_revision(registry.engine)
    except Exception as exc:  # a driver's own error type: unreachable, refused, bad credentials
        await registry.close()
        where = make_url(url).render_as_string(hide_password=True)
        raise RegistryUnavailableError(
            f"plate registry at {where}: {type(exc).__name__}: {exc}"
        ) from exc
    if revision != head_revision():
        await registry.close()
        where = make_url(url).render_as_string(hide_password=True)
        raise RegistryUnavailableError(
            f"plate registry at {where} is at schema {revision or 'none'}, this fleet needs "
            f"{head_revision()}: run `fleet plates migrate`"
        )
    registry.on_change = on_change
    await registry.sync_rooms(room_layout(inv))
    return registry
