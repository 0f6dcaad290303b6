"""Which database an inventory's plate registry lives in: migrating it, opening it ready for use,
and counting its free rooms."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from fleet.core.errors import InventoryError, RegistryUnavailableError
from fleet.core.plates.database import current_revision, head_revision, upgrade
from fleet.core.plates.notices import OnChange
from fleet.core.plates.registry import PlateRegistry

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "DEFAULT_FILE",
    "Migration",
    "free_rooms",
    "migrate_registry",
    "open_registry",
    "registry_url",
    "room_layout",
]

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


@dataclass(frozen=True)
class Migration:
    """What `migrate_registry` did: the registry's place and its schema before and after."""

    where: str  # the URL without its password
    before: str | None
    after: str

    def describe(self) -> str:
        """One line: `plate registry at URL: schema A -> B` (or `..., up to date`)."""
        if self.before == self.after:
            return f"plate registry at {self.where}: schema {self.after}, up to date"
        return f"plate registry at {self.where}: schema {self.before or 'none'} -> {self.after}"


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _unavailable(url: str, exc: BaseException) -> RegistryUnavailableError:
    # a driver's own error type: unreachable, refused, bad credentials, a directory not writable
    return RegistryUnavailableError(f"plate registry at {_shown(url)}: {type(exc).__name__}: {exc}")


def _connect(url: str) -> PlateRegistry:
    """A registry on `url`; for SQLite, its file's directory is created first.

    Raises:
        RegistryUnavailableError: the directory cannot be created.
    """
    if url.startswith("sqlite"):
        try:
            Path(make_url(url).database or DEFAULT_FILE).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unavailable(url, exc) from exc
    return PlateRegistry(url)


async def migrate_registry(
    inv: Inventory, state: str | os.PathLike[str] | None = None
) -> Migration:
    """Create or upgrade the schema of `inv`'s registry to this version's (`fleet plates
    migrate`, `fleet server up`, the demo).

    Raises:
        InventoryError: the registry's `password_env` is not set.
        RegistryUnavailableError: the database cannot be reached.
    """
    url = registry_url(inv, state)
    registry = _connect(url)
    try:
        before, after = await upgrade(registry.engine)
    except Exception as exc:
        raise _unavailable(url, exc) from exc
    finally:
        await registry.close()
    return Migration(_shown(url), before, after)


async def _checked(url: str) -> PlateRegistry:
    """A registry on `url` that is migrated to this version's schema (an SQLite file that does
    not exist is not created)."""
    revision = None
    sqlite_file = Path(make_url(url).database or DEFAULT_FILE) if url.startswith("sqlite") else None
    if sqlite_file is None or sqlite_file.exists():
        registry = _connect(url)
        try:
            revision = await current_revision(registry.engine)
        except Exception as exc:
            await registry.close()
            raise _unavailable(url, exc) from exc
        if revision == head_revision():
            return registry
        await registry.close()
    raise RegistryUnavailableError(
        f"plate registry at {_shown(url)} is at schema {revision or 'none'}, this fleet needs "
        f"{head_revision()}: run `fleet plates migrate`"
    )


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
    registry = await _checked(registry_url(inv, state))
    registry.on_change = on_change
    try:
        await registry.sync_rooms(room_layout(inv))
    except BaseException:
        await registry.close()
        raise
    return registry


async def free_rooms(
    inv: Inventory, state: str | os.PathLike[str] | None = None
) -> dict[str, tuple[int, int]]:
    """`resort -> (free rooms, rooms)` of every resort of `inv`; reads, changes nothing.

    A room of the inventory the registry has no row for yet is free.

    Raises:
        InventoryError: the registry's `password_env` is not set.
        RegistryUnavailableError: the database cannot be reached or is not migrated.
    """
    url = registry_url(inv, state)
    registry = await _checked(url)
    try:
        taken = {(r.resort, r.hotel, r.room) for r in await registry.rooms() if r.state != "free"}
    except Exception as exc:
        raise _unavailable(url, exc) from exc
    finally:
        await registry.close()
    counts = {}
    for resort, hotels, per_hotel in room_layout(inv):
        layout = {(resort, h, n) for h in hotels for n in range(1, per_hotel + 1)}
        counts[resort] = (len(layout - taken), len(layout))
    return counts
