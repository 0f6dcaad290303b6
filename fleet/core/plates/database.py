"""The registry's database: an engine for a URL, and the schema migrations (Alembic).

The default is an SQLite file under the fleet's state directory; a PostgreSQL URL
(`postgresql+asyncpg://...`) serves schedulers on several machines. Migrations run only when
asked: `upgrade(engine)`, through `config.migrate_registry` (`fleet plates migrate`, `fleet server
up` and the demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

__all__ = ["create_engine", "current_revision", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "plate_registry_version"


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; on SQLite, foreign keys on and a 30 s wait for the write lock.

    On PostgreSQL every transaction opens its own connection (no pool): an asyncpg connection
    belongs to the event loop that opened it, and a registry may be used from more than one loop
    (a caller's `asyncio.run` per operation, Prefect's sync wrappers): a pooled connection would
    then fail in the next loop. The registry's traffic is a few statements per hand-off.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_async_engine(url, poolclass=NullPool)


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": _VERSION_TABLE})
    return context.get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Migrate the database to the newest revision; returns (revision before, revision after)."""
    async with engine.begin() as connection:
        before = await connection.run_sync(_current)
        await connection.run_sync(lambda sync: command.upgrade(_config(sync), "head"))
        after = await connection.run_sync(_current)
    assert after is not None
    return before, after
