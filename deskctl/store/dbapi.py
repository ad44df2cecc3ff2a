"""SQL straight to the driver, for the commands an agent runs all day.

``import sqlalchemy`` alone takes about a third of a second on a small
machine: more than the whole budget of a ``ticket list``. The ticket read
path (list, search, show) therefore speaks SQL to the DB-API driver itself:
the standard library's ``sqlite3`` for SQLite, psycopg for PostgreSQL.
Another driver for either (a URL SQLAlchemy must interpret) borrows a
connection from SQLAlchemy's engine, without the fast start. Statements are
written once, with ``:name`` parameters, in the SQL both databases share;
deskctl supports those two databases and no others.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from deskctl.errors import ConfigError, Unreachable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: How SQLAlchemy's DateTime stores a (UTC) value in SQLite; the two paths
#: must write the same text, or ordering by time would break.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def sqlite_pragmas(conn: sqlite3.Connection, _record: Any = None) -> None:
    """Set up a SQLite connection for several agents on one host.

    WAL lets readers never block the writer, the busy timeout makes writers
    queue instead of failing at once, and foreign keys are off unless asked
    for. The driver's own transaction handling would issue BEGIN lazily and
    defer locking to the first write; deskctl issues BEGIN itself instead.
    """
    conn.isolation_level = None
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def prepare_sqlite_file(database: str) -> None:
    """Create the database file's folder, so a first run needs no mkdir."""
    if database and database != ":memory:":
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the database folder {folder}: {exc.strerror}"
            raise ConfigError(message) from exc


def require_database(url: str) -> None:
    """Refuse, before anything is created, a SQLite file that does not exist yet.

    Connecting would create an empty file (and its folder) only to report
    that it has no schema: a command that reads, or that needs the schema,
    must leave a fresh home as it found it. ``db upgrade`` creates it.
    """
    from deskctl.errors import SchemaBehind

    database = sqlite_database(url)
    if database is not None and database != ":memory:" and not Path(database).expanduser().exists():
        raise SchemaBehind(f"there is no database at {database} yet: run `deskctl db upgrade`")


def sqlite_database(url: str) -> str | None:
    """The file of a plain ``sqlite://`` URL, as SQLAlchemy reads it.

    None for URLs this module leaves to SQLAlchemy: another driver, or query
    parameters (which SQLAlchemy turns into connect arguments).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("sqlite", "sqlite+pysqlite") or "?" in rest:
        return None
    return unquote(rest[1:] if rest.startswith("/") else rest) or ":memory:"


def as_datetime(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite hands back text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return _utc(value)


def _utc(value: datetime) -> datetime:
    """Naive values are UTC, as the ORM's ``UTCDateTime`` takes them."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_json(value: Any) -> Any:
    """A stored JSON column as Python (psycopg decodes it already, sqlite3 does not)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@dataclass
class Database:
    """One open DB-API connection, and what statements need to know of it."""

    conn: Any
    dialect: str  # "sqlite", "postgresql", or another SQLAlchemy dialect name
    driver: ModuleType  # the DB-API module: its exceptions and parameter style

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """The driver's errors for a failed statement (a missing table among them)."""
        return (self.driver.OperationalError, self.driver.ProgrammingError)

    def _bind(self, sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.dialect == "sqlite":  # sqlite3 names "qmark" but takes ":name" too
            params = {
                k: _utc(v).strftime(SQLITE_DATETIME) if isinstance(v, datetime) else v
                for k, v in params.items()
            }
            return sql, params
        if self.driver.paramstyle == "pyformat":  # psycopg, psycopg2
            return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%")), params
        raise ConfigError(f"the database driver {self.driver.__name__} is not supported")

    def _run(self, sql: str, params: dict[str, Any]) -> Any:
        cur = self.conn.cursor()
        cur.execute(*self._bind(sql, params))
        return cur

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        cur = self._run(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, **params: Any) -> Any:
        row = self._run(sql, params).fetchone()
        return None if row is None else row[0]

    def execute(self, sql: str, **params: Any) -> int:
        """Run a statement; the number of rows it changed."""
        cur = self._run(sql, params)
        count = int(cur.rowcount)
        cur.close()
        return count

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Database]:
        """One unit of work; a lost or locked database becomes exit 6.

        On SQLite a writer takes its lock at BEGIN (IMMEDIATE), as the engine
        does, so two writers queue instead of one failing on upgrade.
        """
        try:
            if self.dialect == "sqlite":
                self.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield self
            self.conn.commit()
        except self.driver.OperationalError as exc:
            self.rollback()
            raise Unreachable(f"database error: {exc}") from exc
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        """Roll back; a connection that is gone cannot, and the error at hand says why."""
        with suppress(self.driver.Error):
            self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


def open_database(url: str) -> Database:
    """Connect to ``url`` without SQLAlchemy where the driver allows it."""
    database = sqlite_database(url)
    if database is not None:
        prepare_sqlite_file(database)
        try:
            conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            sqlite_pragmas(conn)
        except sqlite3.Error as exc:
            raise Unreachable(f"database error: {exc}") from exc
        return Database(conn, "sqlite", sqlite3)
    if url.startswith("postgresql+psycopg://"):
        psycopg = postgres_driver()

        try:
            pg = psycopg.connect("postgresql://" + url.partition("://")[2])
        except psycopg.Error as exc:
            raise Unreachable(f"database error: {exc}") from exc
        return Database(pg, "postgresql", psycopg)
    from deskctl.store.engine import make_engine

    return from_engine(make_engine(url))


#: What to run when a PostgreSQL URL meets an installation without psycopg.
POSTGRES_EXTRA = "pip install 'deskctl[postgres]'"


def postgres_driver() -> ModuleType:
    """psycopg, or exit 5 saying how to install it (it is an optional extra)."""
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            f"a PostgreSQL database needs psycopg, which is not installed: {POSTGRES_EXTRA}"
        ) from exc
    return psycopg


def from_engine(engine: Engine) -> Database:
    """A connection of ``engine``'s pool; closing it hands it back."""
    from sqlalchemy.exc import DBAPIError

    driver: Any = engine.dialect.dbapi
    try:
        conn = engine.raw_connection()
    except DBAPIError as exc:
        raise Unreachable(f"database error: {exc.orig}") from exc
    except driver.Error as exc:  # the pool hands the driver's own errors through
        raise Unreachable(f"database error: {exc}") from exc
    return Database(conn, engine.dialect.name, driver)


def from_session(session: Session) -> Database:
    """The connection under ``session``, inside its transaction, with its changes flushed."""
    session.flush()
    conn = session.connection()
    return Database(conn.connection.dbapi_connection, conn.dialect.name, conn.dialect.dbapi)  # type: ignore[arg-type]
