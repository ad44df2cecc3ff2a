"""The application context, built once in the root callback.

Commands reach the database only through :meth:`AppContext.transaction` (the
ORM) or :meth:`AppContext.database` (plain SQL, for the ticket read path), so
the transaction boundary (and with it every promise about what is stored
when) is visible in the command or job that owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deskctl.config import Settings

if TYPE_CHECKING:  # SQLAlchemy is imported by the commands that open the database
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from deskctl.store.dbapi import Database

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    _engine: Engine | None = field(default=None, repr=False)
    _checked: bool = field(default=False, repr=False)

    def engine(self, *, check_schema: bool = True) -> Engine:
        """The engine; by default refuses a database whose schema is behind."""
        if check_schema and not self._checked:
            from deskctl.store.dbapi import require_database

            require_database(self.settings.db_url)
        if self._engine is None:
            from deskctl.store.engine import make_engine

            self._engine = make_engine(self.settings.db_url)
        if check_schema and not self._checked:
            from deskctl.store.dbapi import from_engine

            db = from_engine(self._engine)
            try:
                self._check(db)
            finally:
                db.close()
        return self._engine

    def _check(self, db: Database) -> None:
        from deskctl.store.dbapi import display_url
        from deskctl.store.version import ensure_current

        ensure_current(db, display_url(self.settings.db_url))
        self._checked = True

    @contextmanager
    def database(self) -> Iterator[Database]:
        """A driver-level connection for the fast read path (see :mod:`deskctl.store.dbapi`).

        The caller opens its transactions with :meth:`Database.transaction`.
        """
        from deskctl.store.dbapi import open_database, require_database

        if not self._checked:
            require_database(self.settings.db_url)
        db = open_database(self.settings.db_url)
        try:
            if not self._checked:
                self._check(db)
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on error."""
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.orm import Session

        from deskctl.store.dbapi import database_error, engine_file

        engine = self.engine()
        bind = engine.execution_options(deskctl_write=True) if write else engine
        # Services also send SQL straight to the driver on the session's
        # connection (deskctl.services.seen); its errors arrive unwrapped.
        driver_error: type[Exception] = engine.dialect.dbapi.DatabaseError  # type: ignore[union-attr]
        session = Session(bind=bind, expire_on_commit=False)
        try:
            with session.begin():
                yield session
        except (DBAPIError, driver_error) as exc:
            orig = exc.orig if isinstance(exc, DBAPIError) else exc
            converted = database_error(orig, engine_file(engine))
            if converted is None:
                raise
            raise converted from exc
        finally:
            session.close()
