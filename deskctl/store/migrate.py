"""Alembic driven from code, so ``deskctl db upgrade`` works from any directory.

The migrations ship inside the installed package (``deskctl.migrations``; in
the repository a link to the top-level ``migrations`` folder), so no
``alembic.ini`` next to the working directory is needed, and installing
deskctl puts no package named ``migrations`` into site-packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from deskctl.store.dbapi import database_error, engine_file

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def _reported(exc: DBAPIError, engine: Engine) -> NoReturn:
    """A database that is damaged, unwritable or down is one line (exit 5 or 6), not a bug."""
    converted = database_error(exc.orig, engine_file(engine))
    if converted is None:
        raise exc
    raise converted from exc


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        _reported(exc, engine)


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Upgrade to head; returns (revision before, revision after)."""
    before = current_revision(engine)
    try:
        command.upgrade(alembic_config(engine), "head")
    except DBAPIError as exc:
        _reported(exc, engine)
    return before, current_revision(engine)
