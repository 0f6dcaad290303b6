"""Alembic environment of the plate registry: runs on the connection `database.upgrade` hands in."""

from __future__ import annotations

from alembic import context

from fleet.core.plates.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    version_table="plate_registry_version",
)
with context.begin_transaction():
    context.run_migrations()
