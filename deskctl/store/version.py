"""The schema check every command makes, without loading Alembic.

Loading Alembic and parsing the migration scripts costs more than a whole
``ticket list``; the revision this code needs is therefore written down here,
and ``tests/store/test_schema.py`` fails the moment it disagrees with the
newest migration.
"""

from __future__ import annotations

from deskctl.errors import SchemaBehind, Unreachable
from deskctl.store.dbapi import Database

SCHEMA_HEAD = "0009"


def stored_revision(db: Database) -> str | None:
    try:
        revision = db.scalar("SELECT version_num FROM alembic_version")
    except db.errors as exc:
        message = str(exc).lower()
        if "alembic_version" in message and (
            "no such table" in message or "does not exist" in message
        ):
            return None
        raise Unreachable(f"cannot open the database: {exc}") from exc
    finally:
        db.rollback()  # end the driver's implicit transaction, or the failed one
    return None if revision is None else str(revision)


def ensure_current(db: Database) -> None:
    """Refuse to work on a database whose schema is behind the code."""
    current = stored_revision(db)
    if current != SCHEMA_HEAD:
        where = "has no deskctl schema" if current is None else f"is at revision {current}"
        raise SchemaBehind(
            f"the database {where}, this deskctl needs {SCHEMA_HEAD}: run `deskctl db upgrade`"
        )
