"""A script that forgets the body is told what to give; vi never starts without a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Run
from mailfactory import make_mail


def test_reply_with_no_body_no_editor_and_no_terminal_is_exit_2(desk: Run, tmp_path: Path) -> None:
    assert desk("ingest", "-", stdin=make_mail()).exit_code == 0
    assert desk("ticket", "show", "1").exit_code == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started = tmp_path / "vi-started"
    (bin_dir / "vi").write_text(f"#!/bin/sh\ntouch {started}\n")
    (bin_dir / "vi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VISUAL", "EDITOR")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    for args in (["ticket", "reply", "1"], ["ticket", "note", "1"]):
        done = subprocess.run(
            [sys.executable, "-m", "deskctl", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr == (
            "deskctl: error: no body given and no terminal for an editor: give --body TEXT,"
            " --body-file FILE, or --body-file - to read it from stdin\n"
        )
        assert not started.exists()
    assert desk("--json", "outbox", "list").json()["outbox"] == []
