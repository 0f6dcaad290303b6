"""Which schema revision the local server's SQLite database is at (Prefect's Alembic migrations).

Prefect migrates its database when its server starts (`PREFECT_SERVER_DATABASE_MIGRATE_ON_START`,
on by default), so `fleet server up` after an upgrade of Prefect (3.8 -> 3.9 adds two migrations)
upgrades an existing database by itself; `fleet server up` reads the revision before and after
to say so. A PostgreSQL database is migrated the same way; its revision is not read here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["DATABASE_FILE", "sqlite_revision"]

#: Prefect's default SQLite database under its `PREFECT_HOME`
DATABASE_FILE = "prefect.db"


def sqlite_revision(home: str | Path) -> str | None:
    """The Alembic revision of `<home>/prefect.db`; None when there is no database (yet)."""
    path = Path(home) / DATABASE_FILE
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None
