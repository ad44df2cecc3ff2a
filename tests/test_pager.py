"""Long output goes through a pager on a terminal, like git's, and never into a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Run
from mailfactory import make_mail


@pytest.fixture
def pager(tmp_path: Path) -> Path:
    """A pager that keeps what it was given, and the LESS it saw, in files."""
    script = tmp_path / "pager"
    script.write_text(f'#!/bin/sh\necho "LESS=$LESS" > {tmp_path}/env\ncat > {tmp_path}/paged\n')
    script.chmod(0o755)
    return script


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """deskctl with its stdout on a pseudo-terminal; its exit status and what the terminal got."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deskctl", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    return proc.returncode, seen.decode("utf-8", "replace")


def test_the_pager_runs_on_a_terminal_and_not_when_piped(
    desk: Run, pager: Path, tmp_path: Path
) -> None:
    assert desk("ingest", "-", stdin=make_mail(subject="Toner everywhere")).exit_code == 0
    env = {**os.environ, "DESKCTL_PAGER": str(pager), "TERM": "xterm", "COLUMNS": "100"}
    env.pop("LESS", None)
    run_on_a_terminal(["ticket", "show", "1"], env)
    paged = (tmp_path / "paged").read_text()
    assert "Toner everywhere" in paged and "\x1b[" in paged  # rendered for the terminal
    assert (tmp_path / "env").read_text() == "LESS=FRX\n"
    (tmp_path / "paged").unlink()

    piped = subprocess.run(
        [sys.executable, "-m", "deskctl", "ticket", "show", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Toner everywhere" in piped.stdout and "\x1b[" not in piped.stdout
    assert not (tmp_path / "paged").exists()

    _, shown = run_on_a_terminal(["ticket", "show", "1", "--no-pager"], env)
    assert "Toner everywhere" in shown and not (tmp_path / "paged").exists()
    _, listed = run_on_a_terminal(["ticket", "list"], {**env, "DESKCTL_PAGER": "cat"})
    assert "Toner everywhere" in listed and not (tmp_path / "paged").exists()


def test_pager_falls_back_from_deskctl_pager_to_pager(
    desk: Run, pager: Path, tmp_path: Path
) -> None:
    assert desk("ingest", "-", stdin=make_mail(subject="Paper jam")).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k != "DESKCTL_PAGER"}
    env |= {"PAGER": str(pager), "LESS": "R", "TERM": "xterm"}
    run_on_a_terminal(["ticket", "list"], env)
    assert "Paper jam" in (tmp_path / "paged").read_text()
    assert (tmp_path / "env").read_text() == "LESS=R\n"  # the user's own LESS is kept
