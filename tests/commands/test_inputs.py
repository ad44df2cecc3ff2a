"""Inputs that are not files: a FIFO, a device or a folder named as mail or attachment.

Each is refused at once with one line and exit 2; a FIFO nobody writes to would
otherwise hang the command, and /dev/zero would be read until memory runs out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Run
from mailfactory import make_mail


@pytest.fixture
def not_files(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "pipe.eml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.eml"
    folder.mkdir()
    return {"a FIFO": str(fifo), "a character device": "/dev/zero", "a directory": str(folder)}


def run(desk: Run, kind: str, *args: str) -> tuple[int, str]:
    """(exit code, stderr); for a FIFO deskctl runs as its own process, so that a
    command blocking on it fails by timeout instead of hanging the suite."""
    if kind != "a FIFO":
        result = desk(*args)
        return result.exit_code, result.stderr
    done = subprocess.run([sys.executable, "-m", "deskctl", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))  # fmt: skip
    return done.returncode, done.stderr


def ticket(desk: Run) -> str:
    desk("channel", "add", "inbox", "--kind", "pipe", "--address", "inbox@example.test")
    mail = make_mail(subject="needs an answer", to="inbox@example.test")
    doc = desk("--json", "ingest", "--channel", "inbox", stdin=mail).json()
    desk("ticket", "show", str(doc["ticket"]))
    return str(doc["ticket"])


def test_ingest_and_explain_refuse_what_is_not_a_file_at_once(
    desk: Run, not_files: dict[str, str]
) -> None:
    for kind, path in not_files.items():
        for command in (("ingest", path), ("explain", path)):
            started = time.monotonic()
            code, stderr = run(desk, kind, *command)
            assert code == 2, (command, stderr)
            assert (
                stderr == f"deskctl: error: cannot read {path}: it is {kind}, not a regular file\n"
            )
            assert time.monotonic() - started < 30
    assert desk("--json", "ticket", "list").json()["tickets"] == []


def test_reply_refuses_an_attachment_or_body_file_that_is_not_a_file(
    desk: Run, not_files: dict[str, str]
) -> None:
    number = ticket(desk)
    for kind, path in not_files.items():
        for option in ("--attach", "--body-file"):
            extra = ("--body", "see attached") if option == "--attach" else ()
            code, stderr = run(desk, kind, "ticket", "reply", number, *extra, option, path)
            assert code == 2, (option, kind, stderr)
            assert f"it is {kind}, not a regular file" in stderr
            assert stderr.count("\n") == 1
    assert desk("--json", "outbox", "list").json()["outbox"] == []


def test_a_link_to_a_regular_file_is_fine_on_the_command_line(desk: Run, tmp_path: Path) -> None:
    mail = tmp_path / "real.eml"
    mail.write_bytes(make_mail(subject="through a link"))
    (tmp_path / "link.eml").symlink_to(mail)
    result = desk("--json", "ingest", str(tmp_path / "link.eml"))
    assert result.exit_code == 0 and result.json()["title"] == "through a link"


def test_attachments_of_one_reply_are_bounded_in_all(desk: Run, tmp_path: Path) -> None:
    number = ticket(desk)
    parts = []
    for i in range(3):
        parts += ["--attach", str(tmp_path / f"log{i}.txt")]
        (tmp_path / f"log{i}.txt").write_bytes(b"x" * 400)
    over = desk("ticket", "reply", number, "--body", "logs", "--max-size", "1000", *parts)
    assert over.exit_code == 2
    assert over.stderr == (
        "deskctl: error: the attachments are over the limit of 1000 bytes for one reply "
        "(--max-size)\n"
    )
    assert desk("--json", "outbox", "list").json()["outbox"] == []
    fits = desk("--json", "ticket", "reply", number, "--body", "logs", "--max-size", "1200", *parts)
    assert fits.exit_code == 0, fits.stderr


def test_the_default_bound_is_25_mib_for_the_whole_reply(desk: Run, tmp_path: Path) -> None:
    number = ticket(desk)
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:  # sparse: 25 MiB + 1 byte without writing them
        fh.truncate(25 * 1024 * 1024 + 1)
    result = desk("ticket", "reply", number, "--body", "here", "--attach", str(big))
    assert result.exit_code == 2 and f"limit of {25 * 1024 * 1024} bytes" in result.stderr
