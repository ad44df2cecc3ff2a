"""The SQLite database holds customer mail: private by default, shareable on purpose.

Modes are checked on the files themselves, with deskctl run as its own
process under the umask a user might have. The "cannot write" stories run
deskctl as another account (``nobody`` when the tests run as root, since
root ignores file modes), the way a mail server's pipe or a cron job would.
"""

from __future__ import annotations

import grp
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BACKEND, Run
from mailfactory import make_mail
from testbed._proc import make_base_dir
from testbed.launcher import write_launcher

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's own files")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def deskctl(home: Path, umask: int, *args: str, stdin: bytes = b"") -> None:
    env = {**os.environ, "DESKCTL_HOME": str(home)}
    env.pop("DESKCTL_DB", None)
    proc = subprocess.run(
        [sys.executable, "-m", "deskctl", *args],
        input=stdin,
        capture_output=True,
        env=env,
        umask=umask,
        check=False,
    )
    assert proc.returncode == 0, (args, proc.stderr.decode())


@pytest.fixture
def keeper() -> Iterator[list[sqlite3.Connection]]:
    """Readers held open, so SQLite keeps the -wal and -shm files between runs."""
    held: list[sqlite3.Connection] = []
    yield held
    for conn in held:
        conn.close()


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277], ids=["022", "000", "277"])
def test_home_database_wal_and_shm_are_private_whatever_the_umask(
    tmp_path: Path, umask: int, keeper: list[sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "new" / "home"
    db = home / "deskctl.db"
    side = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    deskctl(home, umask, "db", "upgrade")
    assert mode(home) == 0o700 and mode(home.parent) == 0o700
    assert mode(db) == 0o600

    # SQLite gives -wal and -shm the database's mode, whoever creates them
    # and whatever that process's umask; a reader held open keeps them.
    old = os.umask(umask)
    try:
        conn = sqlite3.connect(db)
        conn.execute("SELECT count(*) FROM tickets").fetchone()
        keeper.append(conn)
    finally:
        os.umask(old)
    assert [mode(p) for p in side] == [0o600] * 3

    deskctl(home, umask, "ingest", stdin=make_mail(subject="Private"))
    assert [mode(p) for p in side] == [0o600] * 3
    deskctl(home, umask, "channel", "add", "sample", "--kind", "maildir", "--sample",
            "--address", "support@example.test")  # fmt: skip
    deskctl(home, umask, "fetch")
    assert [mode(p) for p in side] == [0o600] * 3
    assert mode(home) == 0o700
    assert conn.execute("SELECT count(*) FROM tickets").fetchone()[0] > 1


def test_a_team_database_keeps_the_group_mode_it_was_given(
    tmp_path: Path, keeper: list[sqlite3.Connection]
) -> None:
    """README, "Sharing one SQLite file": pre-create folder and file with the group's mode."""
    group = grp.getgrgid(os.getegid()).gr_gid
    home = tmp_path / "shared"
    home.mkdir()
    os.chmod(home, 0o2770)
    db = home / "deskctl.db"
    db.touch()
    os.chown(db, -1, group)
    os.chmod(db, 0o660)

    deskctl(home, 0o022, "db", "upgrade")
    conn = sqlite3.connect(db)
    conn.execute("SELECT count(*) FROM tickets").fetchone()
    keeper.append(conn)
    deskctl(home, 0o022, "ingest", stdin=make_mail(subject="Shared"))
    assert mode(home) == 0o2770
    assert [mode(Path(f"{db}{s}")) for s in ("", "-wal", "-shm")] == [0o660] * 3


# -- files this user cannot write ---------------------------------------------


@pytest.fixture
def other_user() -> Iterator[tuple[Path, dict[str, object]]]:
    """A home another account owns, and Popen arguments that run deskctl as that account.

    As root that account is ``nobody`` and the files it may not write belong
    to root; as anyone else it is the user itself, and such files lose their
    owner's write bit. Either way the kernel, not deskctl, says no.
    """
    base = make_base_dir("dk-perm-")
    os.chmod(base, 0o755)
    launcher = write_launcher(base)
    home = base / "home"
    home.mkdir(mode=0o700)
    kwargs: dict[str, object] = {}
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        kwargs = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    kwargs["args"] = [str(launcher)]
    kwargs["env"] = {"PATH": "/usr/bin:/bin", "DESKCTL_HOME": str(home)}
    kwargs["cwd"] = str(base)
    yield home, kwargs
    shutil.rmtree(base)


def run_other(kwargs: dict[str, object], *args: str, stdin: bytes = b"") -> tuple[int, str]:
    options = dict(kwargs)
    argv = [*options.pop("args"), *args]  # type: ignore[misc]
    proc = subprocess.run(argv, input=stdin, capture_output=True, check=False, **options)  # type: ignore[call-overload]
    return int(proc.returncode), proc.stderr.decode()


def deny(path: Path) -> None:
    """Make ``path`` a file the other account cannot write (see :func:`other_user`)."""
    if not path.exists():
        path.touch()
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
    else:
        os.chmod(path, 0o400)


@pytest.mark.parametrize("which", ["", "-wal", "-shm"])
def test_a_database_file_the_user_cannot_write_is_a_configuration_error_naming_it(
    other_user: tuple[Path, dict[str, object]], which: str
) -> None:
    home, kwargs = other_user
    code, err = run_other(kwargs, "db", "upgrade")
    assert code == 0, err
    target = Path(f"{home / 'deskctl.db'}{which}")
    deny(target)
    for args in (("ingest",), ("ingest", "--mta")):
        code, err = run_other(kwargs, *args, stdin=make_mail())
        expected = 75 if "--mta" in args else 5
        assert code == expected, (args, err)
        assert f"cannot write {target} (mode" in err and "group write access" in err, err
        assert err.count("\n") == 1, err


# -- a held write lock, a damaged file ----------------------------------------


def test_ticket_show_prints_while_another_run_holds_the_write_lock(desk: Run, db_url: str) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    mail = make_mail(subject="Locked out?", to="help@example.test")
    assert desk("ingest", "--channel", "support", stdin=mail).exit_code == 0
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        shown = desk("ticket", "show", "1")
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert shown.exit_code == 0, shown.stderr
    assert "Locked out?" in shown.stdout
    assert "what was shown is not recorded" in shown.stderr and took < 10
    # Not recorded means the reply asks for another look, as it should.
    assert desk("ticket", "reply", "1", "--body", "x").exit_code == 4
    assert desk("ticket", "show", "1").stderr == ""
    replied = desk("ticket", "reply", "1", "--body", "x")
    assert replied.exit_code == 0, replied.stderr


@pytest.mark.parametrize("damage", ["garbage pages", "records claiming huge sizes"])
def test_damaged_pages_are_one_line_exit_5_in_search_and_db_upgrade(
    desk: Run, db_url: str, damage: str
) -> None:
    for i in range(30):
        desk("ingest", stdin=make_mail(subject=f"vpn timeout {i}", body="vpn " * 400))
    path = Path(db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    rng = random.Random(3)
    for page in range(2, len(data) // page_size):  # the schema's page is left readable
        start = page * page_size
        if damage == "garbage pages":
            data[start : start + page_size] = rng.randbytes(page_size)
        else:  # SQLite reads these as "out of memory"
            data[start + 100 : start + 200] = b"\xff" * 100
    path.write_bytes(bytes(data))
    commands = [("ticket", "list", "--search", "vpn")]
    if damage == "garbage pages":
        commands.append(("db", "upgrade"))
    for args in commands:
        result = desk(*args)
        assert result.exit_code == 5, (args, result.stderr)
        assert f"the database {path} is damaged" in result.stderr, args
        assert result.stderr.count("\n") == 1, args


def test_a_home_the_user_cannot_write_names_the_home_not_db_upgrade(
    other_user: tuple[Path, dict[str, object]],
) -> None:
    """`db upgrade` could not create the database there either, so it is not the fix."""
    home, kwargs = other_user
    if os.geteuid() == 0:
        os.chown(home, 0, 0)
        os.chmod(home, 0o755)
    else:
        os.chmod(home, 0o500)
    for args in (("ticket", "list"), ("ingest", "--mta")):
        code, err = run_other(kwargs, *args, stdin=make_mail())
        assert code == (75 if "--mta" in args else 5), (args, err)
        assert f"cannot create the database {home / 'deskctl.db'}: this user may not write" in err
        assert "set DESKCTL_HOME" in err and "db upgrade" not in err, err
    code, err = run_other(kwargs, "db", "upgrade")
    assert code == 5, err
    assert f"cannot create the database {home / 'deskctl.db'}: this user may not write" in err
    assert "set DESKCTL_HOME" in err, "db upgrade says what the readers say"


def test_a_database_file_of_the_users_own_without_write_bit_names_chmod(
    other_user: tuple[Path, dict[str, object]],
) -> None:
    """ "Run it as the owner" is no fix for the owner: the hint is the write bit."""
    home, kwargs = other_user
    code, err = run_other(kwargs, "db", "upgrade")
    assert code == 0, err
    db = home / "deskctl.db"
    os.chmod(db, 0o400)  # still the other account's file, as db upgrade made it
    code, err = run_other(kwargs, "ingest", stdin=make_mail())
    assert code == 5, err
    assert f"cannot write {db} (mode 0400" in err and f"`chmod u+rw {db}`" in err, err
    assert "run it as their owner" not in err
