"""The schema: migrations and models agree, and an old database is refused, not guessed at."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from conftest import Run
from deskctl.store.models import Base, managed_by_models


def test_the_migrations_build_exactly_what_the_models_describe(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": managed_by_models}
            ),
            Base.metadata,
        )
    assert diff == []


def test_every_command_refuses_a_database_without_schema(
    empty_db_url: str, run_deskctl: Run
) -> None:
    result = run_deskctl("--db", empty_db_url, "ticket", "list")
    assert result.exit_code == 5
    assert "run `deskctl db upgrade`" in result.stderr


def test_a_database_behind_the_code_is_refused(db_url: str, run_deskctl: Run) -> None:
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    result = run_deskctl("ticket", "list")
    assert result.exit_code == 5 and "is at revision 0000" in result.stderr


def test_upgrade_twice_is_harmless_and_current_reports_it(db_url: str, run_deskctl: Run) -> None:
    assert run_deskctl("db", "upgrade").exit_code == 0
    doc = run_deskctl("--json", "db", "current").json()
    assert doc["up_to_date"] is True and doc["current"] == doc["head"]


def test_sqlite_runs_with_wal_busy_timeout_and_foreign_keys(db_url: str) -> None:
    from deskctl.store.engine import make_engine

    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite pragmas only")
    with make_engine(db_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_the_fast_schema_check_knows_the_newest_migration(db_url: str) -> None:
    from deskctl.store.engine import make_engine
    from deskctl.store.migrate import head_revision
    from deskctl.store.version import SCHEMA_HEAD

    assert head_revision(make_engine(db_url)) == SCHEMA_HEAD
