"""Who a reply goes to: the customer, their colleagues up to a bound, never thousands.

A reply keeps the answered mail's other recipients as Cc, so a customer who
copied a colleague gets an answer the colleague sees too. Mail decides that
list, so it is bounded (``reply_max_cc``, default 10): past it the reply goes
to the customer alone, and the agent is told before and after. Checked at
the SMTP server: the envelope (who really gets it) and the header (who the
customer sees).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs.conftest import ticket_with_reply

from conftest import Run
from mailfactory import make_mail
from testbed.smtp_relay import RelayedMessage, SmtpRelay


def colleagues(tag: str, count: int) -> list[str]:
    return [f"colleague{i}-{tag}@example.org" for i in range(count)]


def mail_to_many(tag: str, count: int) -> bytes:
    """The customer writes to us and ``count`` others, half in To and half in Cc."""
    others = colleagues(tag, count)
    return make_mail(
        sender=f"Casey <casey-{tag}@example.org>",
        to=", ".join(["inbox@example.test", *others[: count // 2]]),
        cc=", ".join(others[count // 2 :]) or None,
    )


def sent_reply(desk: Run, relay: SmtpRelay, message_id: str) -> RelayedMessage:
    assert desk("--json", "send-outbox").json()["sent"] >= 1
    return relay.wait_for(lambda m: m.message()["Message-ID"] == f"<{message_id}>")


def cc_of(relayed: RelayedMessage) -> list[str]:
    cc = relayed.message()["Cc"]
    return [a.addr_spec for a in cc.addresses] if cc else []


def test_a_reply_keeps_the_customers_colleagues_as_cc(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    raw = mail_to_many("few", 4)
    number = desk("--json", "ingest", "--channel", "inbox", stdin=raw).json()["ticket"]
    shown = desk("ticket", "show", str(number))
    assert "a reply goes to Casey <casey-few@example.org>, cc colleague0-few@example.org" in (
        shown.stdout
    )
    queued = desk("--json", "ticket", "reply", str(number), "--body", "Answering all of you.")
    assert queued.json()["notes"] == [] and len(queued.json()["cc"]) == 4

    relayed = sent_reply(desk, smtp_relay, queued.json()["message_id"])
    assert relayed.rcpt_tos == ["casey-few@example.org", *colleagues("few", 4)]
    assert cc_of(relayed) == colleagues("few", 4)
    assert "inbox@example.test" not in relayed.rcpt_tos  # never ourselves


def test_past_the_bound_the_reply_goes_to_the_customer_alone_and_says_so(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    number = desk("--json", "ingest", "--channel", "inbox", stdin=mail_to_many("many", 11)).json()[
        "ticket"
    ]

    before = desk("--json", "ticket", "show", str(number)).json()["reply_recipients"]
    assert before["to"] == [{"name": "Casey", "email": "casey-many@example.org"}]
    assert before["cc"] == []
    assert "11 other recipients, more than the 10" in before["notes"][0]
    human = desk("ticket", "show", str(number)).stdout
    assert "a reply goes to Casey <casey-many@example.org>\n" in human
    assert "the reply goes to the customer alone" in human

    queued = desk("ticket", "reply", str(number), "--body", "Only to you.")
    assert queued.exit_code == 0, queued.stderr
    assert "to Casey <casey-many@example.org>" in queued.stdout
    assert "more than the 10 kept as Cc" in queued.stdout

    (reply,) = [
        m
        for m in desk("--json", "ticket", "show", str(number)).json()["messages"]
        if m["direction"] == "out"
    ]
    assert "cc_limited" in reply["flags"] and reply["cc"] == []
    assert "goes to the customer alone" in reply["flag_reasons"][0]  # recorded, shown later
    relayed = sent_reply(desk, smtp_relay, reply["message_id"])
    assert relayed.rcpt_tos == ["casey-many@example.org"] and cc_of(relayed) == []


def test_the_bound_is_set_in_the_config_file(
    desk: Run, replying_inbox: tuple[str, str], isolated_home: Path
) -> None:
    config = isolated_home / "config.toml"
    config.write_text("reply_max_cc = 2\n")
    number = desk("--json", "ingest", "--channel", "inbox", stdin=mail_to_many("conf", 3)).json()[
        "ticket"
    ]
    shown = desk("--json", "ticket", "show", str(number)).json()["reply_recipients"]
    assert shown["cc"] == [] and "more than the 2 kept" in shown["notes"][0]

    config.write_text("reply_max_cc = 3\n")
    shown = desk("--json", "ticket", "show", str(number)).json()["reply_recipients"]
    assert [a["email"] for a in shown["cc"]] == colleagues("conf", 3)

    config.write_text('reply_max_cc = "lots"\n')
    refused = desk("ticket", "show", str(number))
    assert refused.exit_code == 5 and "reply_max_cc must be a whole number" in refused.stderr


def test_recipients_mail_names_that_cannot_receive_mail_are_left_out_with_the_reason(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    raw = (
        b"From: Casey <casey-odd@example.org>\r\n"
        b"To: inbox@example.test, nodomain, bell\x07@example.org\r\n"
        b"Cc: ok-odd@example.org\r\n"
        b"Subject: Who gets this?\r\nMessage-ID: <odd@example.org>\r\n\r\nHi\r\n"
    )
    _, queued = ticket_with_reply(desk, raw)
    assert queued["cc"] == [{"name": "", "email": "ok-odd@example.org"}]
    notes = queued["notes"]
    assert "left out 'nodomain': it has no domain" in notes
    assert "left out 'bell\\x07@example.org': it contains a control character" in notes
    relayed = sent_reply(desk, smtp_relay, queued["message_id"])
    assert relayed.rcpt_tos == ["casey-odd@example.org", "ok-odd@example.org"]


@pytest.mark.parametrize(
    ("cc", "reason"),
    [
        ("nodomain", "it has no domain"),
        ("someone@", "it has no domain"),
        ("bell\x07@example.org", "it contains a control character"),
        ("a b@example.org", "characters an address cannot have without quotes"),
        ("x@bad..example.org", "is not a domain"),
    ],
)
def test_an_agents_cc_that_cannot_receive_mail_is_refused_with_the_reason(
    cc: str, reason: str, desk: Run, replying_inbox: tuple[str, str]
) -> None:
    number = desk(
        "--json", "ingest", "--channel", "inbox", stdin=make_mail(sender="dee@example.org")
    ).json()["ticket"]
    desk("ticket", "show", str(number))
    refused = desk("ticket", "reply", str(number), "--body", "Hi", "--cc", cc)
    assert refused.exit_code == 2 and reason in refused.stderr, refused.stderr
    assert desk("--json", "outbox", "list").json()["outbox"] == []


def test_a_customer_address_that_cannot_receive_mail_gets_no_reply_and_no_acknowledgement(
    desk: Run, replying_inbox: tuple[str, str], tmp_path: Path
) -> None:
    ack = tmp_path / "ack.txt"
    ack.write_text("Ticket $number.\n")
    assert desk("queue", "set", "general", "--ack-file", str(ack)).exit_code == 0
    raw = b"From: evil\x01@example.org\r\nTo: inbox@example.test\r\nSubject: x\r\n\r\nHi\r\n"
    ingested = desk("--json", "ingest", "--channel", "inbox", stdin=raw).json()
    assert ingested["ack"].startswith("suppressed: the customer address")
    assert "control character" in ingested["ack"]
    desk("ticket", "show", str(ingested["ticket"]))
    refused = desk("ticket", "reply", str(ingested["ticket"]), "--body", "Hi")
    assert refused.exit_code == 2 and "cannot receive mail" in refused.stderr
    assert desk("--json", "outbox", "list").json()["outbox"] == []


def test_a_quoted_local_part_is_quoted_once_on_the_wire(
    desk: Run, replying_inbox: tuple[str, str], smtp_relay: SmtpRelay
) -> None:
    raw = make_mail(sender='John Smith <"john smith"@example.org>', to="inbox@example.test")
    number = desk("--json", "ingest", "--channel", "inbox", stdin=raw).json()["ticket"]
    desk("ticket", "show", str(number))
    queued = desk(
        "--json", "ticket", "reply", str(number), "--body", "Hi", "--cc", '"mary jane"@example.org'
    )
    assert queued.exit_code == 0, queued.stderr
    relayed = sent_reply(desk, smtp_relay, queued.json()["message_id"])
    assert relayed.rcpt_tos == ['"john smith"@example.org', '"mary jane"@example.org']
    head = relayed.raw.split(b"\r\n\r\n", 1)[0]
    assert b'To: John Smith <"john smith"@example.org>' in head
    assert b'Cc: <"mary jane"@example.org>' in head or b'Cc: "mary jane"@example.org' in head
    assert b"\\" not in head


def test_the_editor_shows_who_the_reply_goes_to(
    desk: Run, replying_inbox: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = desk("--json", "ingest", "--channel", "inbox", stdin=mail_to_many("edit", 12)).json()[
        "ticket"
    ]
    desk("ticket", "show", str(number))
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.sh"
    editor.write_text(f'#!/bin/sh\ncp "$1" {seen}\nprintf "Noted.\\n%s" "$(cat "$1")" > "$1"\n')
    editor.chmod(0o755)
    monkeypatch.setenv("VISUAL", str(editor))
    assert desk("ticket", "reply", str(number)).exit_code == 0
    template = seen.read_text()
    assert "# The reply goes to Casey <casey-edit@example.org>\n" in template
    assert "# the answered mail named 12 other recipients" in template
