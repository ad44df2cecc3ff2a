"""One home for deskctl's files, private from the first command that needs it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import Run


def test_a_home_first_made_for_a_sample_mailbox_is_private(
    desk: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "fresh" / "home"  # the database is elsewhere (DESKCTL_DB)
    monkeypatch.setenv("DESKCTL_HOME", str(home))
    old = os.umask(0)
    try:
        added = desk("channel", "add", "sample", "--kind", "maildir", "--sample",
                     "--address", "support@example.test")  # fmt: skip
    finally:
        os.umask(old)
    assert added.exit_code == 0, added.stderr
    for folder in (home.parent, home, home / "sample-maildir", home / "sample-maildir" / "new"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
