"""The SQLAlchemy engine the writing commands and jobs work through.

SQLite connections get the same set-up as on the driver-only read path
(:mod:`deskctl.store.dbapi`), so both see the database alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from deskctl.errors import ConfigError
from deskctl.store.dbapi import (
    SQLITE_BUSY_TIMEOUT_MS,
    display_url,
    missing_driver,
    postgres_driver,
    prepare_sqlite_file,
    sqlite_pragmas,
)


def _sqlite_begin(conn: Any) -> None:
    # A write transaction takes the lock at BEGIN (IMMEDIATE), so two writers
    # queue on the busy timeout instead of one failing later with "database is
    # locked" when it upgrades a read lock; readers stay DEFERRED and never wait.
    write = conn.get_execution_options().get("deskctl_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``, creating the SQLite file's folder if needed."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(
            f"invalid database URL {display_url(url)!r}: {type(exc).__name__}"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        prepare_sqlite_file(parsed.database or "")
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        postgres_driver()  # missing: exit 5 with the install line, not an import error
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ImportError as exc:
        raise missing_driver(exc.name or parsed.get_driver_name()) from exc
    except Exception as exc:
        raise ConfigError(f"cannot use database URL: {exc}") from exc
