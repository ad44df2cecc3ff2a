"""The team's answers show in the mailbox's Sent folder, where colleagues in Outlook see them.

An IMAP channel names ``--sent-folder FOLDER|auto``; once the SMTP server (the
test relay) has taken a reply, send-outbox appends exactly those bytes to that
folder on the real Dovecot, flagged \\Seen and dated when it went out. Filing
that fails is recorded and never costs, repeats or delays the reply.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes
from pathlib import Path

import pytest
from jobs.conftest import AddImap, AddSmtp, deskctl_process, new_user

from conftest import Run, run_sql
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.fixtures import DEFAULT_USERS
from testbed.smtp_relay import RelayedMessage, SmtpRelay

_FETCHED = re.compile(rb"FLAGS \(([^)]*)\) INTERNALDATE \"([^\"]+)\"")


def copies(
    server: Dovecot, user: tuple[str, str], folder: str
) -> list[tuple[set[str], str, bytes]]:
    """(flags, INTERNALDATE, exact bytes) of every message in ``folder``, read without touching it."""
    with server.mailbox(*user, folder=folder) as box:
        typ, data = box.client.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    found = []
    for item in data:
        if isinstance(item, tuple) and (m := _FETCHED.search(item[0])):
            found.append((set(m.group(1).decode().split()), m.group(2).decode(), item[1]))
    return found


def relayed(relay: SmtpRelay, message_id: str) -> list[RelayedMessage]:
    return [m for m in relay.messages if m.message()["Message-ID"] == f"<{message_id}>"]


def ask_and_answer(
    desk: Run, server: Dovecot, user: tuple[str, str], subject: str, channel: str = "support"
) -> dict[str, object]:
    """A customer writes to the support mailbox; fetch makes the ticket; an agent answers."""
    server.deliver(
        make_mail(subject=subject, sender="Casey <customer@example.test>", to=user[0]),
        user=user[0],
        password=user[1],
    )
    fetched = desk("--json", "fetch", "--channel", channel)
    assert fetched.exit_code == 0, fetched.stderr
    number = str(fetched.json()["channels"][0] and _newest_ticket(desk))
    desk("ticket", "show", number)
    queued = desk("--json", "ticket", "reply", number, "--body", f"About {subject}: fixed.")
    assert queued.exit_code == 0, queued.stderr
    reply: dict[str, object] = queued.json()
    return reply


def _newest_ticket(desk: Run) -> int:
    return int(desk("--json", "ticket", "list").json()["tickets"][0]["number"])


def outbox_item(desk: Run, item_id: object) -> dict[str, object]:
    (item,) = [i for i in desk("--json", "outbox", "list").json()["outbox"] if i["id"] == item_id]
    return item  # type: ignore[no-any-return]


@pytest.fixture
def support(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, add_smtp: AddSmtp
) -> Iterator[tuple[str, str]]:
    """A fresh support mailbox read over IMAP, answering through the relay as itself."""
    user = new_user(dovecot, "sent")
    add_imap("support", user, "--sent-folder", "auto")
    add_smtp("out", user)
    assert desk("channel", "map", "support", "--reply-via", "out").exit_code == 0
    yield user


def test_a_reply_is_filed_in_sent_as_the_bytes_the_server_took_seen_and_dated(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    support: tuple[str, str],
) -> None:
    reply = ask_and_answer(desk, dovecot, support, "Printer on fire")
    sent = desk("send-outbox")
    assert sent.exit_code == 0, sent.stderr
    assert (
        sent.stdout.strip()
        == "1 sent, 0 failed, 0 blocked, 0 deferred; 1 filed in Sent, 0 not filed"
    )

    (on_the_wire,) = relayed(smtp_relay, str(reply["message_id"]))
    ((flags, internaldate, raw),) = copies(dovecot, support, "Sent")
    assert raw == on_the_wire.raw  # byte for byte: no header added, none lost
    assert "\\Seen" in flags
    item = outbox_item(desk, reply["outbox"])
    assert item["sent_copy"] == "filed" and item["sent_copy_folder"] == "Sent"
    assert item["sent_copy_error"] is None
    sent_at = datetime.fromisoformat(str(item["sent_at"]))
    filed_at = datetime.strptime(internaldate, "%d-%b-%Y %H:%M:%S %z")
    assert abs((filed_at - sent_at).total_seconds()) < 1

    shown = desk("--json", "ticket", "show", str(reply["ticket"])).json()["messages"][-1]
    assert shown["sent_copy"] == "filed" and shown["sent_copy_folder"] == "Sent"
    assert "filed in Sent" in desk("ticket", "show", str(reply["ticket"]), "--no-pager").stdout
    listed = desk("outbox", "list").stdout  # a narrow table wraps the folder's name
    assert "filed in" in listed and "Sent" in listed.split("filed in", 1)[1]

    # Nothing comes back: the inbox holds only the customer's mail, and a second
    # run files nothing twice.
    again = desk("--json", "fetch")
    assert again.json()["channels"][0]["tickets_created"] == 0
    assert desk("--json", "send-outbox").json()["filed"] == 0
    assert len(copies(dovecot, support, "Sent")) == 1


def test_a_channel_reading_the_sent_folder_makes_no_ticket_of_our_copies(
    desk: Run, dovecot: Dovecot, support: tuple[str, str], add_imap: AddImap
) -> None:
    """Another channel reads the folder the first files in: our copy is our reply, stored once."""
    reply = ask_and_answer(desk, dovecot, support, "Badge reader")
    assert desk("send-outbox").exit_code == 0
    add_imap("sent-reader", support, folder="Sent")

    read = desk("--json", "fetch", "--channel", "sent-reader")
    assert read.exit_code == 0, read.stderr
    counts = read.json()["channels"][0]
    assert counts["fetched"] == 1 and counts["skipped_duplicates"] == 1
    assert counts["tickets_created"] == 0 and counts["messages_added"] == 0
    tickets = desk("--json", "ticket", "list", "--status", "all").json()["tickets"]
    assert [t["messages"] for t in tickets] == [2]
    messages = desk("--json", "ticket", "show", str(reply["ticket"])).json()["messages"]
    assert [m["direction"] for m in messages] == ["in", "out"]


@pytest.fixture(scope="module")
def outlook_named(certs: CertBundle) -> Iterator[Dovecot]:
    """A server whose Sent folder is called what Outlook calls it, marked \\Sent."""
    server = Dovecot(certs, DEFAULT_USERS, sent_mailbox="Sent Items")
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("server_name", "wanted", "folder"),
    [
        ("namespaced_dovecot", "Sent", "INBOX.Sent"),  # Courier and Cyrus: the name as shown
        ("namespaced_dovecot", "auto", "INBOX.Sent"),
        ("outlook_named", "auto", "Sent Items"),  # the folder marked \Sent, whatever its name
        ("outlook_named", "Sent", "Sent Items"),  # no folder of that name: the marked one
    ],
)
def test_the_sent_folder_is_the_servers_own_name_for_it(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    add_imap: AddImap,
    add_smtp: AddSmtp,
    request: pytest.FixtureRequest,
    server_name: str,
    wanted: str,
    folder: str,
) -> None:
    server: Dovecot = request.getfixturevalue(server_name)
    user = new_user(server, "elsewhere")
    dovecot.add_user(*user)  # the relay takes this mailbox's password too
    add_smtp("out", user)
    add_imap("support", user, "--sent-folder", wanted, "--reply-via", "out", port=server.imaps_port)
    reply = ask_and_answer(desk, server, user, "Parking permit")

    assert desk("send-outbox").exit_code == 0
    (on_the_wire,) = relayed(smtp_relay, str(reply["message_id"]))
    ((flags, _, raw),) = copies(server, user, folder)
    assert raw == on_the_wire.raw and "\\Seen" in flags
    assert outbox_item(desk, reply["outbox"])["sent_copy_folder"] == folder


def assert_sent_once_not_filed(
    desk: Run, relay: SmtpRelay, reply: dict[str, object], why: str
) -> dict[str, object]:
    """The reply went out once, the run's status is the sending's, the reason is on the item."""
    sent = desk("send-outbox")
    assert sent.exit_code == 0, sent.stderr
    assert "1 sent, 0 failed" in sent.stdout and "0 filed in Sent, 1 not filed" in sent.stdout
    (line,) = sent.stderr.strip().splitlines()
    assert line.startswith(
        f"deskctl: warning: outbox item {reply['outbox']} was sent but not filed"
    )
    assert why in line and "a later send-outbox run tries again" in line
    assert len(relayed(relay, str(reply["message_id"]))) == 1
    item = outbox_item(desk, reply["outbox"])
    assert item["state"] == "sent" and item["sent_copy"] == "due"
    assert why in str(item["sent_copy_error"])
    shown = desk("ticket", "show", str(reply["ticket"]), "--no-pager").stdout
    assert "not filed in Sent:" in shown and "[sent]" in shown
    as_json = desk("--json", "ticket", "show", str(reply["ticket"])).json()["messages"][-1]
    assert as_json["delivery"] == "sent" and why in as_json["sent_copy_error"]
    return item


def next_run_is_due(db_url: str) -> None:
    """Time passes (the retry waits at least 30 s): the copy is due again."""
    run_sql(db_url, "UPDATE outbox_items SET next_attempt_at = '2000-01-01 00:00:00+00:00'")


def test_a_missing_folder_is_recorded_and_the_next_run_files_the_copy_once_it_exists(
    desk: Run, dovecot: Dovecot, smtp_relay: SmtpRelay, support: tuple[str, str], db_url: str
) -> None:
    folder = f"Answers-{uuid.uuid4().hex[:6]}"
    assert desk("channel", "set", "support", "--sent-folder", folder).exit_code == 0
    reply = ask_and_answer(desk, dovecot, support, "Missing folder")
    assert_sent_once_not_filed(desk, smtp_relay, reply, f"sent folder '{folder}' does not exist")

    with dovecot.mailbox(*support) as box:
        box.folder.create(folder)  # the mailbox's owner makes it in their mail program
    next_run_is_due(db_url)
    retried = desk("--json", "send-outbox")
    assert retried.exit_code == 0 and retried.json()["sent"] == 0
    assert retried.json()["filed"] == 1 and retried.stderr == ""
    (on_the_wire,) = relayed(smtp_relay, str(reply["message_id"]))
    ((flags, _, raw),) = copies(dovecot, support, folder)
    assert raw == on_the_wire.raw and "\\Seen" in flags
    item = outbox_item(desk, reply["outbox"])
    assert item["sent_copy"] == "filed" and item["sent_copy_error"] is None


def test_an_imap_server_that_is_down_costs_the_copy_never_the_reply(
    desk: Run, dovecot: Dovecot, smtp_relay: SmtpRelay, add_imap: AddImap, add_smtp: AddSmtp
) -> None:
    user = new_user(dovecot, "down")
    add_imap("support", user, "--sent-folder", "Sent")
    add_smtp("out", user)
    desk("channel", "map", "support", "--reply-via", "out")
    reply = ask_and_answer(desk, dovecot, user, "Server down")
    desk("channel", "remove", "support")  # the same mailbox, now on a port nobody answers
    add_imap("support", user, "--sent-folder", "Sent", port=closed_port())
    desk("channel", "map", "support", "--reply-via", "out")
    # The ticket lost its channel with the removal: the copy goes to the channel
    # that replies through the reply's outgoing channel.
    assert_sent_once_not_filed(desk, smtp_relay, reply, "refused the connection")
    assert copies(dovecot, user, "Sent") == []


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_wrong_password_is_recorded_and_the_filtered_cc_stays_out_of_the_copy_filed_later(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    support: tuple[str, str],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What is filed later is what went out: here without the Cc the filter dropped."""
    dovecot.deliver(
        make_mail(subject="Cc'd", sender="customer@example.test", to=support[0], cc="boss@x.test"),
        user=support[0],
        password=support[1],
    )
    desk("fetch")
    number = str(_newest_ticket(desk))
    desk("ticket", "show", number)
    reply = desk("--json", "ticket", "reply", number, "--body", "Done.").json()
    assert reply["cc"] == [{"name": "", "email": "boss@x.test"}]
    # Put on the filter while the reply waits: send-outbox drops the Cc from the mail.
    assert desk("filter", "add", "boss@x.test").exit_code == 0
    monkeypatch.setenv("PW_SUPPORT", "not-the-password")
    assert_sent_once_not_filed(desk, smtp_relay, reply, "IMAP login refused")

    monkeypatch.setenv("PW_SUPPORT", support[1])
    next_run_is_due(db_url)
    retried = desk("--json", "send-outbox")
    assert retried.exit_code == 0 and retried.json()["filed"] == 1
    (on_the_wire,) = relayed(smtp_relay, str(reply["message_id"]))
    assert "boss@x.test" not in on_the_wire.rcpt_tos and b"boss@x.test" not in on_the_wire.raw
    ((_, _, raw),) = copies(dovecot, support, "Sent")
    assert raw == on_the_wire.raw


def test_one_imap_login_files_every_reply_of_a_run(
    desk: Run, dovecot: Dovecot, smtp_relay: SmtpRelay, support: tuple[str, str]
) -> None:
    replies = [ask_and_answer(desk, dovecot, support, f"Question {i}") for i in range(3)]
    logins = _logins(dovecot, support[0])
    sent = desk("--json", "send-outbox")
    assert sent.json()["sent"] == 3 and sent.json()["filed"] == 3
    assert _logins(dovecot, support[0]) == logins + 1
    filed = copies(dovecot, support, "Sent")
    assert sorted(raw for _, _, raw in filed) == sorted(
        relayed(smtp_relay, str(r["message_id"]))[0].raw for r in replies
    )


def _logins(server: Dovecot, user: str) -> int:
    log = (server.base / "dovecot.log").read_text(errors="replace")
    return len(re.findall(rf"imap-login: (?:Info: )?Login: user=<{re.escape(user)}>", log))


def test_replies_through_a_server_that_files_them_itself_get_no_second_copy(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    certs: CertBundle,
    add_imap: AddImap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gmail's SMTP files what it sends in Sent itself: deskctl files nothing there."""
    user = new_user(dovecot, "gsmtp")
    monkeypatch.setenv("GMAIL_PW", user[1])
    added = desk(
        "channel", "add-outgoing", "gmail-out", "--kind", "gmail", "--from", user[0],
        "--host", "localhost", "--port", str(smtp_relay.smtps_port), "--security", "ssl",
        "--ca-file", str(certs.ca_pem), "--password-env", "GMAIL_PW",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    add_imap("support", user, "--sent-folder", "Sent", "--reply-via", "gmail-out")
    reply = ask_and_answer(desk, dovecot, user, "Gmail")

    sent = desk("--json", "send-outbox")
    assert sent.json()["sent"] == 1 and sent.json()["filed"] == 0
    assert len(relayed(smtp_relay, str(reply["message_id"]))) == 1
    assert outbox_item(desk, reply["outbox"])["sent_copy"] is None
    assert copies(dovecot, user, "Sent") == []


def test_a_sent_folder_is_refused_where_deskctl_would_not_be_the_one_to_file(
    desk: Run, add_imap: AddImap, dovecot: Dovecot, tmp_path: object
) -> None:
    gmail = desk(
        "channel", "add", "g", "--kind", "gmail", "--address", "g@example.test",
        "--password-env", "X", "--sent-folder", "auto",
    )  # fmt: skip
    assert gmail.exit_code == 2 and "Gmail files the mail it sends in Sent itself" in gmail.stderr
    for kind, extra in (("pipe", ()), ("maildir", ("--path", str(tmp_path)))):
        refused = desk(
            "channel", "add", kind, "--kind", kind, "--address", f"{kind}@example.test",
            *extra, "--sent-folder", "Sent",
        )  # fmt: skip
        assert refused.exit_code == 2 and "is for IMAP channels" in refused.stderr, kind
    user = new_user(dovecot, "refuse")
    add_imap("support", user)
    same = desk("channel", "set", "support", "--sent-folder", "inbox")
    assert same.exit_code == 2 and "is the folder fetch reads" in same.stderr
    desk("channel", "add", "p", "--kind", "pipe", "--address", "p@example.test")
    assert desk("channel", "set", "p", "--sent-folder", "auto").exit_code == 2

    assert desk("channel", "set", "support", "--sent-folder", "auto").exit_code == 0
    assert desk("--json", "channel", "show", "support").json()["sent_folder"] == "auto"
    assert desk("channel", "set", "support", "--no-sent-folder").exit_code == 0
    assert desk("--json", "channel", "show", "support").json()["sent_folder"] is None
    assert desk("channel", "set", "support").exit_code == 2


def test_after_four_days_deskctl_gives_up_and_outbox_retry_files_the_copy_later(
    desk: Run, dovecot: Dovecot, smtp_relay: SmtpRelay, support: tuple[str, str], db_url: str
) -> None:
    folder = f"Later-{uuid.uuid4().hex[:6]}"
    desk("channel", "set", "support", "--sent-folder", folder)
    reply = ask_and_answer(desk, dovecot, support, "Four days")
    assert_sent_once_not_filed(desk, smtp_relay, reply, "does not exist")
    run_sql(db_url, "UPDATE outbox_items SET sent_at = '2000-01-01 00:00:00+00:00'")
    next_run_is_due(db_url)

    gave_up = desk("send-outbox")
    assert gave_up.exit_code == 0 and "(deskctl gave up)" in gave_up.stderr
    item = outbox_item(desk, reply["outbox"])
    assert item["sent_copy"] == "failed" and "gave up" in str(item["sent_copy_error"])
    assert desk("--json", "send-outbox").json()["not_filed"] == []  # no longer tried

    with dovecot.mailbox(*support) as box:
        box.folder.create(folder)
    retried = desk("outbox", "retry", str(reply["outbox"]))
    assert retried.exit_code == 0 and "the reply is not sent again" in retried.stdout
    assert desk("--json", "send-outbox").json() == {
        "sent": 0, "failed": 0, "blocked": 0, "deferred": 0, "errors": [],
        "filed": 1, "not_filed": [],
    }  # fmt: skip
    assert len(relayed(smtp_relay, str(reply["message_id"]))) == 1
    ((_, _, raw),) = copies(dovecot, support, folder)
    assert raw == relayed(smtp_relay, str(reply["message_id"]))[0].raw


def test_channel_test_names_the_sent_folder_or_says_how_to_fix_it(
    desk: Run, support: tuple[str, str]
) -> None:
    tested = desk("--json", "channel", "test", "support")
    assert tested.exit_code == 0, tested.stderr
    assert tested.json()["sent_folder"] == {
        "name": "Sent", "exists": True, "how": "the folder marked \\Sent",
    }  # fmt: skip
    assert "replies are filed in Sent" in tested.json()["summary"]
    desk("channel", "set", "support", "--sent-folder", "Nowhere")
    broken = desk("channel", "test", "support")
    assert broken.exit_code == 5
    assert "sent folder 'Nowhere' does not exist" in broken.stderr
    assert "deskctl channel set support --sent-folder FOLDER|auto" in broken.stderr


def test_an_office_365_mailbox_replying_through_exchange_is_told_exchange_files_it(
    desk: Run,
) -> None:
    added = desk(
        "channel", "add", "office", "--kind", "o365", "--address", "help@contoso.test",
        "--client-id", "app", "--sent-folder", "auto",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert "replies via office-smtp get no copy from deskctl: Exchange Online" in added.stderr
    assert desk("--json", "channel", "show", "office").json()["sent_folder"] == "auto"


def test_two_runs_at_once_file_each_waiting_copy_once(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    support: tuple[str, str],
    db_url: str,
    tmp_path: Path,
) -> None:
    folder = f"Busy-{uuid.uuid4().hex[:6]}"
    desk("channel", "set", "support", "--sent-folder", folder)
    files = []
    for i in range(30):
        files.append(tmp_path / f"{i}.eml")
        files[-1].write_bytes(make_mail(subject=f"q{i}", sender=f"c{i}@example.org", to=support[0]))
    assert desk("ingest", "--channel", "support", *map(str, files)).exit_code == 0
    for number in range(1, 31):
        assert desk("ticket", "reply", str(number), "--body", "Thanks", "--force").exit_code == 0
    first = desk("--json", "send-outbox").json()
    assert first["sent"] == 30 and len(first["not_filed"]) == 30  # no such folder yet

    with dovecot.mailbox(*support) as box:
        box.folder.create(folder)
    next_run_is_due(db_url)
    procs = [deskctl_process("--json", "send-outbox") for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum(json.loads(out)["filed"] for out, _ in outputs) == 30
    filed = [
        message_from_bytes(raw)["Message-ID"] for _, _, raw in copies(dovecot, support, folder)
    ]
    assert len(filed) == len(set(filed)) == 30
    assert all(len(relayed(smtp_relay, mid.strip("<>"))) == 1 for mid in filed)
