"""Agents answer from the shell; the answer reaches the customer and their reply threads back.

A real SMTP server (aiosmtpd) delivers into a real Dovecot, so the whole
round trip is checked the way a customer would see it.
"""

from __future__ import annotations

import smtplib
import uuid
from email import message_from_bytes, policy

import pytest
from jobs.conftest import AddImap, deskctl_process, new_user, ticket_with_reply
from sqlalchemy import create_engine, text

from conftest import Run
from mailfactory import make_mail, utf8_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay


def customer_sends(
    relay: SmtpRelay, certs: CertBundle, user: tuple[str, str], raw: bytes, to: str
) -> None:
    """The customer's own mail program: STARTTLS, AUTH, submit."""
    with smtplib.SMTP("localhost", relay.starttls_port, timeout=10) as client:
        client.starttls(context=certs.client_context())
        client.login(*user)
        client.sendmail(user[0], [to], raw)


def inbox(dovecot: Dovecot, user: tuple[str, str]) -> list:  # type: ignore[type-arg]
    with dovecot.mailbox(*user) as box:
        return [
            message_from_bytes(m.obj.as_bytes(), policy=policy.default)
            for m in box.fetch(mark_seen=False)
        ]


def test_the_round_trip_customer_agent_customer_stays_on_one_ticket(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    certs: CertBundle,
    add_imap: AddImap,
    add_smtp,
) -> None:  # type: ignore[no-untyped-def]
    support, customer = new_user(dovecot, "support"), new_user(dovecot, "customer")
    first = make_mail(
        subject="VPN drops every hour", sender=f"Casey <{customer[0]}>", to=support[0]
    )
    customer_sends(smtp_relay, certs, customer, first, support[0])
    add_imap("support", support)
    add_smtp("support-out", support)
    assert desk("channel", "map", "support", "--reply-via", "support-out").exit_code == 0

    assert desk("--json", "fetch").json()["channels"][0]["tickets_created"] == 1
    (ticket,) = desk("--json", "ticket", "list").json()["tickets"]
    number = ticket["number"]
    original_id = desk("--agent", "alice", "--json", "ticket", "show", str(number)).json()[
        "messages"
    ][0]["message_id"]
    queued = desk(
        "--agent",
        "alice",
        "--json",
        "ticket",
        "reply",
        str(number),
        "--body",
        "Please update the client to 5.2.",
    )
    assert queued.exit_code == 0, queued.stderr
    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stdout + sent.stderr

    (answer,) = inbox(dovecot, customer)
    assert answer["From"].addresses[0].addr_spec == support[0]
    assert answer["Subject"] == f"Re: VPN drops every hour [#{number}]"
    assert answer["In-Reply-To"] == f"<{original_id}>"
    assert f"<{original_id}>" in answer["References"]
    assert answer["X-Deskctl-Loop"]
    assert "Please update the client to 5.2." in answer.get_body(("plain",)).get_content()
    assert answer.get_body(("html",)) is not None

    again = make_mail(
        subject=str(answer["Subject"]), sender=f"Casey <{customer[0]}>", to=support[0],
        body="Updated, works now. Thanks!\n", in_reply_to=str(answer["Message-ID"]),
        references=f"{answer['References']} {answer['Message-ID']}",
    )  # fmt: skip
    customer_sends(smtp_relay, certs, customer, again, support[0])
    fetched = desk("--json", "fetch").json()["channels"][0]
    assert fetched["messages_added"] == 1 and fetched["tickets_created"] == 0
    shown = desk("--json", "ticket", "show", str(number)).json()
    assert [m["direction"] for m in shown["messages"]] == ["in", "out", "in"]
    assert shown["messages"][1]["author"] == "alice" and shown["messages"][1]["delivery"] == "sent"
    assert shown["status"] == "open"


def test_each_inbox_replies_through_its_own_outgoing_channel(
    desk: Run, dovecot: Dovecot, smtp_relay: SmtpRelay, add_imap: AddImap, add_smtp
) -> None:  # type: ignore[no-untyped-def]
    boxes = {name: new_user(dovecot, name) for name in ("help", "shop")}
    for name, user in boxes.items():
        folder = dovecot.create_folder(*user)
        dovecot.deliver(make_mail(subject=f"for {name}", to=user[0]), folder, *user)
        add_imap(name, user, folder=folder)
        add_smtp(f"{name}-out", user, display=name.title())
        desk("channel", "map", name, "--reply-via", f"{name}-out")
    desk("fetch")
    for ticket in desk("--json", "ticket", "list").json()["tickets"]:
        desk("ticket", "show", str(ticket["number"]))
        assert desk("ticket", "reply", str(ticket["number"]), "--body", "On it.").exit_code == 0
    assert desk("--json", "send-outbox").json()["sent"] == 2
    for name, user in boxes.items():
        relayed = smtp_relay.wait_for(lambda m, u=user: m.auth_user == u[0])
        assert relayed.message()["Subject"].startswith(f"Re: for {name}")
        assert relayed.mail_from == user[0]


def pipe_channel(desk: Run) -> None:
    """A pipe channel: replies to its tickets leave through the local mail system."""
    added = desk("channel", "add", "support", "--kind", "pipe", "--address", "support@example.test")
    assert added.exit_code == 0, added.stderr


def test_a_temporary_failure_is_retried_with_the_same_message_id(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str], db_url: str
) -> None:
    _, queued = ticket_with_reply(desk, make_mail(sender="dana@example.test"))

    smtp_relay.fail_next(451, "4.3.0 try again later")
    first = desk("--json", "send-outbox")
    assert first.json()["deferred"] == 1 and first.exit_code == 6
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "queued" and "451" in item["last_error"] and item["attempts"] == 1
    with create_engine(db_url).begin() as conn:  # the backoff has passed
        conn.execute(text("UPDATE outbox_items SET next_attempt_at = created_at"))
    second = desk("--json", "send-outbox")
    assert second.json()["sent"] == 1
    delivered = smtp_relay.wait_for(
        lambda m: m.message()["Message-ID"] == f"<{queued['message_id']}>"
    )
    refused = [
        m for m in smtp_relay.rejected if m.message()["Message-ID"] == f"<{queued['message_id']}>"
    ]
    assert delivered and len(refused) == 1


def test_a_permanent_failure_marks_the_item_failed_with_the_answer(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str]
) -> None:
    number, _ = ticket_with_reply(desk, make_mail(sender="gone@example.test"))
    smtp_relay.fail_next(550, "5.1.1 no such user")
    result = desk("--json", "send-outbox")
    assert result.exit_code == 7 and result.json()["failed"] == 1
    (item,) = desk("--json", "outbox", "list", "--state", "failed").json()["outbox"]
    assert "550 5.1.1 no such user" in item["last_error"]
    shown = desk("--json", "ticket", "show", str(number)).json()
    assert shown["messages"][-1]["delivery"] == "failed"


def test_a_filtered_recipient_blocks_the_item_and_nothing_is_sent(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str]
) -> None:
    ticket_with_reply(desk, make_mail(sender="alerts-noreply@vendor.example"), "Hello robot")
    assert desk("filter", "add", "*-noreply@*", "--reason", "robots").exit_code == 0
    before = len(smtp_relay.messages) + len(smtp_relay.rejected)
    result = desk("--json", "send-outbox")
    assert result.json()["blocked"] == 1 and result.json()["sent"] == 0
    assert len(smtp_relay.messages) + len(smtp_relay.rejected) == before
    (item,) = desk("--json", "outbox", "list", "--state", "blocked").json()["outbox"]
    assert "outgoing filter" in item["last_error"]


def test_two_send_outbox_runs_deliver_each_reply_exactly_once(
    desk: Run, smtp_relay: SmtpRelay, replying_inbox: tuple[str, str], tmp_path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    for i in range(200):
        path = tmp_path / f"{i}.eml"
        path.write_bytes(
            make_mail(
                subject=f"q{i}", sender=f"c{i}-{tag}@example.org", message_id=f"<{tag}-{i}@x>"
            )
        )
    files = [str(tmp_path / f"{i}.eml") for i in range(200)]
    assert desk("ingest", "--channel", "inbox", *files).exit_code == 0
    for number in range(1, 201):
        assert desk("ticket", "reply", str(number), "--body", "Thanks", "--force").exit_code == 0
    procs = [deskctl_process("--json", "send-outbox") for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with create_engine(db_url).connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM outbox_items WHERE state = 'sent'")) == 200
        ids = [
            r[0]
            for r in conn.execute(text("SELECT message_id FROM messages WHERE direction = 'out'"))
        ]
    delivered = [
        m for m in smtp_relay.messages if m.message()["Message-ID"].strip("<>") in set(ids)
    ]
    assert len(delivered) == 200 and len({m.message()["Message-ID"] for m in delivered}) == 200


def test_a_customer_message_between_show_and_reply_makes_reply_refuse(desk: Run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = tmp_path / "1.eml"
    first.write_bytes(make_mail(sender="erin@example.test", message_id="<c1@x>"))
    pipe_channel(desk)
    number = desk("--json", "ingest", "--channel", "support", str(first)).json()["ticket"]
    assert desk("ticket", "reply", str(number), "--body", "blind").exit_code == 4
    desk("ticket", "show", str(number))
    second = tmp_path / "2.eml"
    second.write_bytes(
        make_mail(sender="erin@example.test", in_reply_to="<c1@x>", message_id="<c2@x>")
    )
    desk("ingest", "--channel", "support", str(second))

    refused = desk("ticket", "reply", str(number), "--body", "Answer to the first mail")
    assert refused.exit_code == 4
    assert "the customer wrote" in refused.stderr and "--force" in refused.stderr
    assert desk("--json", "outbox", "list").json()["outbox"] == []
    assert desk("ticket", "reply", str(number), "--body", "Seen both", "--force").exit_code == 0


def test_another_agents_reply_makes_reply_refuse(desk: Run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "1.eml"
    path.write_bytes(make_mail(sender="finn@example.test"))
    pipe_channel(desk)
    number = desk("--json", "ingest", "--channel", "support", str(path)).json()["ticket"]
    desk("--agent", "alice", "ticket", "show", str(number))
    desk("--agent", "bob", "ticket", "show", str(number))
    assert (
        desk("--agent", "bob", "ticket", "reply", str(number), "--body", "Bob here").exit_code == 0
    )
    refused = desk("--agent", "alice", "ticket", "reply", str(number), "--body", "Alice here")
    assert refused.exit_code == 4 and "bob replied" in refused.stderr


def test_the_editor_opens_with_the_customer_message_and_an_empty_body_cancels(
    desk: Run, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "1.eml"
    path.write_bytes(make_mail(sender="gil@example.test", body="My screen is blue.\n"))
    pipe_channel(desk)
    number = desk("--json", "ingest", "--channel", "support", str(path)).json()["ticket"]
    desk("ticket", "show", str(number))
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.sh"
    editor.write_text(
        f'#!/bin/sh\ncp "$1" {seen}\nprintf "Try turning it off and on.\\n%s" "$(cat "$1")" > "$1"\n'
    )
    editor.chmod(0o755)
    monkeypatch.setenv("VISUAL", str(editor))
    assert desk("ticket", "reply", str(number)).exit_code == 0
    assert "# > My screen is blue." in seen.read_text()
    shown = desk("--json", "ticket", "show", str(number)).json()
    assert shown["messages"][-1]["body"] == "Try turning it off and on."

    empty = tmp_path / "empty.sh"
    empty.write_text('#!/bin/sh\n: > "$1"\n')
    empty.chmod(0o755)
    monkeypatch.setenv("VISUAL", str(empty))
    result = desk("ticket", "reply", str(number), "--force")
    assert result.exit_code == 0 and "cancelled" in result.stderr
    assert len(desk("--json", "outbox", "list").json()["outbox"]) == 1


def test_notes_assignments_and_status_changes_record_who_did_them(
    desk: Run, tmp_path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "1.eml"
    path.write_bytes(make_mail(sender="hal@example.test"))
    pipe_channel(desk)
    number = desk("--json", "ingest", "--channel", "support", str(path)).json()["ticket"]
    assert (
        desk("--agent", "alice", "ticket", "note", str(number), "--body", "internal only").exit_code
        == 0
    )
    assert desk("--agent", "alice", "ticket", "assign", str(number), "me").exit_code == 0
    assert desk("--agent", "bob", "ticket", "status", str(number), "solved").exit_code == 0
    assert desk("ticket", "assign", str(number), "nobody-known").exit_code == 3
    shown = desk("--json", "ticket", "show", str(number)).json()
    note = shown["messages"][-1]
    assert note["direction"] == "note" and note["author"] == "alice"
    assert shown["assignee"] == "alice" and shown["status"] == "solved"
    mine = desk("--agent", "alice", "--json", "ticket", "list", "--mine", "--status", "all")
    mine = mine.json()["tickets"]
    assert [t["number"] for t in mine] == [number]
    with create_engine(db_url).connect() as conn:
        events = conn.execute(text(
            "SELECT e.kind, e.new, a.name FROM ticket_events e JOIN agents a ON a.id = e.agent_id ORDER BY e.id"
        )).all()  # fmt: skip
    assert [tuple(e) for e in events] == [("assign", "alice", "alice"), ("status", "solved", "bob")]
    assert desk("--json", "outbox", "list").json()["outbox"] == [], "a note is never mailed"


def test_a_unicode_local_part_over_smtp_fails_for_good_with_the_reason(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    """Our SMTP client has no SMTPUTF8: the item says so, and the queue behind it moves on."""
    raw = utf8_mail("Jörg <jörg@example.org>", "inbox@example.test", "Rechnung", "<eai@x>")
    before = len(smtp_relay.messages)
    ticket_with_reply(desk, raw)
    done = desk("--json", "send-outbox")
    assert done.json()["failed"] == 1 and done.json()["sent"] == 0, done.stdout
    (item,) = desk("--json", "outbox", "list").json()["outbox"]
    assert item["state"] == "failed"
    assert "not ASCII, which needs SMTPUTF8" in item["last_error"], item
    assert len(smtp_relay.messages) == before, "nothing half-sent"


def test_a_customer_at_an_internationalised_domain_gets_the_reply(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    """Mail written with UTF-8 headers (RFC 6532) names the domain in Unicode."""
    raw = utf8_mail(
        "Jürgen <kunde@bücher.example>", "inbox@example.test", "Rechnung fehlt",
        "<idn-1@bücher.example>",
    )  # fmt: skip
    number, _ = ticket_with_reply(desk, raw)
    done = desk("--json", "send-outbox")
    assert done.exit_code == 0 and done.json()["sent"] == 1, done.stdout
    (sent,) = [m for m in smtp_relay.messages if "kunde@xn--bcher-kva.example" in m.rcpt_tos]
    assert sent.message()["To"].addresses[0].addr_spec == "kunde@xn--bcher-kva.example"
    assert sent.message()["In-Reply-To"] is None  # the customer's id has a Unicode domain
    shown = desk("--json", "ticket", "show", str(number)).json()
    assert shown["customer"]["email"] == "kunde@bücher.example"  # kept as the customer wrote it
    assert [m["delivery"] for m in shown["messages"] if m["direction"] == "out"] == ["sent"]

    # Writing back from the ASCII form of the same mailbox is the same customer.
    again = make_mail(
        subject=f"Re: Rechnung fehlt [#{number}]", sender="kunde@xn--bcher-kva.example",
        to="inbox@example.test",
    )  # fmt: skip
    joined = desk("--json", "ingest", "--channel", "inbox", stdin=again).json()
    assert joined["ticket"] == number and joined["rule"] == "token"

    # A filter written in either form keeps deskctl from mailing the other.
    desk("filter", "add", "@xn--bcher-kva.example", "--reason", "asked us to stop")
    desk("ticket", "show", str(number))
    assert desk("ticket", "reply", str(number), "--body", "One more thing").exit_code == 0
    blocked = desk("--json", "send-outbox").json()
    assert blocked["blocked"] == 1 and blocked["sent"] == 0


def test_an_smtp_password_that_is_not_ascii_sends_and_never_leaks_when_wrong(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    add_smtp,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    agent = (f"agent-{uuid.uuid4().hex[:8]}@example.test", "Grüße-ñandú-秘密")
    dovecot.add_user(*agent)
    add_smtp("out", agent)
    desk("channel", "add", "inbox", "--kind", "pipe", "--address", "inbox@example.test",
         "--reply-via", "out")  # fmt: skip
    _, queued = ticket_with_reply(desk, make_mail(sender="umlaut@example.test"))
    sent = desk("--json", "send-outbox")
    assert sent.exit_code == 0 and sent.json()["sent"] == 1, sent.stdout + sent.stderr
    assert smtp_relay.wait_for(lambda m: m.message()["Message-ID"] == f"<{queued['message_id']}>")

    monkeypatch.setenv("SMTP_PW_OUT", "Grüße-ñandú-秘密!")
    ticket_with_reply(desk, make_mail(sender="umlaut2@example.test", subject="second"))
    refused = desk("-vv", "--json", "send-outbox")
    (item,) = desk("--json", "outbox", "list", "--state", "queued").json()["outbox"]
    seen = refused.stdout + refused.stderr + (item["last_error"] or "")
    assert "login refused" in seen, seen
    assert not [c for c in set("Grüße-ñandú-秘密!") if not c.isascii() and c in seen], seen
    assert "position" not in seen and "codec" not in seen


def test_a_long_message_id_goes_out_as_a_msg_id_never_an_encoded_word(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    """Microsoft 365 ids run to 78 characters and more; a mail program matches them only as is.

    RFC 5322 3.6.4: In-Reply-To and References are msg-ids, folded between
    ids only; an id longer than a line stands whole on a line of its own.
    The reply is also rewritten at send time (a Cc on the filter is dropped),
    which must keep the ids as they are too.
    """
    long_id = "AM0PR07MB" + "7A3F" * 16 + "B@EURPRD07.PROD.OUTLOOK.COM"
    assert len(long_id) == 100
    earlier = [f"earlier-{i}@mail.example.org" for i in range(4)]
    raw = (
        "From: Casey <casey-ids@example.org>\r\nTo: inbox@example.test\r\n"
        "Cc: boss-ids@example.org\r\nSubject: Threads\r\n"
        f"Message-ID: <{long_id}>\r\nIn-Reply-To: <{earlier[-1]}>\r\n"
        f"References: {' '.join(f'<{e}>' for e in earlier)}\r\n\r\nHi\r\n"
    ).encode()
    _, queued = ticket_with_reply(desk, raw)
    assert desk("filter", "add", "boss-ids@example.org").exit_code == 0  # rewritten at send
    assert desk("--json", "send-outbox").json()["sent"] == 1
    relayed = smtp_relay.wait_for(
        lambda m: m.message()["Message-ID"] == f"<{queued['message_id']}>"
    )
    assert relayed.rcpt_tos == ["casey-ids@example.org"] and relayed.message()["Cc"] is None

    head = relayed.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert f"\r\nIn-Reply-To: <{long_id}>\r\n" in head
    fields = head.replace("\r\n ", "\n ").split("\r\n")
    (references,) = [f for f in fields if f.startswith("References:")]
    lines = references.split("\n")
    assert f" <{long_id}>" in lines  # whole, on its own line
    assert all(len(line) <= 78 for line in lines if long_id not in line)
    ids = references.removeprefix("References:").split()
    assert ids == [f"<{e}>" for e in [*earlier, long_id]]
    assert "=?" not in head


def test_a_references_list_of_ten_thousand_ids_is_not_copied_into_the_reply(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    """Whatever a sender writes in References, our reply names the thread's first
    mail and the newest ones (as RFC 5537 3.4.4 trims), not 10,000 ids in a 180 KB
    header that mail servers truncate or refuse (Postfix keeps 100 KB of header)."""
    earlier = [f"id-{i}@flood.example.org" for i in range(10_000)]
    raw = (
        "From: Casey <casey-flood@example.org>\r\nTo: inbox@example.test\r\n"
        "Subject: Flood\r\nMessage-ID: <flood@example.org>\r\n"
        f"References: {' '.join(f'<{e}>' for e in earlier)}\r\n\r\nHi\r\n"
    ).encode()
    number, queued = ticket_with_reply(desk, raw)
    assert desk("--json", "send-outbox").json()["sent"] == 1
    relayed = smtp_relay.wait_for(
        lambda m: m.message()["Message-ID"] == f"<{queued['message_id']}>"
    )
    head = relayed.raw.split(b"\r\n\r\n", 1)[0]
    assert len(head) < 4096, len(head)
    ids = str(relayed.message()["References"]).split()
    assert ids == [f"<{e}>" for e in [earlier[0], *earlier[-18:], "flood@example.org"]]
    assert relayed.message()["In-Reply-To"] == "<flood@example.org>"
    # The reply records what it sent.
    raw_stored = desk("ticket", "show", str(number), "--raw", str(queued["message"])).stdout
    assert raw_stored.count("@flood.example.org>") == 19
