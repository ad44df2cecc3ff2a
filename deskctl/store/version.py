"""The schema check every command makes, without loading Alembic.

Loading Alembic and parsing the migration scripts costs more than a whole
``ticket list``; the revision this code needs is therefore written down here,
and ``tests/store/test_schema.py`` fails the moment it disagrees with the
newest migration.
"""

from __future__ import annotations

from deskctl.errors import SchemaBehind
from deskctl.store.dbapi import Database, connect_error

SCHEMA_HEAD = "0014"


def stored_revision(db: Database) -> str | None:
    try:
        revision = db.scalar("SELECT version_num FROM alembic_version")
    except db.errors as exc:
        message = str(exc).lower()
        if "alembic_version" in message and (
            "no such table" in message or "does not exist" in message
        ):
            return None
        raise connect_error(exc, db.file) from exc
    finally:
        db.rollback()  # end the driver's implicit transaction, or the failed one
    return None if revision is None else str(revision)


def ensure_current(db: Database, shown_url: str) -> None:
    """Refuse to work on a database whose schema is behind the code.

    The message names the database looked at (``shown_url``, without its
    password): the usual cause is a mail alias or a cron line that reached
    another database than the one that was upgraded.
    """
    current = stored_revision(db)
    if current != SCHEMA_HEAD:
        state = "has no deskctl schema" if current is None else f"is at revision {current}"
        raise SchemaBehind(
            f"the database {shown_url} {state}, this deskctl needs {SCHEMA_HEAD}:"
            " run `deskctl db upgrade` with the same --db or DESKCTL_HOME"
        )
