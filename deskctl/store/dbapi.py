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
import os
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

from deskctl.config import make_private_dir
from deskctl.errors import ConfigError, DeskError, Unreachable

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
    """Create the database's folder (0700) and file (0600), so a first run needs no mkdir.

    SQLite would create the file through the umask (0644 under the usual 022):
    customer mail readable by every user on the host. Created here first, it
    is 0600, and SQLite gives the -wal and -shm files the database file's
    mode. A file that exists is left as it is, so a team that shares one
    database by a group (README, "Sharing one SQLite file") keeps its mode.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if os.path.lexists(path):
        return
    refused = _creation_refused(path)
    if refused is not None:
        raise refused
    make_private_dir(path.parent, "the database folder")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # created by a run beside us
    except OSError as exc:  # what no check foresees: a full disk, a race
        raise _cannot_create(path, path.parent, str(exc.strerror)) from exc
    try:
        os.fchmod(fd, 0o600)  # os.open's mode passes through the umask
    finally:
        os.close(fd)


def display_url(url: str) -> str:
    """``url`` as it may be shown: the password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


#: SQLite's primary result codes that mean "this user cannot use the file"
#: (READONLY, CANTOPEN, PERM, AUTH) and "the file is damaged" (CORRUPT, NOTADB).
_SQLITE_ACCESS = {8, 14, 3, 23}
_SQLITE_DAMAGED = {11, 26}


def _unwritable(database: str) -> tuple[str, Path | None]:
    """Which of the database, its -wal, its -shm or its folder this user cannot write.

    And that file when it is this user's own: then "run it as the owner" is no
    fix, the owner's write bit is.
    """
    path = Path(database).expanduser()
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if candidate.exists() and not os.access(candidate, os.R_OK | os.W_OK):
            st = candidate.stat()
            what = f"{candidate} (mode {st.st_mode & 0o777:04o}, uid {st.st_uid}, gid {st.st_gid})"
            return what, candidate if st.st_uid == os.geteuid() else None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"the folder {path.parent} (SQLite creates {path.name}-wal and -shm there)", None
    return str(path), None


def damaged(where: str, detail: str) -> ConfigError:
    """A damaged SQLite file: waiting will not mend it, a backup or ``.recover`` may."""
    return ConfigError(
        f"the database {where} is damaged ({detail}): restore it from a backup, or rescue"
        f" what is left with `sqlite3 {where} .recover`"
    )


def database_error(exc: BaseException | None, sqlite_file: str | None) -> DeskError | None:
    """The DeskError a driver error stands for; None for one that is not about the database itself.

    A file this user cannot write and a damaged file are configuration
    (exit 5): waiting does not fix them, so they must not read as a
    temporary outage (6). A busy, lost or refused database is temporary.
    """
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        where = sqlite_file or "the database"
        if code in _SQLITE_DAMAGED:
            return damaged(where, str(exc))
        if code in _SQLITE_ACCESS and sqlite_file not in (None, ":memory:"):
            what, own = _unwritable(sqlite_file)
            fix = (
                f"the file is this user's own: `chmod u+rw {own}`"
                if own
                else 'run it as their owner or give their group write access (README, "Sharing'
                ' one SQLite file")'
            )
            return ConfigError(
                f"cannot write {what}: deskctl must read and write the database and its -wal"
                f" and -shm files; {fix}"
            )
        if isinstance(exc, sqlite3.OperationalError):
            return Unreachable(f"database error: {exc}")
        return None
    operational = any(c.__name__ == "OperationalError" for c in type(exc).__mro__)
    return Unreachable(f"database error: {exc}") if operational else None


def connect_error(exc: BaseException | None, sqlite_file: str | None) -> DeskError:
    """The DeskError for a failed connect: whatever :func:`database_error` says, else temporary."""
    return database_error(exc, sqlite_file) or Unreachable(f"database error: {exc}")


def require_database(url: str) -> None:
    """Refuse, before anything is created, a SQLite file that does not exist yet.

    Connecting would create an empty file (and its folder) only to report
    that it has no schema: a command that reads, or that needs the schema,
    must leave a fresh home as it found it. ``db upgrade`` creates it.
    """
    from deskctl.errors import SchemaBehind

    database = sqlite_database(url)
    if database is not None and database != ":memory:" and not Path(database).expanduser().exists():
        refused = _creation_refused(Path(database).expanduser())
        if refused is not None:
            raise refused
        raise SchemaBehind(f"there is no database at {database} yet: run `deskctl db upgrade`")


def _creation_refused(path: Path) -> ConfigError | None:
    """Why this user cannot create the missing database ``path`` and its folders, or None.

    The one judgement of it, made before anything is created: a reader
    (:func:`require_database`) must not send the user to ``db upgrade`` when
    that command could not create the file either (a file in the way of its
    folder, a mistyped DESKCTL_HOME, a folder this user may not write), and
    ``db upgrade`` (:func:`prepare_sqlite_file`) says the same line then.
    """
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"this user may not write {existing}"
    else:
        return None
    return _cannot_create(path, existing, problem)


def _cannot_create(path: Path, existing: Path, problem: str) -> ConfigError:
    """One line for both: the file when its folder is there, else the folder."""
    what = f"the database {path}"
    if existing != path.parent:
        what = f"the database folder {path.parent}"
    return ConfigError(
        f"cannot create {what}: {problem}; set DESKCTL_HOME to a folder this user may write,"
        " or name the database with --db"
    )


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
    file: str | None = None  # a SQLite database's file, for errors that name it

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
    def transaction(self, *, write: bool = False, wait_ms: int | None = None) -> Iterator[Database]:
        """One unit of work; a lost or locked database becomes exit 6.

        On SQLite a writer takes its lock at BEGIN (IMMEDIATE), as the engine
        does, so two writers queue instead of one failing on upgrade.
        ``wait_ms`` bounds the wait for a lock another run holds (SQLite's
        busy timeout, PostgreSQL's lock_timeout), for a write that may be
        skipped rather than keep someone waiting.
        """
        try:
            if self.dialect == "sqlite":
                if wait_ms is not None:
                    self.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
                self.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            elif wait_ms is not None:
                self.scalar("SELECT set_config('lock_timeout', :wait, true)", wait=f"{wait_ms}ms")
            yield self
            self.conn.commit()
        except self.driver.DatabaseError as exc:
            self.rollback()
            converted = database_error(exc, self.file)
            if converted is None:
                raise
            raise converted from exc
        except MemoryError as exc:
            # SQLite reports a damaged record that claims a huge size as
            # "out of memory" (sqlite3 raises MemoryError); its own check tells.
            self.rollback()
            damage = self._damage() if self.dialect == "sqlite" else None
            if damage is None:
                raise
            raise damage from exc
        except BaseException:
            self.rollback()
            raise
        finally:
            if wait_ms is not None and self.dialect == "sqlite":
                with suppress(self.driver.Error):
                    self.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    def _damage(self) -> DeskError | None:
        """The "damaged" error when SQLite's own checks find damage, else None.

        ``quick_check`` covers the b-trees; a full-text index whose segments
        are damaged passes it, and only FTS5's integrity check tells.
        """
        checks = ["PRAGMA quick_check(1)"]
        try:
            fts = self.rows(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE :fts",
                fts="CREATE VIRTUAL TABLE%USING fts5%",
            )
            checks += [
                f"INSERT INTO {r['name']}({r['name']}) VALUES('integrity-check')" for r in fts
            ]
            for check in checks:
                verdict = self.scalar(check)
                if verdict not in (None, "ok"):
                    return damaged(self.file or "the database", str(verdict))
        except self.driver.Error as exc:
            return database_error(exc, self.file)
        except MemoryError:
            return damaged(self.file or "the database", "out of memory while checking it")
        finally:
            self.rollback()
        return None

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
            raise connect_error(exc, database) from exc
        return Database(conn, "sqlite", sqlite3, database)
    if url.startswith("postgresql+psycopg://"):
        psycopg = postgres_driver()

        try:
            pg = psycopg.connect("postgresql://" + url.partition("://")[2])
        except psycopg.Error as exc:
            raise Unreachable(f"database error: {exc}") from exc
        return Database(pg, "postgresql", psycopg)
    from deskctl.store.engine import make_engine

    return from_engine(make_engine(url))


def missing_driver(module: str) -> ConfigError:
    """The error for a database URL whose driver is not installed."""
    return ConfigError(
        f"the database driver {module} is not installed: pip install {module} into deskctl's"
        " environment (psycopg comes with 'deskctl[postgres]'), or name another database"
    )


def engine_file(engine: Engine) -> str | None:
    """A SQLite engine's file (for errors that name it); None for other databases."""
    return engine.url.database if engine.dialect.name == "sqlite" else None


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
    file = engine_file(engine)
    try:
        conn = engine.raw_connection()
    except DBAPIError as exc:
        raise connect_error(exc.orig, file) from exc
    except driver.Error as exc:  # the pool hands the driver's own errors through
        raise connect_error(exc, file) from exc
    return Database(conn, engine.dialect.name, driver, file)


def from_session(session: Session) -> Database:
    """The connection under ``session``, inside its transaction, with its changes flushed."""
    session.flush()
    conn = session.connection()
    file = engine_file(conn.engine)
    return Database(conn.connection.dbapi_connection, conn.dialect.name, conn.dialect.dbapi, file)  # type: ignore[arg-type]
