"""Engine and session setup, and the schema check every command relies on.

SQLite serves several agents on one host only with WAL (readers never block
the writer), a busy timeout (writers queue instead of failing at once) and
foreign keys switched on (SQLite leaves them off by default).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from deskctl.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # The driver's own transaction handling would issue BEGIN lazily and defer
    # locking to the first write; we issue BEGIN IMMEDIATE ourselves instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


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
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
        raise ConfigError(f"invalid database URL {shown!r}: {type(exc).__name__}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except Exception as exc:
        raise ConfigError(f"cannot use database URL: {exc}") from exc
