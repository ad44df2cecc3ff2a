"""A mail server pipes each mail to ``deskctl ingest --mta``: kept (0) or "try later" (75).

A mail server bounces the customer's mail on any other non-zero status, so
every failure before the mail is kept, whatever its cause, must ask it to
retry, and say in one line what the administrator has to fix.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BACKEND, Result, Run
from mailfactory import make_mail
from testbed.launcher import write_launcher
from testbed.postfix import ALIAS_DOMAIN, Postfix


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
    # The JSON error says what kind of failure it was, as every other command's does;
    # 75 is the exit status, the one thing the mail server reads.
    as_json = desk("--json", "ingest", "--mta", "--channel", "nope", stdin=make_mail())
    line = assert_retry(as_json, "nope")
    assert as_json.json() == {
        "error": {"code": "not_found", "message": line.removeprefix("deskctl: error: ")}
    }


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
    if BACKEND == "sqlite":  # a file that is there, but has no schema yet
        missing = empty_db_url.removeprefix("sqlite:///")
        result = run_deskctl("--db", empty_db_url, "ingest", "--mta", stdin=make_mail())
        assert_retry(result, f"there is no database at {missing} yet", "db upgrade")
        Path(missing).touch()
    result = run_deskctl("--db", empty_db_url, "ingest", "--mta", stdin=make_mail())
    assert_retry(result, f"the database {empty_db_url} has no deskctl schema", "db upgrade")


def test_a_database_that_is_down_is_retried_and_its_password_never_shown(run_deskctl: Run) -> None:
    url = "postgresql+psycopg://deskctl:s3cret-pw@127.0.0.1:1/deskctl"
    result = run_deskctl("--db", url, "ingest", "--mta", stdin=make_mail())
    line = assert_retry(result, "database")
    assert "s3cret" not in line


def test_a_database_locked_past_its_lock_timeout_is_retried(desk: Run, db_url: str) -> None:
    if BACKEND != "postgres":
        pytest.skip(
            "SQLite writers wait out the 30 s busy timeout; PostgreSQL's lock_timeout is quick"
        )
    import psycopg

    holder = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        holder.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        url = db_url + "?options=-c%20lock_timeout%3D300"
        result = desk("--db", url, "ingest", "--mta", stdin=make_mail(subject="Locked"))
        assert_retry(result, "lock timeout")
    finally:
        holder.rollback()
        holder.close()
    assert desk("--json", "ticket", "list").json()["tickets"] == []


def test_a_database_driver_that_is_not_installed_is_retried(run_deskctl: Run) -> None:
    url = "postgresql+pg8000://deskctl@127.0.0.1/x"  # a driver deskctl does not install
    result = run_deskctl("--db", url, "ingest", "--mta", stdin=make_mail())
    assert_retry(result, "the database driver pg8000 is not installed", "pip install")


def test_a_damaged_database_is_retried(run_deskctl: Run, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not a database" * 300)
    result = run_deskctl("--db", f"sqlite:///{damaged}", "ingest", "--mta", stdin=make_mail())
    assert_retry(result, f"the database {damaged} is damaged", ".recover")


# -- with a real Postfix ------------------------------------------------------
#
# The README's recipe, as written: the alias lives in deskctl's own aliases
# file, owned by the pipe user (nobody here), so Postfix runs it as that user,
# with an empty environment; the alias names the home (SQLite) or the
# database (--db) itself, and that user ran `db upgrade`, so the database
# files are its own.


@dataclass
class PipedDesk:
    """deskctl behind a Postfix alias: the address to write to, and its database."""

    address: str
    home: Path
    url: str
    launcher: Path


def as_nobody(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    nobody = pwd.getpwnam("nobody")
    return subprocess.run(
        list(argv),
        env={"PATH": "/usr/bin:/bin", **env},
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def piped(
    postfix: Postfix, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PipedDesk]:
    tag = uuid.uuid4().hex[:10]
    folder = postfix.base / f"desk-{tag}"
    folder.mkdir(mode=0o755)
    launcher = write_launcher(folder)
    home = folder / "home"
    home.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    url = f"sqlite:///{home / 'deskctl.db'}" if BACKEND == "sqlite" else empty_db_url
    db_option = "" if BACKEND == "sqlite" else f" --db {url}"
    upgraded = as_nobody(str(launcher), *db_option.split(), "db", "upgrade",
                         env={"DESKCTL_HOME": str(home)})  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    name = f"support-{tag}"
    added = as_nobody(str(launcher), *db_option.split(), "channel", "add", name, "--kind", "pipe",
                      "--address", f"{name}@{ALIAS_DOMAIN}", env={"DESKCTL_HOME": str(home)})  # fmt: skip
    assert added.returncode == 0, added.stderr
    command = (
        f"/usr/bin/env DESKCTL_HOME={home} {launcher}{db_option} ingest --mta --channel {name}"
    )
    address = postfix.add_alias(name, command)
    monkeypatch.setenv("DESKCTL_DB", url)  # the test reads what the pipe stored
    yield PipedDesk(address, home, url, launcher)


def wait_for(what: str, check: Callable[[], bool], postfix: Postfix, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s:\n{postfix.log_tail()}")
        time.sleep(0.05)


def delivered(postfix: Postfix, address: str) -> list[str]:
    return [
        line
        for line in postfix.log().splitlines()
        if f"to=<{address}>" in line and "status=" in line
    ]


def test_mail_through_a_postfix_alias_becomes_tickets(
    postfix: Postfix, piped: PipedDesk, run_deskctl: Run
) -> None:
    for i in range(3):
        postfix.send(make_mail(subject=f"Via Postfix {i}"), piped.address)
    wait_for("three deliveries", lambda: len(delivered(postfix, piped.address)) == 3, postfix)
    assert all("status=sent" in line for line in delivered(postfix, piped.address))
    tickets = run_deskctl("--json", "ticket", "list").json()["tickets"]
    assert sorted(t["title"] for t in tickets) == [
        "Via Postfix 0",
        "Via Postfix 1",
        "Via Postfix 2",
    ]
    shown = run_deskctl("--json", "ticket", "show", str(tickets[0]["id"])).json()
    assert shown["channel"] == piped.address.split("@")[0]  # the channel the alias names
    if BACKEND == "sqlite":  # the pipe user's database, private to it
        db = piped.home / "deskctl.db"
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert db.stat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_postfix_defers_while_the_database_is_unavailable_and_delivers_once_after(
    postfix: Postfix, piped: PipedDesk, run_deskctl: Run, request: pytest.FixtureRequest
) -> None:
    away = piped.home.with_name("home-away")
    if BACKEND == "sqlite":  # the disk holding the home is not there

        def down() -> None:
            piped.home.rename(away)

        def up() -> None:
            away.rename(piped.home)
    else:  # the database refuses connections
        cluster = request.getfixturevalue("pg_cluster")
        name = piped.url.rsplit("/", 1)[-1]

        def toggle(allow: bool) -> None:
            with cluster.connect() as conn:
                conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allow}')

        def down() -> None:
            toggle(False)

        def up() -> None:
            toggle(True)

    down()
    postfix.send(make_mail(subject="Sent while down", message_id="<down@example.org>"),
                 piped.address)  # fmt: skip
    wait_for("a deferral", lambda: len(delivered(postfix, piped.address)) >= 1, postfix)
    (deferred,) = delivered(postfix, piped.address)[:1]
    assert "status=deferred" in deferred and "not stored, the mail server will retry" in deferred
    assert "status=bounced" not in postfix.log()
    assert postfix.queued() == 1

    up()
    postfix.flush()
    wait_for("the retry", lambda: "status=sent" in delivered(postfix, piped.address)[-1], postfix)
    wait_for("an empty queue", lambda: postfix.queued() == 0, postfix)
    postfix.flush()  # nothing left to deliver twice
    time.sleep(0.5)
    sent = [line for line in delivered(postfix, piped.address) if "status=sent" in line]
    assert len(sent) == 1
    tickets = run_deskctl("--json", "ticket", "list").json()["tickets"]
    assert [(t["title"], t["messages"]) for t in tickets] == [("Sent while down", 1)]
