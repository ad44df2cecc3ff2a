"""A team points deskctl at its support inboxes; cron turns their mail into tickets.

Every story runs against a real Dovecot over IMAPS, verified with the test CA.
"""

from __future__ import annotations

import json

import pytest
from jobs.conftest import (
    FORWARDED,
    SALES,
    SUPPORT,
    AddImap,
    big_mail,
    count,
    deskctl_process,
    fetch_over_the_limit,
    fill,
    kill_while_storing,
    left_alone_until_retried,
    retry_under_a_higher_limit,
)
from peakrss import run_deskctl_measured
from sqlalchemy import create_engine, text

from conftest import Run
from mailfactory import delivered_again, make_mail
from testbed.dovecot import Dovecot


def mails(n: int, tag: str, **kwargs: str) -> list[bytes]:
    return [
        make_mail(subject=f"{tag} question {i}", message_id=f"<{tag}-{i}@example.org>", **kwargs)
        for i in range(n)
    ]


def test_two_inboxes_become_tickets_in_their_own_queues(
    desk: Run, dovecot: Dovecot, add_imap: AddImap
) -> None:
    sales_folder = dovecot.create_folder(*SALES)
    support_folder = dovecot.create_folder(*SUPPORT)
    fill(dovecot, SUPPORT, support_folder, mails(3, "sup"))
    fill(dovecot, SALES, sales_folder, mails(2, "sal", to="sales@example.test"))
    add_imap("support", SUPPORT, "--queue", "support", folder=support_folder)
    add_imap("sales", SALES, "--queue", "sales", folder=sales_folder)

    result = desk("--json", "fetch")
    assert result.exit_code == 0, result.stderr
    by_name = {c["name"]: c for c in result.json()["channels"]}
    assert by_name["support"]["fetched"] == 3 and by_name["support"]["tickets_created"] == 3
    assert by_name["sales"]["fetched"] == 2 and by_name["sales"]["error"] is None

    queues = [t["queue"] for t in desk("--json", "ticket", "list").json()["tickets"]]
    assert sorted(queues) == ["sales", "sales", "support", "support", "support"]


def test_a_second_fetch_adds_nothing_and_new_mail_is_picked_up(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db_url: str
) -> None:
    fill(dovecot, SUPPORT, fresh_folder, mails(4, "again"))
    add_imap("support", SUPPORT, folder=fresh_folder)
    assert desk("fetch").exit_code == 0
    again = desk("--json", "fetch").json()["channels"][0]
    assert again["fetched"] == 0 and count(db_url, "SELECT count(*) FROM messages") == 4

    fill(dovecot, SUPPORT, fresh_folder, mails(1, "later"))
    later = desk("--json", "fetch").json()["channels"][0]
    assert later["fetched"] == 1 and later["tickets_created"] == 1
    listed = desk("--json", "channel", "list").json()["incoming"][0]
    assert listed["last_fetch_at"] and listed["last_counts"]["fetched"] == 1


def test_forwarded_mail_is_routed_by_its_original_recipient(
    desk: Run, dovecot: Dovecot, add_imap: AddImap
) -> None:
    folder = dovecot.create_folder(*FORWARDED)
    billing = make_mail(subject="Invoice wrong", to="billing@example.test", message_id="<f1@x>")
    sales = make_mail(
        subject="Quote please", to="someone@example.test", message_id="<f2@x>",
        headers={"X-Original-To": "sales@example.test"},
    )  # fmt: skip
    both = make_mail(
        subject="To both", to="billing@example.test, sales@example.test", message_id="<f3@x>"
    )
    fill(dovecot, FORWARDED, folder, [billing, sales, both, both])
    for name, address in (("billing", "billing@example.test"), ("sales", "sales@example.test")):
        assert desk("channel", "add", name, "--kind", "pipe", "--address", address,
                    "--queue", name).exit_code == 0  # fmt: skip
    add_imap("forwarded", FORWARDED, folder=folder)

    report = desk("--json", "fetch").json()["channels"][0]
    assert report["fetched"] == 4 and report["skipped_duplicates"] == 1
    tickets = {t["title"]: t["queue"] for t in desk("--json", "ticket", "list").json()["tickets"]}
    assert tickets == {"Invoice wrong": "billing", "Quote please": "sales", "To both": "billing"}


def test_a_mail_in_two_inboxes_is_one_ticket_and_a_reused_id_is_another(
    desk: Run, dovecot: Dovecot, add_imap: AddImap
) -> None:
    support_folder = dovecot.create_folder(*SUPPORT)
    sales_folder = dovecot.create_folder(*SALES)
    both = make_mail(to="support@example.test, sales@example.test", message_id="<both@x>")
    scanner = make_mail(
        sender="scanner@example.net",
        subject="Scan from the copier",
        body="Your scan is attached.\n",
        message_id="<both@x>",
        attachments=[("scan.pdf", "application/pdf", b"%PDF-1.4 scan")],
    )
    fill(dovecot, SUPPORT, support_folder, [both])
    fill(dovecot, SALES, sales_folder, [delivered_again(both), scanner])
    add_imap("support", SUPPORT, folder=support_folder)
    add_imap("sales", SALES, folder=sales_folder)

    first = {
        c["name"]: c for c in desk("--json", "fetch", "--channel", "support").json()["channels"]
    }
    assert first["support"]["tickets_created"] == 1
    sales = desk("--json", "fetch", "--channel", "sales").json()["channels"][0]
    assert sales["fetched"] == 2 and sales["skipped_duplicates"] == 1
    assert sales["tickets_created"] == 1, "the scanner's mail is not the customer's"

    tickets = desk("--json", "ticket", "list").json()["tickets"]
    assert sorted(t["title"] for t in tickets) == ["Printer on fire", "Scan from the copier"]
    (scan,) = [t for t in tickets if t["title"] == "Scan from the copier"]
    (message,) = desk("--json", "ticket", "show", str(scan["id"])).json()["messages"]
    assert "message_id_reused" in message["flags"] and message["attachments"]


def test_fetch_killed_at_random_points_loses_and_doubles_nothing(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db_url: str
) -> None:
    fill(dovecot, SUPPORT, fresh_folder, mails(200, "kill"))
    add_imap("support", SUPPORT, "--after-fetch", "move:Trash", folder=fresh_folder)
    kills = kill_while_storing(db_url, "-q", "fetch")
    final = desk("--json", "fetch")
    assert final.exit_code == 0, final.stderr
    seen = f"after {kills} kills"
    assert count(db_url, "SELECT count(*) FROM messages") == 200, seen
    assert count(db_url, "SELECT count(DISTINCT message_id) FROM messages") == 200, seen
    assert count(db_url, "SELECT count(*) FROM tickets") == 200, seen
    with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as box:
        assert box.uids() == [], "every stored message was moved away"


def test_two_fetches_started_together_store_each_message_once(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db_url: str
) -> None:
    fill(dovecot, SUPPORT, fresh_folder, mails(200, "race"))
    add_imap("support", SUPPORT, folder=fresh_folder)
    procs = [deskctl_process("--json", "fetch") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    assert count(db_url, "SELECT count(*) FROM messages") == 200
    assert count(db_url, "SELECT count(*) FROM tickets") == 200


def test_a_uidvalidity_reset_rescans_without_doubling(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, db_url: str
) -> None:
    folder = dovecot.create_folder(*SUPPORT)
    batch = [*mails(5, "uidv"), b"From: nobody@example.org\r\nSubject: no id\r\n\r\nplain\r\n"]
    fill(dovecot, SUPPORT, folder, batch)
    add_imap("support", SUPPORT, folder=folder)
    assert desk("fetch").exit_code == 0
    dovecot.delete_folder(SUPPORT[0], folder)
    with dovecot.mailbox(*SUPPORT) as box:
        box.folder.create(folder)
    fill(dovecot, SUPPORT, folder, [*batch, *mails(1, "fresh")])

    report = desk("--json", "fetch").json()["channels"][0]
    assert report["fetched"] == 7 and report["skipped_duplicates"] == 6
    assert count(db_url, "SELECT count(*) FROM messages") == 7


def test_a_broken_channel_does_not_stop_the_good_one(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str
) -> None:
    fill(dovecot, SUPPORT, fresh_folder, mails(2, "good"))
    add_imap("good", SUPPORT, folder=fresh_folder)
    add_imap("badpw", ("sales@example.test", "wrong-password"))
    add_imap("deadport", SALES, port=1)

    result = desk("--json", "fetch")
    assert result.exit_code == 7
    by_name = {c["name"]: c for c in result.json()["channels"]}
    assert by_name["good"]["fetched"] == 2 and by_name["good"]["error"] is None
    assert "login refused for sales@example.test" in by_name["badpw"]["error"]
    assert "refused the connection" in by_name["deadport"]["error"]
    assert "deskctl: error: channel badpw: IMAP login refused" in result.stderr
    listed = {c["name"]: c for c in desk("--json", "channel", "list").json()["incoming"]}
    assert "login refused" in listed["badpw"]["last_error"] and listed["good"]["last_error"] is None

    assert desk("fetch", "--channel", "badpw").exit_code == 5
    assert desk("fetch", "--channel", "deadport").exit_code == 6


def test_after_fetch_actions_do_what_they_say(
    desk: Run, dovecot: Dovecot, add_imap: AddImap
) -> None:
    folders = {
        action: dovecot.create_folder(*SUPPORT) for action in ("keep", "seen", "delete", "move")
    }
    target = dovecot.create_folder(*SUPPORT)
    for action, folder in folders.items():
        fill(dovecot, SUPPORT, folder, mails(2, f"act-{action}"))
        how = f"move:{target}" if action == "move" else action
        add_imap(f"ch-{action}", SUPPORT, "--after-fetch", how, folder=folder)
    assert desk("fetch").exit_code == 0

    def flags(folder: str) -> list[tuple[str, ...]]:
        with dovecot.mailbox(*SUPPORT, folder=folder) as box:
            return [m.flags for m in box.fetch(mark_seen=False)]

    assert flags(folders["keep"]) == [(), ()]
    assert all("\\Seen" in f for f in flags(folders["seen"])) and len(flags(folders["seen"])) == 2
    assert flags(folders["delete"]) == []
    assert flags(folders["move"]) == [] and len(flags(target)) == 2


def test_a_message_over_the_size_limit_stays_on_the_server_listed_with_its_sender(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db_url: str
) -> None:
    big = big_mail()
    fill(dovecot, SUPPORT, fresh_folder, [*mails(1, "before"), big, *mails(1, "after")])
    add_imap("support", SUPPORT, "--after-fetch", "delete", folder=fresh_folder)
    item = fetch_over_the_limit(desk)
    with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as box:
        (left,) = box.fetch(mark_seen=False)
        assert left.subject == "huge" and item["kept"].startswith(f"on the server, UID {left.uid}")
    assert count(db_url, "SELECT count(*) FROM quarantine WHERE raw IS NOT NULL") == 0
    left_alone_until_retried(desk, item)
    # As if a run died between storing and deleting: the catch-up leaves the big one alone.
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE incoming_channels SET acted_uid = 0"))
    assert desk("fetch", "--max-size", "10000").exit_code == 0
    with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as box:
        assert [m.subject for m in box.fetch(mark_seen=False)] == ["huge"]
    assert len(desk("--json", "quarantine", "list").json()["quarantine"]) == 1

    retry_under_a_higher_limit(desk, item)  # then the after-fetch action deletes it
    with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as box:
        assert box.uids() == [], "the channel's after-fetch action ran once it was stored"


def test_a_40_mb_message_is_not_downloaded_under_the_default_limit(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str
) -> None:
    body = ("A" * 76 + "\n") * (40 * 1000 * 1000 // 77)
    fill(dovecot, SUPPORT, fresh_folder, [make_mail(subject="disk image", body=body)])
    del body
    add_imap("support", SUPPORT, folder=fresh_folder)
    run = run_deskctl_measured("--json", "fetch")
    assert run.exit_code == 7
    assert json.loads(run.stdout)["channels"][0]["left_on_server"] == 1
    assert run.peak_mib < 110, f"peak RSS {run.peak_mib:.0f} MiB: the message was downloaded"


def test_channel_test_says_what_is_wrong_in_one_line(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    fill(dovecot, SUPPORT, fresh_folder, mails(3, "probe"))
    add_imap("ok", SUPPORT, folder=fresh_folder)
    found = desk("--json", "channel", "test", "ok").json()
    assert found["ok"] is True and found["messages"] == 3

    add_imap("nofolder", SUPPORT, folder="No-Such-Folder")
    missing = desk("channel", "test", "nofolder")
    assert missing.exit_code == 5 and "folder 'No-Such-Folder' does not exist" in missing.stderr

    monkeypatch.setenv("PW_SYSTRUST", SUPPORT[1])
    desk("channel", "add", "systrust", "--kind", "imap", "--address", SUPPORT[0], "--host",
         "localhost", "--port", str(dovecot.imaps_port), "--password-env", "PW_SYSTRUST")  # fmt: skip
    tls = desk("channel", "test", "systrust")
    assert tls.exit_code == 6 and "TLS certificate verification failed" in tls.stderr

    desk("channel", "add", "nohost", "--kind", "imap", "--address", SUPPORT[0], "--host",
         "no-such-host.invalid", "--password-env", "PW_SYSTRUST")  # fmt: skip
    unknown = desk("channel", "test", "nohost")
    assert unknown.exit_code == 6 and "cannot resolve IMAP host" in unknown.stderr
    for result in (missing, tls, unknown):
        assert len(result.stderr.strip().splitlines()) == 1


def test_secrets_are_referenced_never_stored_or_shown(
    desk: Run, add_imap: AddImap, db_url: str, fresh_folder: str
) -> None:
    add_imap("support", SUPPORT, folder=fresh_folder)
    shown = desk("--json", "channel", "show", "support").json()
    assert shown["secret"] == "environment variable PW_SUPPORT"
    with create_engine(db_url).connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM incoming_channels")))
    assert SUPPORT[1] not in dump
    assert SUPPORT[1] not in desk("-vv", "fetch").stderr


def test_plaintext_imap_needs_an_explicit_flag(desk: Run) -> None:
    base = ("channel", "add", "plain", "--kind", "imap", "--address", "a@example.test",
            "--host", "localhost", "--security", "none", "--password-env", "X")  # fmt: skip
    refused = desk(*base)
    assert refused.exit_code == 2 and "--allow-plaintext" in refused.stderr
    accepted = desk(*base, "--allow-plaintext")
    assert accepted.exit_code == 0 and "unencrypted" in accepted.stderr


def test_a_password_that_is_not_ascii_logs_in_and_never_leaks_when_wrong(
    desk: Run, dovecot: Dovecot, add_imap: AddImap
) -> None:
    import smtplib
    import uuid

    password = "Grüße-ñandú-秘密"
    user = (f"umlaut-{uuid.uuid4().hex[:8]}@example.test", password)
    dovecot.add_user(*user)
    with smtplib.LMTP("127.0.0.1", dovecot.lmtp_port) as lmtp:
        lmtp.sendmail("ada@example.org", [user[0]], make_mail(subject="Passwort mit Umlaut"))
    add_imap("umlaut", user)
    fetched = desk("--json", "fetch")
    assert fetched.exit_code == 0, fetched.stderr
    assert fetched.json()["channels"][0]["tickets_created"] == 1

    for wrong in ("Grüße-ñandú-秘密!", "ñ", "pässword"):
        add_imap("wrong", (user[0], wrong))
        refused = desk("-vv", "--json", "fetch", "--channel", "wrong")
        assert refused.exit_code == 5, refused.stderr
        last_error = desk("--json", "channel", "show", "wrong").json()["last_error"]
        assert "login refused" in last_error
        seen = refused.stdout + refused.stderr + last_error
        assert not [c for c in set(wrong) if not c.isascii() and c in seen], seen
        assert "position" not in seen and "codec" not in seen
        desk("channel", "remove", "wrong")


def test_a_channel_whose_secret_is_missing_is_named_once_on_each_line(
    desk: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cron mails stderr: "channel X: channel 'X': ..." made the reader look for two channels."""
    monkeypatch.delenv("DESKCTL_TEST_NO_SUCH_SECRET", raising=False)
    added = desk("channel", "add", "broken", "--kind", "imap", "--host", "127.0.0.1",
                 "--address", "broken@example.test",
                 "--password-env", "DESKCTL_TEST_NO_SUCH_SECRET")  # fmt: skip
    assert added.exit_code == 0, added.stderr

    run = desk("fetch")
    assert run.exit_code == 5, run.stderr
    assert run.stdout == (
        "broken: failed: environment variable DESKCTL_TEST_NO_SUCH_SECRET is not set\n"
    )
    assert run.stderr == (
        "deskctl: error: channel broken: environment variable DESKCTL_TEST_NO_SUCH_SECRET"
        " is not set\n"
    )
