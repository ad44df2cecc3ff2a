"""The content fingerprint: a second delivery of a mail matches it, a different mail does not."""

from __future__ import annotations

import pytest

from deskctl.mail.fingerprint import message_id_key, raw_fingerprint
from deskctl.mail.parse import parse_mail
from mailfactory import make_mail

ORIGINAL = make_mail(attachments=[("log.bin", "application/octet-stream", b"a \r\nb\r\n")])


def fingerprint(raw: bytes) -> str:
    value = raw_fingerprint(raw)
    assert value is not None and value == parse_mail(raw).fingerprint
    return value


def test_what_servers_add_on_the_way_does_not_count() -> None:
    relayed = (
        b"Received: from mx.example.test by imap.example.test; Tue, 3 Nov 2026 10:00:00\r\n"
        b"Return-Path: <ada@example.org>\r\nDelivered-To: sales@example.test\r\n"
        b"X-Spam-Score: 0.3\r\nAuthentication-Results: mx.example.test; dkim=pass\r\n"
        + ORIGINAL.replace(b"\n", b"\r\n").replace(b"Subject: Printer", b"Subject:  Printer")
    )
    assert fingerprint(relayed) == fingerprint(ORIGINAL)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"From: Ada Lovelace <ada@example.org>", b"From: Mallory <ada@example.org>"),
        (b"Subject: Printer on fire", b"Subject: Printer fixed"),
        (b"Date: Mon, 02 Nov 2026 09:30:00", b"Date: Mon, 02 Nov 2026 09:31:00"),
        (b"floor 2", b"floor 3"),
        (b"YSANCmINCg==", b"YSAKYgo="),  # the attachment's bytes, CR LF against LF
    ],
    ids=["from", "subject", "date", "body", "attachment"],
)
def test_what_the_sender_wrote_counts(old: bytes, new: bytes) -> None:
    assert old in ORIGINAL
    assert fingerprint(ORIGINAL.replace(old, new)) != fingerprint(ORIGINAL)


def nested(depth: int) -> bytes:
    levels = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth)
    )
    return b"From: a@b\nSubject: deep\n" + levels + b"Content-Type: text/plain\n\nhi\n"


def test_hostile_nesting_and_junk_never_raise() -> None:
    assert fingerprint(nested(300)) != fingerprint(nested(299))
    assert raw_fingerprint(nested(3000)) is None, "what the parser refuses, quarantine keeps"
    assert raw_fingerprint(b"\x00\x01 not a mail") is None


def test_long_message_ids_keep_what_tells_them_apart() -> None:
    short = "a" * 900
    assert message_id_key(short) == short
    first, second = (message_id_key("a" * 900 + tail) for tail in ("x@host", "y@host"))
    assert first != second and len(first) == len(second) == 900
