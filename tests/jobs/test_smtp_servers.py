"""Replies leave through SMTP servers as they are: strict, forgetful or impatient.

Each story runs its own aiosmtpd relay told to act like a server deskctl
meets in the wild: one without 8BITMIME, one that hangs up after a refusal
(Postfix's error limit), one that closes an idle session. What the relay
received (bytes, ESMTP parameters, sessions) and what the outbox says
afterwards are the evidence.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from jobs.conftest import AddSmtp, inbox_replying_via, ticket_with_reply

from conftest import Run
from mailfactory import make_dsn, make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.smtp_relay import RelayedMessage, SmtpRelay

GERMAN = "Grüße aus Köln: das Update auf 5.2 behebt den Fehler. Schönen Tag!"
UNKNOWN = "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"

MakeRelay = Callable[..., SmtpRelay]


@pytest.fixture
def make_relay(dovecot: Dovecot, certs: CertBundle) -> Iterator[MakeRelay]:
    """A relay of this test's own, acting as told (see SmtpRelay's options)."""
    started: list[SmtpRelay] = []

    def make(**options: Any) -> SmtpRelay:
        relay = SmtpRelay(dovecot.users, certs, dovecot.lmtp_port, **options)
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()


def customer_mail(who: str) -> bytes:
    """Mail from ``who@example.org`` to the inbox alone, so our reply has one recipient."""
    return make_mail(sender=f"{who}@example.org", to="inbox@example.test")


def by_message_id(relay: SmtpRelay, message_id: str) -> RelayedMessage:
    return relay.wait_for(lambda m: m.message()["Message-ID"] == f"<{message_id}>")


def plain_part(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return part


def shows(output: str, words: str) -> bool:
    """``words`` appear in human output, however rich wrapped the table cell."""
    return "".join(words.split()) in "".join(output.split())


def test_an_8bit_reply_is_declared_8bitmime_where_the_server_offers_it(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str]
) -> None:
    # Names of their own: the session's relay is shared with other stories.
    _, german = ticket_with_reply(desk, customer_mail("umlaut"), GERMAN)
    _, english = ticket_with_reply(desk, customer_mail("ascii"), "All fixed.")
    assert desk("--json", "send-outbox").json()["sent"] == 2

    eight = by_message_id(smtp_relay, german["message_id"])
    assert eight.mail_options == [f"SIZE={len(eight.raw)}", "BODY=8BITMIME"]
    assert GERMAN.encode() in eight.raw, "sent as it is, 8-bit"
    assert plain_part(eight.raw)["Content-Transfer-Encoding"] == "8bit"
    seven = by_message_id(smtp_relay, english["message_id"])
    assert seven.raw.isascii() and seven.mail_options == [f"SIZE={len(seven.raw)}"]


def test_an_8bit_reply_to_a_7bit_server_goes_quoted_printable(
    desk: Run, dovecot: Dovecot, add_smtp: AddSmtp, make_relay: MakeRelay
) -> None:
    relay = make_relay(offer_8bitmime=False)
    inbox_replying_via(desk, dovecot, add_smtp, port=relay.smtps_port)
    number, queued = ticket_with_reply(desk, customer_mail("kim"), GERMAN)
    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stdout + sent.stderr

    got = by_message_id(relay, queued["message_id"])
    assert got.raw.isascii() and got.mail_options == [f"SIZE={len(got.raw)}"]
    text = plain_part(got.raw)
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln" in got.raw
    assert GERMAN in text.get_content()
    parsed = message_from_bytes(got.raw, policy=policy.default)
    assert f"[#{number}]" in str(parsed["Subject"]) and parsed["In-Reply-To"]


@pytest.fixture
def fed_up_relay(
    desk: Run, dovecot: Dovecot, add_smtp: AddSmtp, make_relay: MakeRelay
) -> SmtpRelay:
    """Replies go through a relay that hangs up after one refusal and knows no gone@."""
    relay = make_relay(drop_after_refusals=1)
    relay.refuse_recipient("gone@example.org", UNKNOWN)
    inbox_replying_via(desk, dovecot, add_smtp, port=relay.smtps_port)
    return relay


def test_a_server_that_hangs_up_after_a_refusal_gets_the_rest_in_the_same_run(
    desk: Run, fed_up_relay: SmtpRelay
) -> None:
    relay = fed_up_relay
    gone, _ = ticket_with_reply(desk, customer_mail("gone"), "Hello?")
    later = [ticket_with_reply(desk, customer_mail(who), "Fixed.")[1] for who in ("kim", "lee")]

    result = desk("--json", "send-outbox")
    assert result.exit_code == 7, result.stderr  # partial: one failed
    assert result.json() | {"errors": []} == {
        "sent": 2, "failed": 1, "blocked": 0, "deferred": 0, "errors": [],
        "filed": 0, "not_filed": [],
    }  # fmt: skip
    assert relay.hang_ups == 1 and relay.sessions == 2
    for queued in later:
        assert by_message_id(relay, queued["message_id"]).rcpt_tos[0].endswith("@example.org")

    items = {i["to"][0]: i for i in desk("--json", "outbox", "list").json()["outbox"]}
    assert items["gone@example.org"]["state"] == "failed"
    assert items["gone@example.org"]["last_error"] == f"gone@example.org: {UNKNOWN}"
    assert items["kim@example.org"]["state"] == items["lee@example.org"]["state"] == "sent"
    assert shows(desk("outbox", "list", "--state", "failed").stdout, UNKNOWN)

    reply = desk("--json", "ticket", "show", str(gone)).json()["messages"][-1]
    assert reply["delivery"] == "failed" and UNKNOWN in reply["delivery_error"]
    shown = desk("ticket", "show", str(gone)).stdout
    assert shows(shown, f"delivery: gone@example.org: {UNKNOWN}")


def test_a_hang_up_in_the_middle_of_the_recipients_names_the_refusal_before_it(
    desk: Run, fed_up_relay: SmtpRelay
) -> None:
    relay = fed_up_relay
    mail = make_mail(sender="gone@example.org", to="inbox@example.test", cc="lee@example.org")
    ticket_with_reply(desk, mail, "Hello?")

    result = desk("--json", "send-outbox")
    assert result.exit_code == 6 and result.json()["deferred"] == 1, result.stdout
    assert relay.hang_ups == 2 and relay.messages == []
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "queued"
    assert item["last_error"] == (
        "the server ended the session twice: 421 4.7.0 Error: too many errors "
        f"(after gone@example.org: {UNKNOWN})"
    )


def test_a_line_lost_after_the_data_waits_for_the_next_run_with_the_same_message_id(
    desk: Run, dovecot: Dovecot, add_smtp: AddSmtp, make_relay: MakeRelay
) -> None:
    relay = make_relay()
    relay.hang_up_after_data()
    inbox_replying_via(desk, dovecot, add_smtp, port=relay.smtps_port)
    first, second = (
        ticket_with_reply(desk, customer_mail(who), "Fixed.")[1] for who in ("kim", "lee")
    )

    result = desk("--json", "send-outbox")
    assert result.exit_code == 7, result.stderr
    assert (result.json()["sent"], result.json()["deferred"]) == (1, 1)
    (lost,) = relay.rejected
    assert lost.message()["Message-ID"] == f"<{first['message_id']}>"
    assert [m.message()["Message-ID"] for m in relay.messages] == [f"<{second['message_id']}>"]
    assert relay.sessions == 2, "the next item went on a new session"
    items = {i["message_id"]: i for i in desk("--json", "outbox", "list").json()["outbox"]}
    waiting = items[first["message_id"]]
    assert waiting["state"] == "queued" and "connection lost during DATA" in waiting["last_error"]

    assert desk("outbox", "retry", str(waiting["id"])).exit_code == 0
    assert desk("--json", "send-outbox").json()["sent"] == 1
    assert by_message_id(relay, first["message_id"]).raw == lost.raw, "the same mail, same id"


def hold_write_lock(db_url: str, seconds: float) -> None:
    """Another program's long write transaction: deskctl's next write waits ``seconds``."""
    if db_url.startswith("sqlite"):
        conn: Any = sqlite3.connect(
            db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        conn.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        conn = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
        conn.execute("LOCK TABLE outbox_items IN EXCLUSIVE MODE")
    timer = threading.Timer(seconds, lambda: (conn.rollback(), conn.close()))
    timer.start()


def test_a_session_closed_while_deskctl_waited_is_opened_again(
    desk: Run, dovecot: Dovecot, add_smtp: AddSmtp, make_relay: MakeRelay, db_url: str
) -> None:
    relay = make_relay(idle_timeout=0.4)
    inbox_replying_via(desk, dovecot, add_smtp, port=relay.smtps_port)
    queued = [
        ticket_with_reply(desk, customer_mail(who), "Fixed.")[1] for who in ("kim", "lee", "max")
    ]
    # While the first reply is being accepted the database gets busy for a second,
    # longer than the server waits for an idle client.
    relay.on_accept = lambda message: (
        hold_write_lock(db_url, 1.0) if len(relay.messages) == 1 else None
    )

    result = desk("--json", "send-outbox")
    assert result.exit_code == 0, result.stderr
    assert result.json()["sent"] == 3
    assert relay.sessions == 2, "one new session after the idle one was closed"
    assert [m.rcpt_tos for m in relay.messages] == [
        ["kim@example.org"], ["lee@example.org"], ["max@example.org"]
    ]  # fmt: skip
    items = desk("--json", "outbox", "list").json()["outbox"]
    assert [(i["state"], i["attempts"], i["last_error"]) for i in items] == [("sent", 1, None)] * 3
    assert {i["message_id"] for i in items} == {q["message_id"] for q in queued}


def test_a_bounced_reply_shows_what_the_remote_server_said(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str]
) -> None:
    said = "550 5.1.1 <bounced@example.org>... User Unknown"
    number, queued = ticket_with_reply(desk, customer_mail("bounced"), "Hello?")
    assert desk("--json", "send-outbox").json()["sent"] == 1
    sent = by_message_id(smtp_relay, queued["message_id"])
    status = (
        "Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bounced@example.org\n"
        f"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; {said}\n"
    )
    bounce = make_dsn(sent.message(), replying_inbox[0], status)
    assert desk("ingest", "--channel", "inbox", stdin=bounce).exit_code == 0

    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "bounced" and item["last_error"] == f"bounced@example.org: {said}"
    reply = next(
        m
        for m in desk("--json", "ticket", "show", str(number)).json()["messages"]
        if m["direction"] == "out"
    )
    assert reply["delivery"] == "bounced" and said in reply["delivery_error"]
    assert shows(
        desk("ticket", "show", str(number)).stdout, f"delivery: bounced@example.org: {said}"
    )
