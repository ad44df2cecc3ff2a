"""Helpers for the fetch stories: fill IMAP folders, add channels, run deskctl as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable

import pytest

from conftest import Run
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot

SUPPORT = ("support@example.test", "support-pw")
SALES = ("sales@example.test", "sales-pw")
FORWARDED = ("forwarded@example.test", "forwarded-pw")


def fill(dovecot: Dovecot, user: tuple[str, str], folder: str, raws: Iterable[bytes]) -> int:
    """APPEND every message over one connection; returns how many."""
    count = 0
    with dovecot.mailbox(*user) as box:
        for raw in raws:
            box.append(raw, folder)
            count += 1
    return count


AddImap = Callable[..., None]


@pytest.fixture
def add_imap(
    desk: Run, dovecot: Dovecot, certs: CertBundle, monkeypatch: pytest.MonkeyPatch
) -> AddImap:
    """Add an IMAPS channel for a test-bed user, verified against the test CA."""

    def add(name: str, user: tuple[str, str], *extra: str, folder: str = "INBOX",
            port: int | None = None) -> None:  # fmt: skip
        var = f"PW_{name.upper().replace('-', '_')}"
        monkeypatch.setenv(var, user[1])
        result = desk(
            "channel", "add", name, "--kind", "imap", "--address", user[0],
            "--host", "localhost", "--port", str(port or dovecot.imaps_port),
            "--security", "ssl", "--ca-file", str(certs.ca_pem),
            "--password-env", var, "--folder", folder, *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr

    return add


def deskctl_process(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """deskctl as its own process, with this test's environment (home, db, secrets)."""
    return subprocess.Popen(
        [sys.executable, "-m", "deskctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
        **kwargs,  # type: ignore[call-overload]
    )
