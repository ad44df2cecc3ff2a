"""Human output is for humans: no Python values anywhere, empty values print as ``-``."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Run, add_maildir_channel, maildir
from mailfactory import make_mail

PYTHON = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|<>")


def test_every_read_command_speaks_plainly(desk: Run, tmp_path: Path) -> None:
    box = maildir(tmp_path, "box")
    add_maildir_channel(desk, box, name="box")
    out = ("channel", "add-outgoing", "out", "--kind", "smtp", "--host", "127.0.0.1")
    assert desk(*out, "--from", "Desk <desk@example.test>").exit_code == 0
    assert desk("channel", "map", "box", "--reply-via", "out").exit_code == 0
    assert desk("fetch").exit_code == 0  # last counts, all zero
    assert desk("ingest", "--channel", "box", "-", stdin=make_mail()).exit_code == 0
    assert desk("ticket", "note", "1", "--body", "internal").exit_code == 0
    assert desk("ticket", "reply", "1", "--force", "--body", "hello").exit_code == 0
    assert desk("agent", "add", "grace").exit_code == 0
    assert desk("ingest", "-", stdin=b"\x00\x01 not a mail").exit_code in (0, 7)
    commands = [
        ("queue", "list"),
        ("channel", "list"),
        ("channel", "show", "box"),
        ("channel", "show", "out"),
        ("filter", "list"),
        ("outbox", "list"),
        ("agent", "list"),
        ("quarantine", "list"),
        ("quarantine", "show", "1"),
        ("ticket", "list"),
        ("ticket", "show", "1"),
        ("doctor",),
    ]
    for args in commands:
        result = desk(*args)
        assert result.exit_code in (0, 7), (args, result.stderr)
        assert not PYTHON.findall(result.stdout), (args, result.stdout)
    shown = "\n".join(desk("channel", "show", "box").stdout.splitlines())
    assert "\nhost: -\n" in shown and "\nenabled: yes\n" in shown
    assert "last_counts: fetched 0," in shown
    assert "from: Desk <desk@example.test>" in desk("channel", "show", "out").stdout
