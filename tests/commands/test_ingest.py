"""A mail server pipes mail into deskctl; each message becomes a ticket or joins one."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
from peakrss import run_deskctl_measured

from conftest import Run, ingested
from mailfactory import delivered_again, make_mail


def write(tmp_path: Path, name: str, raw: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


def test_a_new_mail_becomes_a_ticket_with_customer_body_and_attachment(
    desk: Run, tmp_path: Path
) -> None:
    raw = make_mail(
        subject="=?utf-8?q?Drucker_f=C3=A4llt_aus?=",
        sender='"Lovelace, Ada" <Ada@Example.ORG>',
        cc="Bob <bob@example.org>",
        attachments=[("report.pdf", "application/pdf", b"%PDF-1.4 fake")],
    )
    result = desk("--json", "ingest", write(tmp_path, "a.eml", raw))
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["created"] is True and doc["duplicate"] is False
    assert doc["title"] == "Drucker fällt aus"
    assert doc["from"] == {"name": "Lovelace, Ada", "email": "ada@example.org"}

    shown = desk("--json", "ticket", "show", str(doc["ticket"])).json()
    assert shown["customer"] == {"name": "Lovelace, Ada", "email": "ada@example.org"}
    assert shown["queue"] == "general" and shown["status"] == "new"
    (message,) = shown["messages"]
    assert "on fire again" in message["body"]
    assert message["cc"] == [{"name": "Bob", "email": "bob@example.org"}]
    (att,) = message["attachments"]
    assert att["filename"] == "report.pdf" and att["size"] == len(b"%PDF-1.4 fake")
    assert len(att["sha256"]) == 64


def test_one_message_on_stdin_like_a_mail_server_alias(desk: Run) -> None:
    result = desk("--json", "ingest", stdin=make_mail(subject="Piped in"))
    assert result.exit_code == 0, result.stderr
    assert result.json()["title"] == "Piped in"


def test_ingesting_the_same_mail_twice_adds_nothing(desk: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "a.eml", make_mail(message_id="<once@example.org>"))
    first = desk("--json", "ingest", path).json()
    second = desk("--json", "ingest", path).json()
    assert second["duplicate"] is True and second["created"] is False
    assert second["ticket"] == first["ticket"] and second["message"] == first["message"]
    tickets = desk("--json", "ticket", "list").json()["tickets"]
    assert len(tickets) == 1 and tickets[0]["messages"] == 1


def test_a_mail_without_message_id_is_deduplicated_by_its_bytes(desk: Run, tmp_path: Path) -> None:
    raw = b"From: a@example.org\r\nSubject: no id\r\n\r\nbody\r\n"
    path = write(tmp_path, "a.eml", raw)
    desk("ingest", path)
    assert desk("--json", "ingest", path).json()["duplicate"] is True


def test_a_reply_chain_threads_by_references_and_by_token(desk: Run) -> None:
    first = ingested(desk, make_mail(message_id="<q1@example.org>"))
    by_refs = make_mail(
        subject="Re: Printer on fire",
        message_id="<q2@example.org>",
        in_reply_to="<q1@example.org>",
        references="<q1@example.org>",
    )
    second = ingested(desk, by_refs)
    assert second["ticket"] == first["ticket"] and second["rule"] == "references"

    by_token = make_mail(
        subject=f"Still burning [#{first['ticket']}]", message_id="<q3@example.org>"
    )
    third = ingested(desk, by_token)
    assert third["ticket"] == first["ticket"] and third["rule"] == "token"

    shown = desk("--json", "ticket", "show", str(first["ticket"])).json()
    assert [m["message_id"] for m in shown["messages"]] == [
        "q1@example.org",
        "q2@example.org",
        "q3@example.org",
    ]


def test_someone_on_cc_may_answer_by_token(desk: Run, tmp_path: Path) -> None:
    first = desk(
        "--json", "ingest", write(tmp_path, "1.eml", make_mail(cc="bob@example.org"))
    ).json()
    reply = make_mail(subject=f"Re: [#{first['ticket']}]", sender="bob@example.org")
    assert (
        desk("--json", "ingest", write(tmp_path, "2.eml", reply)).json()["ticket"]
        == first["ticket"]
    )


def test_a_stranger_using_a_token_gets_a_new_ticket(desk: Run, tmp_path: Path) -> None:
    first = desk("--json", "ingest", write(tmp_path, "1.eml", make_mail())).json()
    hijack = make_mail(subject=f"Please add me [#{first['ticket']}]", sender="mallory@evil.example")
    second = desk("--json", "ingest", write(tmp_path, "2.eml", hijack)).json()
    assert second["created"] is True and second["ticket"] != first["ticket"]
    assert second["rule"] == "token-untrusted"


def test_a_customer_answer_reopens_a_solved_ticket(desk: Run, tmp_path: Path, db_url: str) -> None:
    from sqlalchemy import create_engine, text

    first = desk(
        "--json", "ingest", write(tmp_path, "1.eml", make_mail(message_id="<r1@x>"))
    ).json()
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE tickets SET status='solved'"))
    desk("ingest", write(tmp_path, "2.eml", make_mail(in_reply_to="<r1@x>", message_id="<r2@x>")))
    assert desk("--json", "ticket", "show", str(first["ticket"])).json()["status"] == "open"


def test_an_attachment_cannot_escape_its_folder_by_name(desk: Run, tmp_path: Path) -> None:
    raw = make_mail(attachments=[("../../etc/passwd", "text/plain", b"root:x:0:0")])
    doc = desk("--json", "ingest", write(tmp_path, "a.eml", raw)).json()
    shown = desk("--json", "ticket", "show", str(doc["ticket"])).json()
    (att,) = shown["messages"][0]["attachments"]
    assert "/" not in att["filename"] and "\\" not in att["filename"]
    assert ".." not in att["filename"] and att["filename"]


def test_identical_attachments_are_stored_once(desk: Run, tmp_path: Path, db_url: str) -> None:
    from sqlalchemy import create_engine, text

    blob = b"\x89PNG" + bytes(range(256)) * 40
    for i in range(3):
        desk(
            "ingest",
            write(tmp_path, f"{i}.eml", make_mail(attachments=[("logo.png", "image/png", blob)])),
        )
    with create_engine(db_url).connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM blobs")) == 1
        assert conn.scalar(text("SELECT count(*) FROM attachments")) == 3


def test_malformed_mail_is_quarantined_the_run_goes_on_and_exits_partial(
    desk: Run, tmp_path: Path
) -> None:
    junk = b"\x00\x01\x02 this is not a mail \x00"
    good = make_mail(subject="Good one")
    result = desk(
        "--json", "ingest", write(tmp_path, "junk.eml", junk), write(tmp_path, "good.eml", good)
    )
    assert result.exit_code == 7
    bad_doc, good_doc = result.json()
    assert bad_doc["quarantined"] and "parse" in bad_doc["reason"]
    assert good_doc["title"] == "Good one"

    listed = desk("--json", "quarantine", "list").json()["quarantine"]
    assert [q["id"] for q in listed] == [bad_doc["quarantined"]]
    raw = desk("quarantine", "show", str(bad_doc["quarantined"]), "--raw")
    assert raw.stdout.encode() == junk


def test_a_quarantined_mail_is_stored_by_retry_after_a_fix(desk: Run, tmp_path: Path) -> None:
    bad = desk("--json", "ingest", write(tmp_path, "junk.eml", b"\x00\x00")).json()
    still = desk("--json", "quarantine", "retry", str(bad["quarantined"]))
    assert still.exit_code == 7 and still.json()["quarantined"]

    fixed = write(tmp_path, "fixed.eml", make_mail(subject="Repaired by hand"))
    result = desk("--json", "quarantine", "retry", str(bad["quarantined"]), "--file", fixed)
    assert result.exit_code == 0, result.stderr
    assert result.json()["title"] == "Repaired by hand"
    assert desk("--json", "quarantine", "list").json()["quarantine"] == []


def test_mail_over_the_size_limit_is_quarantined_not_dropped(desk: Run, tmp_path: Path) -> None:
    raw = make_mail(attachments=[("big.bin", "application/octet-stream", b"x" * 5000)])
    result = desk("--json", "ingest", "--max-size", "1000", write(tmp_path, "big.eml", raw))
    assert result.exit_code == 7 and "over the limit" in result.json()["reason"]


def test_dry_run_shows_the_outcome_and_stores_nothing(desk: Run, tmp_path: Path) -> None:
    doc = desk("--json", "ingest", "--dry-run", write(tmp_path, "a.eml", make_mail())).json()
    assert doc["created"] is True
    assert desk("--json", "ticket", "list").json()["tickets"] == []


def test_an_unknown_channel_is_a_clear_not_found(desk: Run) -> None:
    result = desk("ingest", "--channel", "nope", stdin=make_mail())
    assert result.exit_code == 3
    assert result.stderr.startswith("deskctl: error: no incoming channel named 'nope'")


def test_a_missing_file_is_a_usage_error(desk: Run, tmp_path: Path) -> None:
    result = desk("ingest", str(tmp_path / "nowhere.eml"))
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_a_mail_server_alias_keeps_mail_when_deskctl_cannot_store_it(
    desk: Run, db_url: str
) -> None:
    from sqlalchemy import create_engine, text

    kept = desk("ingest", "--mta", stdin=b"\x00\x01 junk")
    assert kept.exit_code == 0, "quarantined mail is kept: the mail server must not bounce it"
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    retry = desk("ingest", "--mta", stdin=make_mail())
    assert retry.exit_code == 75 and "will retry" in retry.stderr
    assert desk("ingest", stdin=make_mail()).exit_code == 5


def test_one_mail_sent_to_two_support_inboxes_is_one_ticket(desk: Run) -> None:
    for name in ("sales", "support"):
        desk("channel", "add", name, "--kind", "pipe", "--address", f"{name}@example.test")
    mail = make_mail(to="sales@example.test, support@example.test", message_id="<both@x>")
    first = ingested(desk, mail, "--channel", "sales")
    second = ingested(desk, mail, "--channel", "support")
    assert second["duplicate"] is True and second["ticket"] == first["ticket"]
    assert len(desk("--json", "ticket", "list").json()["tickets"]) == 1


def test_escapes_in_a_quoted_header_never_reach_the_terminal(desk: Run) -> None:
    evil = make_mail(headers={"X-Deskctl-Loop": "\x1b]0;pwned\x07 \x1b[2J"}, message_id="<evil@x>")
    result = desk("-v", "ingest", stdin=evil)
    assert result.exit_code == 7
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stderr
    assert "own mail" in result.stdout


def test_a_file_name_with_a_newline_cannot_forge_an_output_log_or_quarantine_line(
    desk: Run, tmp_path: Path
) -> None:
    forged = write(tmp_path, "junk\nreason: all fine.eml", b"\x00\x01 junk")
    result = desk("ingest", forged)
    assert result.exit_code == 7
    escaped = forged.replace("\n", "\\n")
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{escaped}: quarantined as 1: cannot parse")
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(
        f"deskctl: WARNING: deskctl.jobs.pipeline: quarantined message 1 from {escaped}: "
    )
    shown = desk("quarantine", "show", "1").stdout.splitlines()
    assert f"source: {escaped}" in shown
    assert [line.partition(":")[0] for line in shown].count("reason") == 1


def raw_mail(headers: bytes, body: bytes = b"hello\r\n") -> bytes:
    return (
        b"To: support@example.test\r\nDate: Mon, 2 Nov 2026 09:30:00 +0000\r\n"
        + headers
        + b"\r\n"
        + body
    )


def mixed(headers: bytes, part_headers: bytes) -> bytes:
    return raw_mail(
        headers + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        + part_headers
        + b"\r\ndata\r\n--b--\r\n",
    )


LONG_ID = "<" + "秘" * 990 + "@example.org>"  # 2,970 bytes: beyond a PostgreSQL index row
HOSTILE = {
    "long Message-ID": raw_mail(
        b"From: a@example.org\r\nMessage-ID: " + LONG_ID.encode() + b"\r\n"
    ),
    "long From address": raw_mail(b"From: " + b"b" * 400 + b"@example.org\r\n"),
    "long display name": raw_mail(b"From: " + b"N" * 500 + b" <c@example.org>\r\n"),
    "long Content-Type": mixed(
        b"From: d@example.org\r\n",
        b"Content-Type: application/" + b"x" * 400 + b"\r\nContent-ID: <" + b"c" * 1200 + b">\r\n",
    ),
    "NUL in a part header": mixed(
        b"From: e@example.org\r\n",
        b"Content-Type: application/x\x00y\r\nContent-ID: <i\x00d>\r\n"
        b'Content-Disposition: attachment; filename="f\x00g.txt"\r\n',
    ),
    "lone surrogate from UTF-7": raw_mail(
        b"From: =?utf-7?q?Ren+2D0-?= <f@example.org>\r\nSubject: =?utf-7?q?a+2D0-b?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-7\r\n",
        b"x+2D0-y\r\n",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_values_the_schema_cannot_hold_still_make_a_ticket_on_either_backend(
    desk: Run, case: str
) -> None:
    raw = HOSTILE[case]
    result = desk("--json", "ingest", stdin=raw)
    assert result.exit_code == 0, result.stdout
    doc = result.json()
    assert doc["created"] is True
    kept = desk("ticket", "show", str(doc["ticket"]), "--raw", str(doc["message"]))
    assert kept.stdout.encode() == raw  # the raw source is kept whole
    shown = desk("--json", "ticket", "show", str(doc["ticket"])).json()["messages"][0]
    assert len(shown["from"]["email"]) <= 320 and len(shown["from"]["name"]) <= 320
    for att in shown["attachments"]:
        assert len(att["content_type"]) <= 255 and "\x00" not in att["content_type"]
    assert "\ud800" not in shown["body"] + shown["subject"] + shown["from"]["name"]
    again = ingested(desk, raw)
    assert again["duplicate"] is True and again["ticket"] == doc["ticket"]


def test_a_cut_message_id_still_threads_the_answer_to_it(desk: Run) -> None:
    first = ingested(desk, HOSTILE["long Message-ID"])
    answer = raw_mail(
        b"From: a@example.org\r\nSubject: more\r\nMessage-ID: <more@x>\r\n"
        b"In-Reply-To: " + LONG_ID.encode() + b"\r\nReferences: " + LONG_ID.encode() + b"\r\n"
    )
    joined = ingested(desk, answer)
    assert joined["ticket"] == first["ticket"] and joined["rule"] in ("in-reply-to", "references")


def test_a_different_mail_reusing_a_stored_message_id_is_a_ticket_of_its_own(
    desk: Run, tmp_path: Path
) -> None:
    first = ingested(desk, make_mail(message_id="<claim@example.org>"))
    other = make_mail(
        subject="Invoice 4711 is wrong",
        sender="Grace Hopper <grace@example.net>",
        body="Please correct the invoice.\n",
        message_id="<claim@example.org>",
    )
    result = desk("--json", "ingest", write(tmp_path, "other.eml", other))
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["created"] is True and doc["duplicate"] is False
    assert doc["ticket"] != first["ticket"] and doc["rule"] == "new"
    assert "message_id_reused" in doc["flags"]
    (reason,) = [r for r in doc["flag_reasons"] if "reused" in r]
    assert "<claim@example.org>" in reason and f"ticket #{first['ticket']}" in reason

    shown = desk("--json", "ticket", "show", str(doc["ticket"])).json()
    assert shown["customer"]["email"] == "grace@example.net"
    (message,) = shown["messages"]
    assert message["message_id"] == "claim@example.org" and "correct the invoice" in message["body"]
    assert "message_id_reused" in message["flags"]
    human = desk("ticket", "show", str(doc["ticket"])).stdout
    assert "Message-ID reused" in human
    assert len(desk("--json", "ticket", "show", str(first["ticket"])).json()["messages"]) == 1

    again = desk("--json", "ingest", write(tmp_path, "other.eml", other)).json()
    assert again["duplicate"] is True and again["message"] == doc["message"]
    assert len(desk("--json", "ticket", "list").json()["tickets"]) == 2


def test_a_copy_delivered_again_through_other_servers_is_still_a_duplicate(desk: Run) -> None:
    raw = make_mail(message_id="<copy@example.org>", body="Grüße, der Drucker brennt.\n")
    first = ingested(desk, raw)
    again = ingested(desk, delivered_again(raw))
    assert again["duplicate"] is True and again["message"] == first["message"]

    # A relay without 8BITMIME re-encodes the text: the content is the same mail.
    eight_bit = (
        b"From: Ada <ada@example.org>\nTo: support@example.test\nSubject: Umlaute\n"
        b"Date: Mon, 02 Nov 2026 09:30:00 +0000\nMessage-ID: <8bit@example.org>\n"
        b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: 8bit\n\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln   \n"
    )
    quoted = eight_bit.replace(b"8bit\n\n", b"quoted-printable\n\n").replace(
        b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln   \n", b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln\n"
    )
    stored = ingested(desk, eight_bit)
    recoded = ingested(desk, delivered_again(quoted))
    assert recoded["duplicate"] is True and recoded["message"] == stored["message"]
    assert len(desk("--json", "ticket", "list").json()["tickets"]) == 2


def test_one_mail_read_from_two_inboxes_after_two_deliveries_is_one_ticket(desk: Run) -> None:
    for name in ("sales", "support"):
        desk("channel", "add", name, "--kind", "pipe", "--address", f"{name}@example.test")
    mail = make_mail(to="sales@example.test, support@example.test", message_id="<twice@x>")
    first = ingested(desk, mail, "--channel", "support")
    second = ingested(desk, delivered_again(mail), "--channel", "sales")
    assert second["duplicate"] is True and second["ticket"] == first["ticket"]
    assert "message_id_reused" not in second["flags"]
    assert len(desk("--json", "ticket", "list").json()["tickets"]) == 1


def test_mail_reusing_an_id_threads_like_any_mail_never_by_that_id(
    desk: Run, tmp_path: Path
) -> None:
    original = ingested(desk, make_mail(message_id="<orig@example.org>"))
    other = ingested(
        desk, make_mail(sender="bob@example.net", subject="VPN", message_id="<vpn@example.net>")
    )

    # A broken mailer reuses its ids, In-Reply-To naming the id itself included.
    own_id = make_mail(
        subject="Something else",
        body="A new question.\n",
        message_id="<orig@example.org>",
        in_reply_to="<orig@example.org>",
    )
    alone = ingested(desk, own_id)
    assert alone["created"] is True and alone["ticket"] not in (original["ticket"], other["ticket"])
    assert "message_id_reused" in alone["flags"]

    by_refs = make_mail(
        sender="bob@example.net",
        subject="Re: VPN",
        body="It still drops.\n",
        message_id="<orig@example.org>",
        references="<vpn@example.net>",
    )
    joined = ingested(desk, by_refs)
    assert joined["ticket"] == other["ticket"] and joined["rule"] == "references"
    assert "message_id_reused" in joined["flags"]

    by_token = make_mail(
        sender="bob@example.net",
        subject=f"Re: VPN [#{other['ticket']}]",
        body="And once more.\n",
        message_id="<orig@example.org>",
    )
    token = ingested(desk, by_token)
    assert token["ticket"] == other["ticket"] and token["rule"] == "token"

    # An answer to the id belongs with the mail that had it first, not with a reuser.
    answer = make_mail(
        subject="Re: Printer on fire",
        message_id="<answer@example.org>",
        in_reply_to="<orig@example.org>",
    )
    answered = desk("--json", "ingest", write(tmp_path, "answer.eml", answer)).json()
    assert answered["ticket"] == original["ticket"] and answered["rule"] == "references"


def test_long_message_ids_that_share_900_characters_stay_two_mails(desk: Run) -> None:
    stem = "a" * 900
    docs = [
        ingested(desk, make_mail(message_id=f"<{stem}{tail}@example.org>"))
        for tail in ("-first", "-second")
    ]
    assert [d.get("created") for d in docs] == [True, True], docs
    assert docs[0]["ticket"] != docs[1]["ticket"]
    assert not any("message_id_reused" in d["flags"] for d in docs)
    shown = desk("--json", "ticket", "show", str(docs[1]["ticket"])).json()
    assert shown["messages"][0]["message_id"] == f"{stem}-second@example.org"
    again = desk("--json", "ingest", stdin=make_mail(message_id=f"<{stem}-second@example.org>"))
    assert again.json()["duplicate"] is True and again.json()["message"] == docs[1]["message"]


def acknowledging(desk: Run, tmp_path: Path, queue: str = "general") -> None:
    ack = tmp_path / "ack.txt"
    ack.write_text("We received your mail as ticket $number.\n")
    assert desk("queue", "set", queue, "--ack-file", str(ack)).exit_code == 0


def named_command(message: str) -> list[str]:
    """The deskctl command an error message tells the user to run."""
    found = re.search(r"`deskctl ([^`]+)`", message)
    assert found, f"no command named in {message!r}"
    return shlex.split(found.group(1))


def test_an_acknowledging_queue_keeps_mail_it_cannot_answer_and_names_the_fix(
    desk: Run, tmp_path: Path, db_url: str
) -> None:
    from sqlalchemy import create_engine, text

    acknowledging(desk, tmp_path)
    stray = make_mail(to="someone@elsewhere.example", message_id="<stray@example.org>")
    result = desk("--json", "ingest", "--mta", stdin=stray)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["created"] is True and doc["channel"] is None
    assert doc["ack"].startswith("not sent: ") and "no From address" in doc["ack"]
    with create_engine(db_url).connect() as conn:
        recorded = conn.scalar(text("SELECT new FROM ticket_events WHERE kind = 'ack'"))
    assert recorded == doc["ack"], "the ticket's record keeps the whole reason"

    explained = desk("explain", write(tmp_path, "next.eml", make_mail(subject="Next one")))
    said = " ".join(explained.stdout.split())
    assert "acknowledgement: not sent: outgoing channel 'local' has no From address" in said
    assert "`deskctl channel set-from local" in said
    human = desk("ingest", write(tmp_path, "human.eml", make_mail(subject="Human output")))
    assert human.exit_code == 0 and "acknowledgement not sent" in human.stderr

    number = str(doc["ticket"])
    desk("ticket", "show", number)
    refused = desk("ticket", "reply", number, "--body", "We are on it.")
    assert refused.exit_code == 5
    fix = named_command(refused.stderr)
    assert fix == named_command(doc["ack"])
    assert desk(*fix).exit_code == 0, "the command the error names must work as written"

    replied = desk("--json", "ticket", "reply", number, "--body", "We are on it.")
    assert replied.exit_code == 0, replied.stderr
    later = ingested(desk, make_mail(subject="Another one"))
    assert later["ack"] == "sent"
    ack = desk("--json", "ticket", "show", str(later["ticket"])).json()["messages"][-1]
    assert ack["direction"] == "out" and ack["from"]["email"] == "support@example.com"
    assert len(desk("--json", "outbox", "list").json()["outbox"]) == 2


def test_mail_without_channel_is_filed_under_the_support_address_it_was_sent_to(
    desk: Run, tmp_path: Path
) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "support@example.test")
    desk("channel", "add", "sales", "--kind", "pipe", "--address", "Sales@Example.test")
    desk("queue", "add", "deals")
    desk("channel", "add", "deals", "--kind", "pipe", "--address", "deals@example.test",
         "--queue", "deals")  # fmt: skip
    acknowledging(desk, tmp_path, "deals")

    to_sales = ingested(desk, make_mail(to="Sales <sales@example.test>"))
    assert to_sales["channel"] == "sales" and to_sales["queue"] == "general"
    forwarded = make_mail(
        to="all-staff@lists.example.test",
        cc="boss@example.org",
        headers={"Delivered-To": "deals@example.test"},
    )
    result = desk("ingest", write(tmp_path, "fwd.eml", forwarded))
    assert result.exit_code == 0 and "on channel deals" in result.stdout
    doc = desk("--json", "ticket", "list", "--queue", "deals").json()["tickets"]
    (ticket,) = doc
    shown = desk("--json", "ticket", "show", str(ticket["id"])).json()
    assert shown["channel"] == "deals"
    ack = shown["messages"][-1]
    assert ack["direction"] == "out" and ack["from"]["email"] == "deals@example.test"


def test_lookups_by_message_id_still_find_our_own_mail_and_one_raw_source(desk: Run) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "support@example.test")
    number = str(
        desk(
            "--json", "ingest", "--channel", "support", stdin=make_mail(message_id="<q@x>")
        ).json()["ticket"]
    )
    desk("ticket", "show", number)
    reply = desk("--json", "ticket", "reply", number, "--body", "On our way.").json()
    ours = desk("ticket", "show", number, "--raw", str(reply["message"])).stdout.encode()

    # Our reply comes back (a Bcc to the inbox, a Sent folder read as mail): it is the
    # reply itself, never a second message (issue 15).
    back = ingested(desk, delivered_again(ours), "--channel", "support")
    assert back["ticket"] == int(number) and back["duplicate"] is True
    assert back["message"] == reply["message"] and "message_id_reused" not in back["flags"]
    again = ingested(desk, delivered_again(ours), "--channel", "support")
    assert again["duplicate"] is True and again["message"] == reply["message"]
    conversation = desk("--json", "ticket", "show", number).json()["messages"]
    assert [m["direction"] for m in conversation] == ["in", "out"]

    # Another mail reusing the customer's id on the same ticket: --raw by that id asks for ours.
    reuser = make_mail(subject=f"Re: [#{number}]", body="One more thing.\n", message_id="<q@x>")
    joined = ingested(desk, reuser, "--channel", "support")
    assert joined["ticket"] == int(number) and "message_id_reused" in joined["flags"]
    ambiguous = desk("ticket", "show", number, "--raw", "<q@x>")
    assert ambiguous.exit_code == 2 and f", {joined['message']} of ticket" in ambiguous.stderr
    shown = desk("ticket", "show", number, "--raw", str(joined["message"]))
    assert shown.exit_code == 0 and "One more thing." in shown.stdout


def test_a_200_mb_mail_on_stdin_is_spooled_in_chunks_never_held_in_memory(
    desk: Run, isolated_home: Path
) -> None:
    head = make_mail(subject="Disk image", body="see below\n").replace(b"\n", b"\r\n")
    line = b"A" * 76 + b"\r\n"
    block = line * (1024 * 1024 // len(line))
    count = 200 * 1000 * 1000 // len(block)
    digest = hashlib.sha256(head)
    for _ in range(count):
        digest.update(block)

    run = run_deskctl_measured(
        "--json", "ingest", "--max-size", "1000000", stdin=[head, *([block] * count)]
    )
    assert run.exit_code == 7, run.stdout
    assert run.peak_mib < 120, f"peak RSS {run.peak_mib:.0f} MiB for a 200 MB mail"

    (spooled,) = (isolated_home / "spool").iterdir()
    assert (isolated_home / "spool").stat().st_mode & 0o777 == 0o700
    sent = len(head) + count * len(block)
    assert spooled.stat().st_mode & 0o777 == 0o600 and spooled.stat().st_size == sent
    copy = hashlib.sha256()
    with spooled.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            copy.update(chunk)
    assert copy.hexdigest() == digest.hexdigest(), "the spool holds every byte, unchanged"
    (item,) = desk("--json", "quarantine", "list").json()["quarantine"]
    assert item["size"] == sent and item["sender"] == "ada@example.org"
    assert item["subject"] == "Disk image" and item["kept"] == f"spool file {spooled}"

    shown = run_deskctl_measured("quarantine", "show", str(item["id"]), "--raw", digest=True)
    assert shown.exit_code == 0 and shown.stdout == digest.hexdigest().encode()
    assert shown.peak_mib < 120, f"show --raw: peak RSS {shown.peak_mib:.0f} MiB"


def test_a_mail_of_four_hundred_thousand_empty_parts_is_quarantined_in_little_memory(
    desk: Run,
) -> None:
    """Each MIME part costs the parser about 350 bytes of objects for 7 bytes of
    mail: 2.8 MB of ``--B`` lines took 210 MB and 15 seconds, and a mail at the
    25 MiB limit gigabytes. Past 10,000 parts the parse stops and the mail is kept
    in the quarantine, like one nested too deeply."""
    head = (
        b"From: eve-parts@example.org\r\nTo: support@example.test\r\nSubject: parts\r\n"
        b"Message-ID: <parts@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
    )
    run = run_deskctl_measured(
        "--json", "ingest", stdin=[head, b"--B\r\n\r\n" * 400_000, b"--B--\r\n"]
    )
    assert run.exit_code == 7, run.stdout
    assert json.loads(run.stdout)["reason"] == "cannot parse: more than 10000 MIME parts"
    assert run.peak_mib < 120, f"peak RSS {run.peak_mib:.0f} MiB for a 2.8 MB mail"
    (item,) = desk("--json", "quarantine", "list").json()["quarantine"]
    assert item["reason"] == "cannot parse: more than 10000 MIME parts"


def test_a_100_kb_subject_makes_a_short_title_and_stays_whole_in_the_source(desk: Run) -> None:
    """A subject is the sender's to make any length; the list and our reply are ours."""
    subject = " ".join(f"word{i:05d}" for i in range(10_000))  # 100 KB, folded by the sender
    created = desk("--json", "ingest", stdin=make_mail(subject=subject))
    assert created.exit_code == 0, created.stderr
    title = created.json()["title"]
    assert len(title) == 255 and title.endswith("…"), len(title)
    assert subject.startswith(title.removesuffix("…"))
    (listed,) = desk("--json", "ticket", "list").json()["tickets"]
    assert listed["title"] == title
    message = desk("--json", "ticket", "show", str(listed["id"])).json()["messages"][0]
    raw = desk("ticket", "show", str(listed["id"]), "--raw", str(message["id"]))
    assert " ".join(raw.stdout.split()).count(subject) == 1, "the raw source keeps it whole"
