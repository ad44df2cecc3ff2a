"""A sender cannot make deskctl write their headers: no decoding step adds a line.

An attacker hides CR/LF in an RFC 2047 word, then hides that word in another
one (and another): a decoder that stops after one round stores the inner word,
and the next decoder (the email package composing our reply, or the
customer's mail program) turns it into ``Bcc:`` and a blank line. Every path
that writes a header from what mail said is checked here at the SMTP server,
on the bytes it received: an agent's reply, an acknowledgement nobody
reviews, a reply with ``--cc``, and a file an agent attaches.
"""

from __future__ import annotations

import base64
import quopri
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from jobs.conftest import ticket_with_reply

from conftest import Run
from deskctl.mail.headers import decode_fully
from testbed.smtp_relay import RelayedMessage, SmtpRelay

#: What the attacker wants in our mail: a blind copy, a new Reply-To and their
#: own text at the top of the body.
HIDDEN = (
    "Invoice\r\nBcc: victim@attacker.example\r\nReply-To: thief@attacker.example"
    "\r\n\r\nPay to IBAN XX00 ATTACKER"
)
#: The same text as one line: what the agent and the customer see instead.
FLAT = "Invoice Bcc: victim@attacker.example Reply-To: thief@attacker.example Pay to IBAN XX00 ATTACKER"
#: The header fields deskctl writes on a reply; anything else is injected.
OURS = {
    "from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references",
    "x-deskctl-loop", "auto-submitted", "x-auto-response-suppress", "mime-version",
    "content-type", "content-transfer-encoding", "content-disposition",
}  # fmt: skip
DEPTHS = pytest.mark.parametrize("depth", [1, 2, 3], ids=["single", "double", "triple"])


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def q_word(text: str) -> str:
    q = quopri.encodestring(text.encode(), header=True).decode().replace("=\n", "")
    return f"=?utf-8?q?{q.replace('?', '=3F').replace(chr(13), '=0D').replace(chr(10), '=0A')}?="


def encoded(text: str, depth: int) -> str:
    """``text`` in ``depth`` nested encoded words, base64 and Q in turn, as attackers mix them."""
    for level in range(depth):
        text = (b_word if level % 2 == 0 else q_word)(text)
    return text


def hostile_mail(depth: int, tag: str, *, cc: str = "") -> bytes:
    """A mail whose Subject and sender name both hide ``HIDDEN`` ``depth`` times over."""
    head = (
        f"From: {encoded(HIDDEN, depth)} <casey-{tag}@example.org>\r\n"
        "To: inbox@example.test\r\n"
        + (f"Cc: {cc}\r\n" if cc else "")
        + f"Subject: {encoded(HIDDEN, depth)}\r\n"
        f"Message-ID: <hostile-{tag}@example.org>\r\n"
    )
    return (head + "\r\nPlease see the invoice.\r\n").encode()


def header_names(relayed: RelayedMessage) -> list[str]:
    """The field names of the header block exactly as the server received it."""
    head = relayed.raw.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode().lower()
        for line in head.split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    ]


def assert_no_injection(relayed: RelayedMessage, customer: str) -> None:
    names = header_names(relayed)
    assert set(names) <= OURS, names
    assert len(names) == len(set(names)), names  # no field written twice either
    assert relayed.rcpt_tos == [customer]
    head, body = relayed.raw.split(b"\r\n\r\n", 1)
    assert b"attacker.example" not in b"".join(
        line for line in head.split(b"\r\n") if line.lower().startswith((b"bcc", b"reply-to"))
    )
    assert body.startswith(b"--"), body[:80]  # the MIME boundary, not the attacker's text
    parsed = relayed.message()
    subject = str(parsed["Subject"])
    assert FLAT in subject and "\n" not in subject and "\r" not in subject
    # What a mail program shows, however many times it decodes, is still that one line.
    assert decode_fully(subject) == subject
    # A long quoted name that lost its quotes would read as a group of recipients.
    assert [a.addr_spec for a in parsed["To"].addresses] == [customer]
    for field in ("From", "To", "Cc"):
        for address in parsed[field].addresses if parsed[field] else ():
            assert address.display_name in ("", "Example Support", FLAT)


def relayed_with_id(relay: SmtpRelay, message_id: str) -> RelayedMessage:
    return relay.wait_for(lambda m: m.message()["Message-ID"] == f"<{message_id}>")


@DEPTHS
def test_an_agents_reply_writes_no_header_the_sender_hid(
    depth: int, desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    tag = f"reply{depth}"
    number, queued = ticket_with_reply(desk, hostile_mail(depth, tag))

    shown = desk("--json", "ticket", "show", str(number)).json()
    assert shown["title"] == FLAT  # the decoded title, not an encoded word
    assert shown["customer"]["name"] == FLAT
    assert desk("--json", "send-outbox").json()["sent"] == 1
    assert_no_injection(
        relayed_with_id(smtp_relay, queued["message_id"]), f"casey-{tag}@example.org"
    )


@DEPTHS
def test_an_acknowledgement_nobody_reviews_writes_no_header_the_sender_hid(
    depth: int, desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay, tmp_path: Path
) -> None:
    """With acknowledgements on, one forged mail is all it takes: no agent is involved."""
    ack = tmp_path / "ack.txt"
    ack.write_text("We received '$title' as ticket $number.\n")
    assert desk("queue", "set", "general", "--ack-file", str(ack)).exit_code == 0
    tag = f"ack{depth}"
    ingested = desk("--json", "ingest", "--channel", "inbox", stdin=hostile_mail(depth, tag))
    assert ingested.json()["ack"] == "sent", ingested.stdout
    assert desk("--json", "send-outbox").json()["sent"] == 1

    customer = f"casey-{tag}@example.org"
    relayed = smtp_relay.wait_for(lambda m: m.rcpt_tos == [customer])
    assert relayed.message()["Auto-Submitted"] == "auto-replied"
    assert_no_injection(relayed, customer)


@DEPTHS
def test_a_cc_name_from_mail_or_from_the_agent_writes_no_header(
    depth: int, desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    tag = f"cc{depth}"
    colleague = f"{encoded(HIDDEN, depth)} <colleague-{tag}@example.org>"
    number = desk(
        "--json", "ingest", "--channel", "inbox", stdin=hostile_mail(depth, tag, cc=colleague)
    ).json()["ticket"]
    desk("ticket", "show", str(number))
    queued = desk(
        "--json", "ticket", "reply", str(number), "--body", "Copying my manager.",
        "--cc", f"{encoded(HIDDEN, depth)} <manager-{tag}@example.org>",
    )  # fmt: skip
    assert queued.exit_code == 0, queued.stderr
    assert desk("--json", "send-outbox").json()["sent"] == 1

    relayed = relayed_with_id(smtp_relay, queued.json()["message_id"])
    customer = f"casey-{tag}@example.org"
    assert relayed.rcpt_tos[0] == customer
    assert sorted(relayed.rcpt_tos[1:]) == [
        f"colleague-{tag}@example.org",
        f"manager-{tag}@example.org",
    ]
    relayed.rcpt_tos = [customer]  # the Cc are expected; everything else is checked as above
    assert_no_injection(relayed, customer)
    names = [a.display_name for a in relayed.message()["Cc"].addresses]
    assert names == [FLAT, FLAT]
    assert [a["name"] for a in queued.json()["cc"]] == [FLAT, FLAT]  # recorded as sent


def test_an_attached_file_name_writes_no_header(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay, tmp_path: Path
) -> None:
    number, _ = ticket_with_reply(desk, hostile_mail(1, "file"), "first answer")
    hostile = tmp_path / f"{q_word(q_word(HIDDEN))}.txt"  # Q: a file name has no "/"
    hostile.write_text("log")
    broken = tmp_path / "report\nBcc: victim@attacker.example.txt"
    broken.write_text("log")
    queued = desk(
        "--json", "ticket", "reply", str(number), "--body", "Logs attached.", "--force",
        "--attach", str(hostile), "--attach", str(broken),
    )  # fmt: skip
    assert queued.exit_code == 0, queued.stderr
    assert desk("--json", "send-outbox").json()["sent"] == 2

    relayed = relayed_with_id(smtp_relay, queued.json()["message_id"])
    for part in relayed.message().walk():
        assert {name.lower() for name in part} <= OURS, list(part)
    files = [p.get_filename() for p in relayed.message().iter_attachments()]
    assert files == [
        "Invoice Bcc: victim@attacker.example Reply-To: thief@attacker.example "
        "Pay to IBAN XX00 ATTACKER.txt",
        "report Bcc: victim@attacker.example.txt",
    ]


def test_the_wire_has_no_encoded_word_left_to_open(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    """Deeper than deskctl decodes, the leftover ``=?`` is broken up, not handed on."""
    deep = encoded(HIDDEN, 20)
    raw = (
        f"From: casey-deep@example.org\r\nTo: inbox@example.test\r\nSubject: {deep}\r\n"
        "Message-ID: <deep@example.org>\r\n\r\nHi\r\n"
    ).encode()
    number, queued = ticket_with_reply(desk, raw)
    assert desk("--json", "send-outbox").json()["sent"] == 1
    relayed = relayed_with_id(smtp_relay, queued["message_id"])
    subject = str(message_from_bytes(relayed.raw, policy=policy.default)["Subject"])
    assert "=?" not in subject and decode_fully(subject) == subject
    shown = desk("--json", "ticket", "show", str(number)).json()
    assert shown["messages"][-1]["subject"] == subject  # the reply records what it sent
    assert set(header_names(relayed)) <= OURS


def test_an_address_hiding_an_encoded_word_is_not_a_recipient(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    """``=?utf-8?q?...?=`` is all atext, so it passes for a local part, but the
    email package (and mail programs like it) decode it there into CR/LF or
    into another address; re-reading our reply to drop a filtered Cc then
    failed on every send-outbox run. Such an address is left out, with the reason."""
    hidden = "=?utf-8?q?x=0D=0ABcc=3A_victim=40attacker.example?=@example.net"
    quoted = '"=\\?utf-8\\?q\\?y=0D=0ABcc=3A_victim=40attacker.example\\?="@example.net'
    raw = (
        "From: Casey <casey-lp@example.org>\r\nTo: inbox@example.test\r\n"
        f"Cc: boss-lp@example.org, Al <{hidden}>, Bo <{quoted}>\r\nSubject: Local parts\r\n"
        "Message-ID: <local-part@example.org>\r\n\r\nHi\r\n"
    ).encode()
    number = int(desk("--json", "ingest", "--channel", "inbox", stdin=raw).json()["ticket"])
    shown = desk("--json", "ticket", "show", str(number)).json()
    assert [a["email"] for a in shown["reply_recipients"]["cc"]] == ["boss-lp@example.org"]
    notes = shown["reply_recipients"]["notes"]
    assert len([note for note in notes if "encoded word" in note]) == 2, notes
    queued = desk("--json", "ticket", "reply", str(number), "--body", "Hello!")
    assert queued.exit_code == 0, queued.stderr
    assert desk("filter", "add", "boss-lp@example.org").exit_code == 0  # rewritten at send
    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stderr
    relayed = relayed_with_id(smtp_relay, queued.json()["message_id"])
    assert relayed.rcpt_tos == ["casey-lp@example.org"]
    assert set(header_names(relayed)) <= OURS
    assert b"=?" not in relayed.raw.split(b"\r\n\r\n", 1)[0]
    assert [a.addr_spec for a in relayed.message()["To"].addresses] == ["casey-lp@example.org"]
    assert relayed.message()["Cc"] is None
