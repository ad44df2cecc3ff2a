"""Helpers for the fetch stories: fill IMAP folders, add channels, run deskctl as a process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conftest import Run
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay

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

    def add(
        name: str,
        user: tuple[str, str],
        *extra: str,
        folder: str = "INBOX",
        port: int | None = None,
    ) -> None:
        var = f"PW_{name.upper().replace('-', '_')}"
        monkeypatch.setenv(var, user[1])
        result = desk(
            "channel",
            "add",
            name,
            "--kind",
            "imap",
            "--address",
            user[0],
            "--host",
            "localhost",
            "--port",
            str(port or dovecot.imaps_port),
            "--security",
            "ssl",
            "--ca-file",
            str(certs.ca_pem),
            "--password-env",
            var,
            "--folder",
            folder,
            *extra,
        )
        assert result.exit_code == 0, result.stderr

    return add


def new_user(dovecot: Dovecot, prefix: str) -> tuple[str, str]:
    """A fresh mailbox, so a test never sees another test's mail."""
    user = (f"{prefix}-{uuid.uuid4().hex[:8]}@example.test", f"{prefix}-pw")
    dovecot.add_user(*user)
    return user


AddSmtp = Callable[..., None]


@pytest.fixture
def add_smtp(
    desk: Run, smtp_relay: SmtpRelay, certs: CertBundle, monkeypatch: pytest.MonkeyPatch
) -> AddSmtp:
    """Add an SMTPS outgoing channel through the test relay (or another at ``port``) as ``user``."""

    def add(
        name: str,
        user: tuple[str, str],
        display: str = "Example Support",
        db: str | None = None,
        port: int | None = None,
    ) -> None:
        var = f"SMTP_PW_{name.upper().replace('-', '_')}"
        monkeypatch.setenv(var, user[1])
        prefix = ("--db", db) if db else ()
        result = desk(
            *prefix,
            "channel",
            "add-outgoing",
            name,
            "--kind",
            "smtp",
            "--host",
            "localhost",
            "--port",
            str(port or smtp_relay.smtps_port),
            "--security",
            "ssl",
            "--ca-file",
            str(certs.ca_pem),
            "--username",
            user[0],
            "--password-env",
            var,
            "--from",
            f"{display} <{user[0]}>",
        )
        assert result.exit_code == 0, result.stderr

    return add


def inbox_replying_via(
    desk: Run, dovecot: Dovecot, add_smtp: AddSmtp, port: int | None = None
) -> tuple[str, str]:
    """A pipe channel ``inbox`` whose replies leave through a relay as a fresh agent mailbox."""
    agent = new_user(dovecot, "agent")
    add_smtp("out", agent, port=port)
    added = desk(
        "channel",
        "add",
        "inbox",
        "--kind",
        "pipe",
        "--address",
        "inbox@example.test",
        "--reply-via",
        "out",
    )
    assert added.exit_code == 0, added.stderr
    return agent


@pytest.fixture
def replying_inbox(desk: Run, dovecot: Dovecot, add_smtp: AddSmtp) -> tuple[str, str]:
    """``inbox`` replying through the session's relay."""
    return inbox_replying_via(desk, dovecot, add_smtp)


def ticket_with_reply(desk: Run, raw: bytes, body: str = "Hello!") -> tuple[int, dict[str, Any]]:
    """Ingest ``raw`` on ``inbox``, read the ticket, queue a reply; returns (number, reply JSON)."""
    number = int(desk("--json", "ingest", "--channel", "inbox", stdin=raw).json()["ticket"])
    desk("ticket", "show", str(number))
    queued = desk("--json", "ticket", "reply", str(number), "--body", body)
    assert queued.exit_code == 0, queued.stderr
    return number, queued.json()


def deskctl_process(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """deskctl as its own process, with this test's environment (home, db, secrets)."""
    return subprocess.Popen(
        [sys.executable, "-m", "deskctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
        **kwargs,  # type: ignore[call-overload]
    )


def count(db_url: str, sql: str) -> int:
    """One number the database holds, read beside a run (``SELECT count(*) ...``)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text(sql)) or 0)
    finally:
        engine.dispose()


def kill_while_storing(
    db_url: str,
    *args: str,
    seed: int = 7,
    kills: int = 6,
    after_kill: Callable[[], None] | None = None,
) -> int:
    """Run ``deskctl ARGS`` and SIGKILL it ``kills`` times as it stores mail; returns the kills.

    Each kill waits for progress (a few more messages stored), not for a
    time: a fast machine would finish before a timed kill, a slow one be
    killed before its first commit. The points stay random: how far to let
    it go, and a short jitter after that. Fewer kills when a run finishes first.
    ``after_kill`` looks at what each killed run left behind.
    """
    rng = random.Random(seed)
    progress = create_engine(db_url)

    def stored() -> int:
        with progress.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM messages")) or 0)

    done = 0
    try:
        while done < kills:
            target = stored() + rng.randint(1, 20)
            proc = deskctl_process(*args)
            while proc.poll() is None and stored() < target:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.02))
            if proc.poll() is not None:
                break  # it finished before this kill: what follows still checks it all
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done += 1
            if after_kill is not None:
                after_kill()
    finally:
        progress.dispose()
    return done


def big_mail() -> bytes:
    """A mail of about 27 kB from big@example.org, over a ``--max-size 10000``."""
    return make_mail(
        subject="huge",
        sender="Big Sender <big@example.org>",
        attachments=[("big.bin", "application/octet-stream", b"x" * 20000)],
    )


def fetch_over_the_limit(desk: Run) -> dict[str, Any]:
    """Fetch with a 10,000-byte limit a mailbox of a small mail, :func:`big_mail`, a small mail.

    The small ones become tickets; the big one is listed in the quarantine with
    its size and sender, which this returns.
    """
    result = desk("--json", "fetch", "--max-size", "10000")
    assert result.exit_code == 7
    report = result.json()["channels"][0]
    assert report["quarantined"] == 1 and report["tickets_created"] == 2
    assert report["left_on_server"] == 1
    (item,) = desk("--json", "quarantine", "list").json()["quarantine"]
    assert item["channel"] == "support" and item["size"] > 20000
    assert (item["sender"], item["subject"]) == ("big@example.org", "huge")
    return dict(item)


def left_alone_until_retried(desk: Run, item: dict[str, Any]) -> None:
    """The big one is not downloaded by ``show --raw`` nor tried again by the next fetch."""
    raw = desk("quarantine", "show", str(item["id"]), "--raw")
    assert raw.exit_code == 3 and "never downloaded" in raw.stderr
    again = desk("--json", "fetch", "--max-size", "10000")
    assert again.exit_code == 0, "listed once, not new work on every run"
    assert again.json()["channels"][0]["fetched"] == 0


def retry_under_a_higher_limit(desk: Run, item: dict[str, Any]) -> None:
    """An agent raises the limit for the big one: it is downloaded and stored, and leaves the list."""
    still = desk("--json", "quarantine", "retry", str(item["id"]), "--max-size", "10000")
    assert still.exit_code == 7 and "over the limit of 10000" in still.json()["reason"]
    stored = desk("--json", "quarantine", "retry", str(item["id"]))
    assert stored.exit_code == 0, stored.stderr
    assert stored.json()["title"] == "huge" and stored.json()["attachments"] == ["big.bin"]
    assert desk("--json", "quarantine", "list").json()["quarantine"] == []
