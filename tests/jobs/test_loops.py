"""No loops: a help desk must never mail itself, nor argue with an auto-responder.

The loop stories run on the real servers: Dovecot mailboxes, the SMTP relay
delivering into them, deskctl fetching and sending, and robots answering.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from jobs.conftest import AddImap, AddSmtp, new_user, ticket_with_reply
from sqlalchemy import create_engine, text

from conftest import Run, ingested
from mailfactory import make_dsn, make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay

ACK = "We received your message '$title' as ticket $number. We answer within a day.\n"


def submit(
    relay: SmtpRelay, certs: CertBundle, user: tuple[str, str], raw: bytes, rcpts: list[str]
) -> None:
    with smtplib.SMTP("localhost", relay.starttls_port, timeout=10) as client:
        client.starttls(context=certs.client_context())
        client.login(*user)
        client.sendmail(user[0], rcpts, raw)


def unseen(dovecot: Dovecot, user: tuple[str, str]) -> list[EmailMessage]:
    """New mail in ``user``'s INBOX, marked seen as it is read."""
    with dovecot.mailbox(*user) as box:
        found = [m.obj.as_bytes() for m in box.fetch(criteria="UNSEEN", mark_seen=True)]
    return [message_from_bytes(raw, policy=policy.default) for raw in found]  # type: ignore[misc]


def naive_responder(
    dovecot: Dovecot, relay: SmtpRelay, certs: CertBundle, user: tuple[str, str]
) -> Callable[[], None]:
    """An out-of-office robot that answers every message, with no Auto-Submitted header."""

    def round_() -> None:
        for msg in unseen(dovecot, user):
            answer = make_mail(
                subject=f"Automatic reply: {msg['Subject']}", sender=user[0],
                to=msg["From"].addresses[0].addr_spec, body="I am out of the office.\n",
            )  # fmt: skip
            submit(relay, certs, user, answer, [msg["From"].addresses[0].addr_spec])

    return round_


def relayed_count(relay: SmtpRelay, *addresses: str) -> int:
    wanted = set(addresses)
    return sum(1 for m in relay.messages if wanted & ({m.mail_from, *m.rcpt_tos}))


@pytest.fixture
def ack_desk(
    desk: Run,
    tmp_path: Path,
    add_imap: AddImap,
    add_smtp: AddSmtp,
    dovecot: Dovecot,
):  # type: ignore[no-untyped-def]
    """A desk on its own support mailbox, replying through the relay, acknowledging new tickets."""
    support = new_user(dovecot, "support")
    add_imap("support", support)
    add_smtp("support-out", support, display="Support")
    desk("channel", "map", "support", "--reply-via", "support-out")
    ack = tmp_path / "ack.txt"
    ack.write_text(ACK)
    assert desk("queue", "set", "general", "--ack-file", str(ack)).exit_code == 0
    return support


def run_rounds(
    desk: Run, robots: list[Callable[[], None]], count: Callable[[], int], rounds: int = 20
) -> list[int]:
    history = []
    for _ in range(rounds):
        desk("-q", "fetch")
        desk("-q", "send-outbox")
        for robot in robots:
            robot()
        history.append(count())
    return history


def max_messages_per_ticket(db_url: str) -> int:
    with create_engine(db_url).connect() as conn:
        return int(conn.scalar(text("SELECT max(message_count) FROM tickets")) or 0)


def assert_settles(history: list[int]) -> None:
    """The exchange stops growing after at most two rounds."""
    assert history[2:] == [history[2]] * (len(history) - 2), history


def test_an_auto_responder_and_acknowledgements_do_not_loop(
    desk: Run,
    ack_desk: tuple[str, str],
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    certs: CertBundle,
    db_url: str,
) -> None:
    robot = new_user(dovecot, "robot")
    submit(
        smtp_relay,
        certs,
        robot,
        make_mail(subject="Printer?", sender=robot[0], to=ack_desk[0]),
        [ack_desk[0]],
    )
    history = run_rounds(desk, [naive_responder(dovecot, smtp_relay, certs, robot)],
                         lambda: relayed_count(smtp_relay, robot[0], ack_desk[0]))  # fmt: skip
    assert_settles(history)
    assert max_messages_per_ticket(db_url) <= 3
    (ticket,) = desk("--json", "ticket", "list").json()["tickets"]
    shown = desk("--json", "ticket", "show", str(ticket["number"])).json()
    assert [m["direction"] for m in shown["messages"]] == ["in", "out", "in"]
    assert "auto_reply" in shown["messages"][2]["flags"]


def test_the_support_inbox_as_its_own_customer_never_loops(
    desk: Run,
    ack_desk: tuple[str, str],
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    certs: CertBundle,
    db_url: str,
) -> None:
    submit(
        smtp_relay,
        certs,
        ack_desk,
        make_mail(subject="Note to self", sender=ack_desk[0], to=ack_desk[0]),
        [ack_desk[0]],
    )
    history = run_rounds(desk, [], lambda: relayed_count(smtp_relay, ack_desk[0]))
    assert_settles(history)
    assert history[-1] == 1, "only the first mail was ever sent"
    assert desk("--json", "ticket", "list").json()["tickets"] == []
    (item,) = desk("--json", "quarantine", "list").json()["quarantine"]
    assert item["reason"].startswith("own mail: From")


def forwarder(
    dovecot: Dovecot, relay: SmtpRelay, certs: CertBundle, user: tuple[str, str], to: str
) -> Callable[[], None]:
    """A mailbox rule forwarding everything to ``to``, with the usual X-Forwarded-For loop guard."""

    def round_() -> None:
        for msg in unseen(dovecot, user):
            if user[0] in msg.get_all("X-Forwarded-For", []):
                continue
            msg["X-Forwarded-For"] = user[0]
            submit(relay, certs, user, msg.as_bytes(), [to])

    return round_


def test_two_help_desks_whose_inboxes_forward_to_each_other_settle(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    certs: CertBundle,
    tmp_path: Path,
    add_imap: AddImap,
    monkeypatch,
    db_url: str,
) -> None:  # type: ignore[no-untyped-def]
    a_in, b_in = new_user(dovecot, "desk-a"), new_user(dovecot, "desk-b")
    a_fwd, b_fwd = new_user(dovecot, "fwd-a"), new_user(dovecot, "fwd-b")
    customer = new_user(dovecot, "customer")
    second_db = f"sqlite:///{tmp_path / 'b.db'}"
    ack = tmp_path / "ack.txt"
    ack.write_text(ACK)
    for db, inbox, name in ((None, a_in, "a"), (second_db, b_in, "b")):
        prefix = ("--db", db) if db else ()
        if db:
            desk(*prefix, "db", "upgrade")
        monkeypatch.setenv(f"PW_{name.upper()}", inbox[1])
        desk(*prefix, "channel", "add", name, "--kind", "imap", "--address", inbox[0], "--host", "localhost",
             "--port", str(dovecot.imaps_port), "--ca-file", str(certs.ca_pem), "--password-env", f"PW_{name.upper()}")  # fmt: skip
        desk(*prefix, "channel", "add-outgoing", f"{name}-out", "--kind", "smtp", "--host", "localhost",
             "--port", str(smtp_relay.smtps_port), "--security", "ssl", "--ca-file", str(certs.ca_pem),
             "--username", inbox[0], "--password-env", f"PW_{name.upper()}", "--from", inbox[0])  # fmt: skip
        desk(*prefix, "channel", "map", name, "--reply-via", f"{name}-out")
        desk(*prefix, "queue", "set", "general", "--ack-file", str(ack))
    # Each desk's inbox also receives what the other desk's forwarding mailbox passes on.
    submit(
        smtp_relay,
        certs,
        customer,
        make_mail(subject="Hello both", sender=customer[0], to=a_in[0]),
        [a_in[0], a_fwd[0]],
    )
    robots = [
        forwarder(dovecot, smtp_relay, certs, a_fwd, b_in[0]),
        forwarder(dovecot, smtp_relay, certs, b_fwd, a_in[0]),
    ]

    def both_desks() -> None:
        desk("--db", second_db, "-q", "fetch")
        desk("--db", second_db, "-q", "send-outbox")

    history = run_rounds(desk, [both_desks, *robots], lambda: len(smtp_relay.messages))
    assert_settles(history)
    for db in (db_url, second_db):
        assert max_messages_per_ticket(db) <= 3
    acks = [
        m
        for m in smtp_relay.messages
        if customer[0] in m.rcpt_tos and m.message()["Auto-Submitted"]
    ]
    assert 1 <= len(acks) <= 2, "each desk acknowledges the customer at most once"


def test_filter_entries_remember_who_added_them(desk: Run) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "Help@Example.test")
    desk("filter", "add", "help@example.test", "--reason", "belt and braces")
    desk("filter", "add", "@robots.example")
    rows = {(r["pattern"], r["source"]) for r in desk("--json", "filter", "list").json()["filters"]}
    assert rows == {
        ("help@example.test", "channel:support"),
        ("help@example.test", "manual"),
        ("@robots.example", "manual"),
    }
    desk("channel", "remove", "support")
    rows = {(r["pattern"], r["source"]) for r in desk("--json", "filter", "list").json()["filters"]}
    assert ("help@example.test", "manual") in rows and (
        "help@example.test",
        "channel:support",
    ) not in rows
    assert desk("filter", "remove", "@robots.example").exit_code == 0
    assert desk("filter", "remove", "@robots.example").exit_code == 3
    assert desk("filter", "add", "not a pattern").exit_code == 2


def test_a_reply_to_the_support_address_itself_is_blocked_and_a_filtered_cc_is_dropped(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str]
) -> None:
    # A mail from the support address arrived (through another inbox) before its channel existed.
    early = make_mail(sender="help@example.test", message_id="<early@x>")
    self_mail = desk("--json", "ingest", "--channel", "inbox", stdin=early).json()
    desk(
        "channel",
        "add",
        "support",
        "--kind",
        "pipe",
        "--address",
        "help@example.test",
        "--reply-via",
        "out",
    )
    desk("ticket", "show", str(self_mail["ticket"]))
    assert (
        desk(
            "ticket", "reply", str(self_mail["ticket"]), "--body", "to myself?", "--force"
        ).exit_code
        == 0
    )

    other = desk(
        "--json",
        "ingest",
        "--channel",
        "support",
        stdin=make_mail(sender="kim@example.org", message_id="<k@x>"),
    ).json()
    desk("ticket", "show", str(other["ticket"]))
    replied = desk(
        "ticket",
        "reply",
        str(other["ticket"]),
        "--body",
        "Hi Kim",
        "--cc",
        "boss@example.org",
        "--cc",
        "lee@example.org",
    )
    assert replied.exit_code == 0, replied.stderr
    desk("filter", "add", "boss@example.org")
    report = desk("--json", "send-outbox").json()
    assert report["blocked"] == 1 and report["sent"] == 1, report
    sent = smtp_relay.wait_for(lambda m: "kim@example.org" in m.rcpt_tos)
    assert "boss@example.org" not in sent.rcpt_tos and "lee@example.org" in sent.rcpt_tos
    assert "boss@example.org" not in str(sent.message()["Cc"])
    assert not any("help@example.test" in m.rcpt_tos for m in smtp_relay.messages)


def test_a_bounce_of_a_reply_joins_its_ticket_and_marks_the_outbox_item(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str]
) -> None:
    number, queued = ticket_with_reply(desk, make_mail(sender="gone@example.org"), "Hello?")
    doc = {"ticket": number}
    assert desk("--json", "send-outbox").json()["sent"] == 1
    sent = smtp_relay.wait_for(lambda m: m.message()["Message-ID"] == f"<{queued['message_id']}>")

    bounce = desk(
        "--json", "ingest", "--channel", "inbox", stdin=make_dsn(sent.message(), replying_inbox[0])
    ).json()
    assert (
        bounce["ticket"] == doc["ticket"] and bounce["rule"] == "bounce" and not bounce["created"]
    )
    assert "bounce" in bounce["flags"]
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "bounced"
    assert len(desk("--json", "ticket", "list").json()["tickets"]) == 1


def test_acknowledgements_are_safe_and_rate_limited(desk: Run, tmp_path: Path) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    ack = tmp_path / "ack.txt"
    ack.write_text(ACK)
    desk("queue", "set", "general", "--ack-file", str(ack), "--ack-limit", "2")

    def ingest(**kwargs: Any) -> dict[str, Any]:
        raw = make_mail(message_id=f"<{uuid.uuid4().hex}@x>", **kwargs)
        return ingested(desk, raw, "--channel", "support")

    assert ingest(sender="pat@example.org", subject="One")["ack"] == "sent"
    assert ingest(sender="pat@example.org", subject="Two")["ack"] == "sent"
    assert "2 automatic replies" in ingest(sender="pat@example.org", subject="Three")["ack"]
    assert (
        "auto_reply"
        in ingest(sender="ooo@example.org", headers={"Auto-Submitted": "auto-replied"})["ack"]
    )
    assert (
        "bulk"
        in ingest(sender="news@example.org", headers={"List-Id": "<news.example.org>"})["ack"]
    )
    desk("filter", "add", "@blocked.example")
    assert "outgoing filter" in ingest(sender="x@blocked.example")["ack"]

    items = desk("--json", "outbox", "list").json()["outbox"]
    assert len(items) == 2
    first = desk("--json", "ticket", "show", str(items[-1]["ticket"])).json()
    ack_msg = first["messages"][-1]
    assert ack_msg["author"] is None and "as ticket" in ack_msg["body"]
    raw = desk("ticket", "show", str(items[-1]["ticket"]), "--raw", str(ack_msg["id"])).stdout
    assert "Auto-Submitted: auto-replied" in raw and "X-Deskctl-Loop:" in raw


def test_explain_says_what_would_happen_and_stores_nothing(desk: Run, tmp_path: Path) -> None:
    desk(
        "channel",
        "add",
        "support",
        "--kind",
        "pipe",
        "--address",
        "help@example.test",
        "--queue",
        "help",
    )
    path = tmp_path / "ooo.eml"
    path.write_bytes(
        make_mail(subject="Out of Office: your ticket", headers={"X-Autoreply": "yes"})
    )
    result = desk("explain", "--channel", "support", str(path))
    assert result.exit_code == 0
    assert "queue help" in result.stdout and "a new ticket" in result.stdout
    assert "auto_reply" in result.stdout and "X-Autoreply" in result.stdout
    assert "no acknowledgement configured" in result.stdout
    assert desk("--json", "ticket", "list").json()["tickets"] == []


def test_doctor_finds_loop_risks_before_mail_moves(desk: Run) -> None:
    assert desk("doctor").exit_code == 0
    desk("agent", "add", "alice", "--email", "help@example.test")
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    desk("channel", "add", "stale", "--kind", "maildir", "--address", "x@example.test", "--sample")
    result = desk("--json", "doctor")
    assert result.exit_code == 5
    checks = {f["check"] for f in result.json()["findings"]}
    assert "agent-address" in checks


def test_another_companys_deskctl_is_a_customer_but_our_own_mail_is_not(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay, tmp_path: Path
) -> None:
    """A vendor on deskctl answers a customer whose support inbox runs deskctl too."""
    customer_desk = "help@customer.example"
    number, _ = ticket_with_reply(
        desk, make_mail(subject="Licence renewal", sender=customer_desk, to="inbox@example.test")
    )
    assert desk("send-outbox").exit_code == 0
    (sent,) = [m for m in smtp_relay.messages if customer_desk in m.rcpt_tos]
    assert sent.message()["X-Deskctl-Loop"].startswith("deskctl ")

    # The customer's own deskctl (its own database, acknowledging new tickets) reads our
    # reply: a ticket, not a loop, and never an automatic answer to another help desk.
    theirs = f"sqlite:///{tmp_path / 'customer.db'}"
    ack = tmp_path / "ack.txt"
    ack.write_text(ACK)
    assert desk("--db", theirs, "db", "upgrade").exit_code == 0
    desk("--db", theirs, "channel", "add", "help", "--kind", "pipe", "--address", customer_desk)
    desk("--db", theirs, "queue", "set", "general", "--ack-file", str(ack))
    there = desk("--db", theirs, "--json", "ingest", "--channel", "help", stdin=sent.raw)
    assert there.exit_code == 0, there.stderr
    doc = there.json()
    assert doc["created"] is True and "own" not in doc["flags"] and not doc["is_auto_reply"]
    assert "help_desk" in doc["flags"] and doc["ack"] == "suppressed: the message is help_desk"

    # The same header coming back to us (a copy under a new Message-ID) is our own mail,
    # and so is the header deskctl wrote before installations had ids.
    header = sent.message()["X-Deskctl-Loop"].encode()
    for label, token in (("copy", header), ("legacy", f"deskctl ticket {number}".encode())):
        copy = sent.raw.replace(b"Message-ID: <", b"Message-ID: <" + label.encode() + b".", 1)
        copy = copy.replace(b"X-Deskctl-Loop: " + header, b"X-Deskctl-Loop: " + token, 1)
        here = desk("--json", "ingest", "--channel", "inbox", stdin=copy).json()
        assert here["ticket"] == number and here["created"] is False, label
        assert "own" in here["flags"], label
        assert any(token.decode() in reason for reason in here["flag_reasons"]), label


def test_a_lost_instance_id_is_made_anew_and_mail_keeps_flowing(desk: Run, db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        before = conn.scalar(text("SELECT value FROM settings WHERE key = 'instance_id'"))
        conn.execute(text("DELETE FROM settings"))
    result = desk("--json", "ingest", "-", stdin=make_mail(message_id="<after-loss@example.org>"))
    assert result.exit_code == 0 and result.json()["created"] is True
    with engine.connect() as conn:
        after = conn.scalar(text("SELECT value FROM settings WHERE key = 'instance_id'"))
    engine.dispose()
    assert len(before) == len(after) == 16 and after != before
