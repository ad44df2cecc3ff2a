"""The schema check every command makes, without loading Alembic.

Loading Alembic and parsing the migration scripts costs more than a whole
``ticket list``; the revision this code needs is therefore written down here,
and ``tests/store/test_schema.py`` fails the moment it disagrees with the
newest migration.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from deskctl.errors import SchemaBehind, Unreachable

SCHEMA_HEAD = "0007"


def stored_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError) as exc:
        message = str(exc.orig).lower()
        if "alembic_version" in message and (
            "no such table" in message or "does not exist" in message
        ):
            return None
        raise Unreachable(f"cannot open the database: {exc.orig}") from exc


def ensure_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is behind the code."""
    current = stored_revision(engine)
    if current != SCHEMA_HEAD:
        where = "has no deskctl schema" if current is None else f"is at revision {current}"
        raise SchemaBehind(
            f"the database {where}, this deskctl needs {SCHEMA_HEAD}: run `deskctl db upgrade`"
        )
