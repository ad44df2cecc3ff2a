"""A mail server pipes each mail to ``deskctl ingest --mta``: kept (0) or "try later" (75).

A mail server bounces the customer's mail on any other non-zero status, so
every failure before the mail is kept, whatever its cause, must ask it to
retry, and say in one line what the administrator has to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Result, Run
from mailfactory import make_mail


def assert_retry(result: Result, *fragments: str) -> str:
    """Exit 75 and one line on stderr that names what to fix."""
    assert result.exit_code == 75, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("deskctl: error: not stored, the mail server will retry: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_a_kept_mail_is_0_and_a_quarantined_one_too(desk: Run) -> None:
    assert desk("ingest", "--mta", stdin=make_mail(subject="Kept")).exit_code == 0
    kept = desk("ingest", "--mta", "--max-size", "10", stdin=make_mail(subject="Too big"))
    assert kept.exit_code == 0, kept.stderr
    assert len(desk("--json", "quarantine", "list").json()["quarantine"]) == 1


def test_a_misspelt_option_in_the_alias_line_is_retried_not_bounced(desk: Run) -> None:
    result = desk("ingest", "--mta", "--chanel", "support", stdin=make_mail())
    assert_retry(result, "fix the command line", "No such option: --chanel")
    assert desk("--json", "ticket", "list").json()["tickets"] == []
    # Without --mta a usage error stays what it always was.
    assert desk("ingest", "--chanel", "support", stdin=make_mail()).exit_code == 2


def test_a_channel_that_does_not_exist_is_retried(desk: Run) -> None:
    result = desk("ingest", "--mta", "--channel", "nope", stdin=make_mail())
    assert_retry(result, "nope")


def test_a_config_file_that_cannot_be_parsed_or_read_is_retried(
    desk: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('db = "sqlite:///x\n')
    monkeypatch.setenv("DESKCTL_CONFIG", str(broken))
    assert_retry(desk("ingest", "--mta", stdin=make_mail()), "cannot parse config file", "TOML")

    monkeypatch.setenv("DESKCTL_CONFIG", str(tmp_path))  # a folder: cannot be read
    assert_retry(desk("ingest", "--mta", stdin=make_mail()), f"cannot read config file {tmp_path}")


def test_a_home_that_cannot_be_used_is_retried(
    run_deskctl: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("DESKCTL_HOME", str(tmp_path / "file" / "home"))
    result = run_deskctl("ingest", "--mta", stdin=make_mail())
    assert_retry(result, "cannot create the database folder", "set DESKCTL_HOME")


def test_a_database_that_is_behind_names_the_database(run_deskctl: Run, empty_db_url: str) -> None:
    result = run_deskctl("--db", empty_db_url, "ingest", "--mta", stdin=make_mail())
    assert_retry(result, f"the database {empty_db_url} has no deskctl schema", "db upgrade")


def test_a_database_that_is_down_is_retried_and_its_password_never_shown(run_deskctl: Run) -> None:
    url = "postgresql+psycopg://deskctl:s3cret-pw@127.0.0.1:1/deskctl"
    result = run_deskctl("--db", url, "ingest", "--mta", stdin=make_mail())
    line = assert_retry(result, "database")
    assert "s3cret" not in line


def test_a_database_driver_that_is_not_installed_is_retried(run_deskctl: Run) -> None:
    url = "postgresql+pg8000://deskctl@127.0.0.1/x"  # a driver deskctl does not install
    result = run_deskctl("--db", url, "ingest", "--mta", stdin=make_mail())
    assert_retry(result, "the database driver pg8000 is not installed", "pip install")


def test_a_damaged_database_is_retried(run_deskctl: Run, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not a database" * 300)
    result = run_deskctl("--db", f"sqlite:///{damaged}", "ingest", "--mta", stdin=make_mail())
    assert_retry(result, f"the database {damaged} is damaged", ".recover")
