"""The plate registry: plates, rooms, history.

Revision ID: 0001_plate_registry
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_plate_registry"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "plate_registry_plates",
        sa.Column("plate_id", sa.String(64), primary_key=True),
        sa.Column("labware", sa.String(200)),
        sa.Column("owner", sa.String(200)),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "plate_registry_rooms",
        sa.Column("resort", sa.String(40), primary_key=True),
        sa.Column("hotel", sa.String(4), primary_key=True),
        sa.Column("room", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("plate_id", sa.String(64), sa.ForeignKey("plate_registry_plates.plate_id")),
        sa.Column("handoff", sa.String(10)),
        sa.Column("token", sa.String(64)),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("plate_id", name="plate_registry_one_room_per_plate"),
        sa.CheckConstraint(
            "(state = 'free' AND plate_id IS NULL AND handoff IS NULL)"
            " OR (state = 'occupied' AND plate_id IS NOT NULL AND handoff IS NULL)"
            " OR (state = 'reserved' AND plate_id IS NOT NULL AND handoff IS NOT NULL"
            " AND token IS NOT NULL)"
            " OR (state = 'uncertain')",
            name="plate_registry_room_state",
        ),
    )
    op.create_table(
        "plate_registry_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("plate_id", sa.String(64)),
        sa.Column("resort", sa.String(40), nullable=False),
        sa.Column("hotel", sa.String(4), nullable=False),
        sa.Column("room", sa.Integer, nullable=False),
        sa.Column("from_state", sa.String(10)),
        sa.Column("to_state", sa.String(10), nullable=False),
        sa.Column("who", sa.String(200), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
    )
    op.create_index("plate_registry_history_plate", "plate_registry_history", ["plate_id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("plate_registry_history_plate", "plate_registry_history")
    op.drop_table("plate_registry_history")
    op.drop_table("plate_registry_rooms")
    op.drop_table("plate_registry_plates")
