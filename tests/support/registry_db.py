"""Throw-away plate-registry databases: SQLite always, PostgreSQL too when a server is given.

`bash scripts/with-postgres.sh CMD` exports `FLEET_TEST_DATABASE_URL` (a postgresql+asyncpg URL
of a throw-away server). `BACKENDS` is then `["sqlite", "postgresql"]` (else `["sqlite"]`), and
`registry_database("postgresql", ...)` creates a fresh database on that server for one use and
drops it after. `inventory_registry(url, env)` is the inventory's `fleet.registry` block for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import URL, make_url

__all__ = [
    "BACKENDS",
    "DATABASE_ENV",
    "create_database",
    "drop_database",
    "inventory_registry",
    "registry_database",
]

DATABASE_ENV = "FLEET_TEST_DATABASE_URL"
#: the registry backends the tests run on
BACKENDS = ["sqlite", "postgresql"] if os.environ.get(DATABASE_ENV) else ["sqlite"]


async def _admin(server: URL, statement: str) -> None:
    """Run `statement` outside a transaction, on the server's maintenance database."""
    import asyncpg

    connection = await asyncpg.connect(
        host=server.host,
        port=server.port,
        user=server.username,
        password=server.password,
        database="postgres",
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database() -> URL:
    """A new, empty database on the server of `$FLEET_TEST_DATABASE_URL`; its URL."""
    server = make_url(os.environ[DATABASE_ENV])
    name = f"plates_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    return server.set(database=name)


def drop_database(url: URL) -> None:
    """Drop the database `create_database` made (connections to it are ended)."""
    asyncio.run(_admin(url, f'DROP DATABASE "{url.database}" WITH (FORCE)'))


@contextlib.contextmanager
def registry_database(backend: str, directory: Path) -> Iterator[URL]:
    """The URL of an empty registry database: an SQLite file in `directory`, or a new database
    on the PostgreSQL server of `$FLEET_TEST_DATABASE_URL` (dropped on exit)."""
    if backend == "sqlite":
        yield make_url(f"sqlite+aiosqlite:///{directory / 'plates.db'}")
        return
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def inventory_registry(url: URL, password_env: str) -> tuple[dict[str, str], str | None]:
    """The inventory's `fleet.registry` block for `url` (its password left out, named by
    `password_env` instead) and the password to put in that variable (None: no password)."""
    bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    block = {"url": bare.render_as_string(hide_password=False)}
    if url.password:
        block["password_env"] = password_env
    return block, url.password
