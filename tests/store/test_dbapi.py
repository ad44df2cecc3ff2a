"""The read path finds the same SQLite file SQLAlchemy would, for every URL form."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from conftest import Run
from deskctl.store.dbapi import SQLITE_BUSY_TIMEOUT_MS, open_database, sqlite_database

MAIL = (
    b"From: Ada <ada@example.test>\r\nTo: support@example.test\r\n"
    b"Subject: Locked out\r\nMessage-ID: <locked@example.test>\r\n\r\nHelp.\r\n"
)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///desk.db",
        "sqlite:////var/lib/deskctl/desk.db",
        "sqlite:///with%20space/desk.db",
        "sqlite+pysqlite:///rel/desk.db",
        "sqlite:///:memory:",
        "sqlite://",
    ],
)
def test_a_plain_sqlite_url_names_the_file_sqlalchemy_would_open(url: str) -> None:
    assert sqlite_database(url) == (make_url(url).database or ":memory:")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///desk.db?timeout=5",  # connect arguments: SQLAlchemy's business
        "sqlite+aiosqlite:///desk.db",
        "postgresql+psycopg://u:p@localhost/desk",
    ],
)
def test_other_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert sqlite_database(url) is None


def test_the_read_path_sets_up_sqlite_like_the_engine(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'desk.db'}")
    try:
        assert db.scalar("PRAGMA journal_mode") == "wal"
        assert db.scalar("PRAGMA busy_timeout") == SQLITE_BUSY_TIMEOUT_MS
        assert db.scalar("PRAGMA foreign_keys") == 1
    finally:
        db.close()


def test_a_database_server_that_is_down_exits_6_in_one_line(run_deskctl: Run) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://deskctl@127.0.0.1:{port}/deskctl?connect_timeout=3"
    for args in (("ticket", "list"), ("ticket", "show", "1"), ("queue", "list")):
        result = run_deskctl("--db", url, *args)
        assert result.exit_code == 6, (args, result.stderr)
        assert result.stderr.startswith("deskctl: error: database error:"), args
        assert result.stderr.count("\n") == 1, args


@pytest.mark.parametrize(
    ("database", "refused"),
    [  # a file where the database's folder should be: deeper down, or the folder itself
        ("file/sub/desk.db", "the database folder {tmp}/file/sub: {tmp}/file is not a folder"),
        ("file/desk.db", "the database {tmp}/file/desk.db: {tmp}/file is not a folder"),
    ],
)
def test_a_database_folder_that_cannot_be_created_is_a_configuration_error(
    tmp_path: Path, run_deskctl: Run, database: str, refused: str
) -> None:
    (tmp_path / "file").write_text("not a folder")
    url = f"sqlite:///{tmp_path / database}"
    expected = (
        f"deskctl: error: cannot create {refused.format(tmp=tmp_path)}; set DESKCTL_HOME to a"
        " folder this user may write, or name the database with --db\n"
    )
    result = run_deskctl("--db", url, "db", "upgrade")
    assert result.exit_code == 5, result.stderr
    assert result.stderr == expected
    # A reader creates nothing, and does not send the user to `db upgrade`, which
    # would fail the same way: it says the same line, also exit 5.
    listed = run_deskctl("--db", url, "ticket", "list")
    assert listed.exit_code == 5, listed.stderr
    assert listed.stderr == expected
    assert not (tmp_path / "file").is_dir()


def test_a_lock_wait_that_times_out_exits_6_on_every_path(desk: Run, db_url: str) -> None:
    """Statements sent to the driver inside an ORM transaction fail like the ORM's own."""
    if not db_url.startswith("postgresql"):
        pytest.skip("lock timeouts are PostgreSQL's; SQLite writers queue on the busy timeout")
    import psycopg

    desk("channel", "add", "support", "--kind", "pipe", "--address", "support@example.test")
    assert desk("ingest", "--channel", "support", "-", stdin=MAIL).exit_code == 0
    assert desk("ticket", "show", "1").exit_code == 0  # the view row the holder will lock
    holder = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        holder.execute("SELECT * FROM ticket_views FOR UPDATE")
        url = db_url + ("&" if "?" in db_url else "?") + "options=-c%20lock_timeout%3D300"
        result = desk("--db", url, "ticket", "reply", "1", "--force", "--body", "x")
        assert result.exit_code == 6, result.stderr
        assert "lock timeout" in result.stderr and result.stderr.count("\n") == 1
        # Reading never waits for the lock: show prints, and says the view is not recorded.
        shown = desk("--db", url, "ticket", "show", "1")
        assert shown.exit_code == 0 and "Locked out" in shown.stdout, shown.stderr
        assert "what was shown is not recorded" in shown.stderr and "lock timeout" in shown.stderr
    finally:
        holder.rollback()
        holder.close()
    shown = desk("--json", "ticket", "show", "1").json()
    assert [m["direction"] for m in shown["messages"]] == ["in"]  # the failed reply left nothing
