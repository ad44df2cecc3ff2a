"""The Postfix test instance keeps to itself: loopback only, nothing relayed, gone with pytest."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mailfactory import make_mail
from testbed.postfix import Postfix

TESTS = Path(__file__).resolve().parent.parent


def test_mail_for_anywhere_else_is_refused_and_local_mail_is_delivered(postfix: Postfix) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        postfix.send(make_mail(subject="away"), "someone@elsewhere.example")
    assert "local only" in str(refused.value)
    before = len(postfix.inbox())
    postfix.send(make_mail(subject="to the customer inbox"), "ivy@example.org")
    deadline = time.monotonic() + 10
    while len(postfix.inbox()) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"to the customer inbox" in postfix.inbox()[-1]


def test_a_killed_pytest_takes_its_postfix_along(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(TESTS)!r})
        from testbed.postfix import Postfix
        server = Postfix()
        guard = server.proc.pid
        master = open(f"/proc/{{guard}}/task/{{guard}}/children").read().split()[0]
        assert b"postfix/sbin/master" in open(f"/proc/{{master}}/cmdline", "rb").read()
        print(guard, master, server.base, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    guard, master, base = proc.stdout.split()

    def running() -> list[str]:
        status = [Path(f"/proc/{p}/status") for p in (guard, master)]
        return [s.parent.name for s in status if s.exists() and "State:\tZ" not in s.read_text()]

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(base)
    assert running() == [], "Postfix outlived the pytest that started it"
