"""With no SMTP account, replies leave through the local mail system (``sendmail``).

The local MTA is stood in for by a script with sendmail's command-line
interface that records what it was given: the only way to make it answer
"temporary failure" (exit 75) on demand.
"""

from __future__ import annotations

import json
from email import message_from_string, policy
from pathlib import Path

import pytest
from jobs.conftest import AddImap, new_user
from sqlalchemy import create_engine, text

from conftest import Run, ingested
from mailfactory import make_mail, utf8_mail
from testbed.dovecot import Dovecot

FAKE_SENDMAIL = """#!/bin/sh
echo "$@" >> "{log}"
cat >> "{spool}"
exit $(cat "{code}" 2>/dev/null || echo 0)
"""


@pytest.fixture
def sendmail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    paths = {"log": tmp_path / "argv.log", "spool": tmp_path / "spool", "code": tmp_path / "code"}
    script = bindir / "sendmail"
    script.write_text(FAKE_SENDMAIL.format(**paths))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    return paths


def test_the_default_channel_hands_replies_to_sendmail_from_the_inbox_address(
    desk: Run, tmp_path: Path, sendmail: dict[str, Path]
) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    number = desk(
        "--json",
        "ingest",
        "--channel",
        "support",
        stdin=make_mail(sender="ivy@example.org", to="help@example.test"),
    ).json()["ticket"]
    desk("ticket", "show", str(number))
    desk("ticket", "reply", str(number), "--body", "Via the local MTA.")

    sendmail["code"].write_text("75")
    first = desk("--json", "send-outbox").json()
    assert first["deferred"] == 1 and first["sent"] == 0

    sendmail["code"].write_text("0")
    desk("outbox", "retry", "1")
    assert desk("--json", "send-outbox").json()["sent"] == 1
    argv = sendmail["log"].read_text().splitlines()[-1]
    assert argv == "-oi -f help@example.test -- ivy@example.org"
    assert b"Via the local MTA." in sendmail["spool"].read_bytes()


def test_a_missing_sendmail_says_what_to_install(
    desk: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str
) -> None:
    # A machine without a mail system: the channel names a sendmail that is not there
    # (this one may have Postfix's /usr/sbin/sendmail, found whatever PATH holds).
    with create_engine(db_url).begin() as conn:
        conn.execute(
            text("UPDATE outgoing_channels SET settings = :s WHERE name = 'local'"),
            {"s": json.dumps({"sendmail": str(tmp_path / "sendmail")})},
        )
    monkeypatch.setenv("PATH", str(tmp_path))
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    number = desk(
        "--json", "ingest", "--channel", "support", stdin=make_mail(sender="ivy@example.org")
    ).json()["ticket"]
    desk("ticket", "show", str(number))
    desk("ticket", "reply", str(number), "--body", "x")
    result = desk("send-outbox")
    assert result.exit_code == 5 and "sendmail not found" in result.stderr
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "queued", "the reply waits for a working channel"


def test_a_quiet_run_that_was_deferred_logs_one_stamped_line_and_says_so_on_stderr(
    desk: Run, sendmail: dict[str, Path]
) -> None:
    """Under cron, -q's stdout is the log: a run that only deferred is still one timed line."""
    import re

    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    raw = make_mail(sender="ivy@example.org", to="help@example.test")
    number = desk("--json", "ingest", "--channel", "support", stdin=raw).json()["ticket"]
    desk("ticket", "show", str(number))
    desk("ticket", "reply", str(number), "--body", "Deferred first.")
    sendmail["code"].write_text("75")
    run = desk("-q", "send-outbox")
    assert run.exit_code == 6, run.stderr
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ send-outbox: 0 sent, 0 failed, 0 blocked, 1 deferred\n",
        run.stdout,
    ), run.stdout
    # Cron mails stderr, not the log: exit 6 alone would tell nobody.
    assert run.stderr == (
        "deskctl: error: every due reply was deferred (1); each is retried later, the"
        " server's answer is in `deskctl outbox list`\n"
    )


def test_a_customer_with_a_unicode_local_part_gets_utf8_headers_through_sendmail(
    desk: Run, sendmail: dict[str, Path]
) -> None:
    """RFC 6532 mail: Postfix's sendmail sees UTF-8 in the envelope and headers and sends
    it SMTPUTF8 (smtputf8_autodetect_classes = sendmail). An encoded word is no address."""
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    raw = utf8_mail("Jörg Müller <jörg@example.org>", "help@example.test", "Rechnung", "<eai@x>")
    number = ingested(desk, raw, "--channel", "support")["ticket"]
    desk("ticket", "show", str(number))
    assert desk("ticket", "reply", str(number), "--body", "Grüße zurück.").exit_code == 0

    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stdout
    argv = sendmail["log"].read_bytes().splitlines()[-1]
    assert argv == "-oi -f help@example.test -- jörg@example.org".encode()
    spool = sendmail["spool"].read_bytes()
    head = spool.split(b"\r\n\r\n", 1)[0]
    (to,) = [line for line in head.split(b"\r\n") if line.startswith(b"To: ")]
    assert to.endswith(" <jörg@example.org>".encode()), to  # raw UTF-8, not =?utf-8?...?=
    assert b"=?" not in to.rpartition(b" <")[2]
    mail = message_from_string(spool.decode("utf-8"), policy=policy.SMTPUTF8)
    assert mail["To"].addresses[0].addr_spec == "jörg@example.org"
    # (the email package keeps the blank between two encoded words that RFC 2047 drops)
    assert " ".join(mail["To"].addresses[0].display_name.split()) == "Jörg Müller"


def test_a_reply_handed_to_sendmail_is_filed_in_the_imap_channels_sent_folder(
    desk: Run, sendmail: dict[str, Path], dovecot: Dovecot, add_imap: AddImap
) -> None:
    """An IMAP inbox without an SMTP account: the local MTA sends, deskctl files the copy."""
    import re

    user = new_user(dovecot, "mta")
    add_imap("support", user, "--sent-folder", "Sent")
    dovecot.deliver(make_mail(to=user[0]), user=user[0], password=user[1])
    desk("fetch")
    desk("ticket", "show", "1")
    desk("ticket", "reply", "1", "--body", "Via the local MTA, filed in Sent.")

    run = desk("-q", "send-outbox")
    assert run.exit_code == 0 and run.stderr == "", run.stderr
    assert run.stdout.endswith("send-outbox: 1 sent, 0 failed, 0 blocked, 0 deferred; "
                               "1 filed in Sent, 0 not filed\n")  # fmt: skip
    with dovecot.mailbox(*user, folder="Sent") as box:
        _, data = box.client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    ((head, filed),) = [d for d in data if isinstance(d, tuple)]
    assert b"\\Seen" in head
    # What sendmail was given, in the CRLF line ends IMAP stores every message with.
    handed = sendmail["spool"].read_bytes()
    assert filed == re.sub(rb"\r?\n", b"\r\n", handed)
