"""The registry's tables (SQLAlchemy Core). Migrations in `migrations/versions` create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

__all__ = ["history", "metadata", "plates", "rooms"]

metadata = MetaData()

plates = Table(
    "plate_registry_plates",
    metadata,
    Column("plate_id", String(64), primary_key=True),
    Column("labware", String(200)),
    Column("owner", String(200)),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("arrived_at", DateTime(timezone=True)),
)

rooms = Table(
    "plate_registry_rooms",
    metadata,
    Column("resort", String(40), primary_key=True),
    Column("hotel", String(4), primary_key=True),
    Column("room", Integer, primary_key=True),
    Column("state", String(10), nullable=False),
    # unique: a plate is in at most one room (the primary key: a room holds at most one plate)
    Column("plate_id", String(64), ForeignKey("plate_registry_plates.plate_id")),
    Column("handoff", String(10)),
    Column("token", String(64)),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    # a hand-off in progress: the flow run waiting on it, until when it is known alive, and
    # whether the room was presented (then nobody knows what is in it once the waiter is gone)
    Column("waiter_run", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("presented", Boolean, nullable=False, default=False),
    UniqueConstraint("plate_id", name="plate_registry_one_room_per_plate"),
    CheckConstraint(
        "(state = 'free' AND plate_id IS NULL AND handoff IS NULL)"
        " OR (state = 'occupied' AND plate_id IS NOT NULL AND handoff IS NULL)"
        " OR (state = 'reserved' AND plate_id IS NOT NULL AND handoff IS NOT NULL"
        " AND token IS NOT NULL)"
        " OR (state = 'uncertain')",
        name="plate_registry_room_state",
    ),
)

history = Table(
    "plate_registry_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(40), nullable=False),
    Column("plate_id", String(64)),
    Column("resort", String(40), nullable=False),
    Column("hotel", String(4), nullable=False),
    Column("room", Integer, nullable=False),
    Column("from_state", String(10)),
    Column("to_state", String(10), nullable=False),
    Column("who", String(200), nullable=False),
    Column("flow_run_id", String(64)),
    Index("plate_registry_history_plate", "plate_id"),
)
