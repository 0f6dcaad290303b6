"""A hand-off's waiter and its lease: a reserved room whose waiter died is noticed.

Revision ID: 0002_handoff_lease
Revises: 0001_plate_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_handoff_lease"
down_revision = "0001_plate_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the waiting run, its lease and whether the room was presented to each room."""
    with op.batch_alter_table("plate_registry_rooms") as batch:
        batch.add_column(sa.Column("waiter_run", sa.String(64)))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("presented", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("plate_registry_rooms") as batch:
        batch.drop_column("presented")
        batch.drop_column("lease_until")
        batch.drop_column("waiter_run")
