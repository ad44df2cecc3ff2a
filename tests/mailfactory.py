"""Build realistic test mails in a line or two, so stories read like stories."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_string
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def make_mail(
    *,
    subject: str = "Printer on fire",
    sender: str = "Ada Lovelace <ada@example.org>",
    to: str = "support@example.test",
    cc: str | None = None,
    body: str = "Hello, the printer on floor 2 is on fire again.\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="example.org")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, ctype, data in attachments or []:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def utf8_mail(sender: str, to: str, subject: str, message_id: str) -> bytes:
    """Mail as an RFC 6532 program writes it: UTF-8 headers as they are.

    make_mail cannot: the email package writes any non-ASCII as encoded words,
    in a local part too.
    """
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n\r\nHallo.\r\n"
    ).encode()


def delivered_again(raw: bytes) -> bytes:
    """``raw`` as a second delivery has it: other trace headers, CRLF line ends, filters' verdicts."""
    trace = (
        b"Return-Path: <ada@example.org>\n"
        b"Delivered-To: sales@example.test\n"
        b"X-Original-To: sales@example.test\n"
        b"Received: from mx2.example.test by imap.example.test with LMTP; Tue, 3 Nov 2026\n"
        b"\tid 77AB; for <sales@example.test>\n"
        b"Authentication-Results: mx2.example.test; spf=pass smtp.mailfrom=example.org\n"
        b"X-Spam-Status: No, score=-0.1\n"
    )
    return (trace + raw).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def make_dsn(original: EmailMessage, to: str, status: str | None = None) -> bytes:
    """A Postfix-style delivery status notification returning ``original``.

    ``status`` is the machine-readable part (RFC 3464: ``Final-Recipient``,
    ``Status``, ``Diagnostic-Code`` ...), left out when None.
    """
    report = EmailMessage()
    report["From"] = "MAILER-DAEMON@mx.example.org (Mail Delivery System)"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Auto-Submitted"] = "auto-replied"
    report.set_content(
        "I'm sorry to have to inform you that your message could not be delivered.\n"
    )
    report.make_mixed()
    if status is not None:
        part = EmailMessage()
        part["Content-Type"] = "message/delivery-status"
        # The email package holds this type as one header block per recipient.
        part.set_payload([message_from_string(b) for b in status.strip().split("\n\n")])
        report.attach(part)
    report.add_attachment(original, disposition="inline")
    raw = report.as_bytes()
    return raw.replace(b"multipart/mixed", b"multipart/report; report-type=delivery-status", 1)
