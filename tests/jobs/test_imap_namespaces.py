"""The support mailbox lives on a server that names folders like Courier or Cyrus.

There, folders sit under the personal namespace ``INBOX.`` with ``.`` between
levels, so the "Archive" an agent sees in their mail program is
``INBOX.Archive`` on the wire. The server is a real Dovecot configured that
way (TESTBED.md, "IMAP namespaces").
"""

from __future__ import annotations

from jobs.conftest import AddImap, fill, new_user
from sqlalchemy import create_engine, text

from conftest import Run
from deskctl.transport.folders import Layout, Target, choose, parse_list, parse_namespace
from mailfactory import make_mail
from testbed.dovecot import Dovecot


def mails(tag: str, n: int = 2) -> list[bytes]:
    return [
        make_mail(subject=f"{tag} {i}", message_id=f"<{tag}-{i}@example.org>") for i in range(n)
    ]


def message_ids(server: Dovecot, user: tuple[str, str], folder: str) -> list[str]:
    with server.mailbox(*user, folder=folder) as box:
        return sorted(m.headers["message-id"][0] for m in box.fetch(mark_seen=False))


def folders(server: Dovecot, user: tuple[str, str], subscribed: bool = False) -> set[str]:
    with server.mailbox(*user) as box:
        return {f.name for f in box.folder.list(subscribed_only=subscribed)}


def stored(db_url: str) -> int:
    with create_engine(db_url).connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM messages")) or 0)


def test_move_archive_files_mail_in_inbox_archive(
    desk: Run, namespaced_dovecot: Dovecot, add_imap: AddImap
) -> None:
    user = new_user(namespaced_dovecot, "ns")
    with namespaced_dovecot.mailbox(*user) as box:
        box.folder.create("INBOX.Archive")  # what the agent's mail program made
    fill(namespaced_dovecot, user, "INBOX", mails("archive"))
    add_imap("support", user, "--after-fetch", "move:Archive", port=namespaced_dovecot.imaps_port)

    tested = desk("channel", "test", "support")
    assert tested.exit_code == 0, tested.stderr
    assert "after fetch, mail moves to INBOX.Archive" in tested.stdout

    result = desk("--json", "fetch")
    assert result.exit_code == 0, result.stderr
    assert result.json()["channels"][0]["tickets_created"] == 2
    assert message_ids(namespaced_dovecot, user, "INBOX") == []
    assert message_ids(namespaced_dovecot, user, "INBOX.Archive") == [
        "<archive-0@example.org>",
        "<archive-1@example.org>",
    ]


def test_a_missing_folder_fails_in_one_line_and_the_mail_waits_until_it_is_fixed(
    desk: Run, namespaced_dovecot: Dovecot, add_imap: AddImap, db_url: str
) -> None:
    user = new_user(namespaced_dovecot, "ns")
    fill(namespaced_dovecot, user, "INBOX", mails("missing"))
    add_imap("support", user, "--after-fetch", "move:Archive", port=namespaced_dovecot.imaps_port)

    first = desk("fetch")
    assert first.exit_code == 5, first.stderr
    assert first.stdout.startswith("support: 2 fetched, 2 new tickets; failed: after-fetch")
    (line,) = first.stderr.strip().splitlines()
    assert line.startswith("deskctl: error: channel support: after-fetch folder 'Archive'")
    assert "looked for 'INBOX.Archive'" in line and "the mail stays in INBOX" in line
    assert line.endswith("deskctl channel set support --create-folder")
    listed = desk("--json", "channel", "list").json()["incoming"][0]
    assert "does not exist" in listed["last_error"] and listed["last_success_at"] is None
    assert listed["last_counts"]["tickets_created"] == 2

    again = desk("--json", "fetch")
    report = again.json()["channels"][0]
    assert again.exit_code == 5 and report["fetched"] == 0 and "does not exist" in report["error"]
    assert stored(db_url) == 2
    assert message_ids(namespaced_dovecot, user, "INBOX") == [
        "<missing-0@example.org>",
        "<missing-1@example.org>",
    ]
    tested = desk("channel", "test", "support")
    assert tested.exit_code == 5 and "--create-folder" in tested.stderr
    assert len(tested.stderr.strip().splitlines()) == 1

    assert desk("channel", "set", "support", "--create-folder").exit_code == 0
    tested = desk("--json", "channel", "test", "support")
    assert tested.exit_code == 0, tested.stderr
    assert tested.json()["after_fetch_folder"] == {
        "name": "INBOX.Archive",
        "exists": False,
        "how": "'Archive' in the server's naming",
    }
    assert "INBOX.Archive" not in folders(namespaced_dovecot, user), "a test changes nothing"

    fixed = desk("--json", "fetch")
    assert fixed.exit_code == 0, fixed.stderr
    assert fixed.json()["channels"][0]["fetched"] == 0 and stored(db_url) == 2
    assert message_ids(namespaced_dovecot, user, "INBOX") == []
    assert len(message_ids(namespaced_dovecot, user, "INBOX.Archive")) == 2
    assert "INBOX.Archive" in folders(namespaced_dovecot, user, subscribed=True)
    assert desk("--json", "channel", "list").json()["incoming"][0]["last_error"] is None


def test_create_folder_from_the_start_and_special_use_names(
    desk: Run, namespaced_dovecot: Dovecot, add_imap: AddImap
) -> None:
    user = new_user(namespaced_dovecot, "ns")
    reading = namespaced_dovecot.create_folder(*user)
    fill(namespaced_dovecot, user, "INBOX", mails("new"))
    fill(namespaced_dovecot, user, reading, mails("trash"))
    port = namespaced_dovecot.imaps_port
    add_imap("support", user, "--after-fetch", "move:Done/2026", "--create-folder", port=port)
    add_imap("spam", user, "--after-fetch", "move:\\Trash", folder=reading, port=port)

    result = desk("--json", "fetch")
    assert result.exit_code == 0, result.stderr
    assert len(message_ids(namespaced_dovecot, user, "INBOX.Done.2026")) == 2
    assert message_ids(namespaced_dovecot, user, "INBOX.Trash") == [
        "<trash-0@example.org>",
        "<trash-1@example.org>",
    ]
    shown = desk("--json", "channel", "show", "support").json()
    assert shown["after_fetch"] == "move:Done/2026" and shown["create_folder"] is True


def test_folders_that_cannot_be_used_say_so_with_exit_5(
    desk: Run, namespaced_dovecot: Dovecot, dovecot: Dovecot, add_imap: AddImap
) -> None:
    user = new_user(namespaced_dovecot, "ns")
    reading = namespaced_dovecot.create_folder(*user)
    fill(namespaced_dovecot, user, reading, mails("loop", 1))
    port = namespaced_dovecot.imaps_port
    add_imap("junk", user, "--after-fetch", "move:\\Junk", port=port)
    add_imap("self", user, "--after-fetch", f"move:{reading}", folder=reading, port=port)
    plain = new_user(dovecot, "plain")
    add_imap("dots", plain, "--after-fetch", "move:INBOX.Archive", "--create-folder")

    for name, said in (
        ("junk", "no folder on the server is marked \\Junk"),
        ("self", "is the one deskctl reads"),
        ("dots", "the server refused to create folder 'INBOX.Archive': NO"),
    ):
        result = desk("fetch", "--channel", name)
        assert result.exit_code == 5, (name, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert said in line, line
        assert f"deskctl channel set {name} --after-fetch move:FOLDER" in line
    assert message_ids(namespaced_dovecot, user, reading) == ["<loop-0@example.org>"]


def test_create_folder_needs_a_move(desk: Run, add_imap: AddImap) -> None:
    add_imap("support", ("support@example.test", "support-pw"))
    refused = desk("channel", "set", "support", "--create-folder")
    assert refused.exit_code == 2 and "--after-fetch move:FOLDER" in refused.stderr
    moved = desk("channel", "set", "support", "--after-fetch", "move:Done", "--create-folder")
    assert moved.exit_code == 0 and "move:Done, creating the folder when missing" in moved.stdout
    changed = desk("--json", "channel", "set", "support", "--after-fetch", "seen")
    assert changed.exit_code == 0, changed.stderr
    assert changed.json()["after_fetch"] == "seen" and changed.json()["create_folder"] is False


def test_what_servers_answer_is_read_as_they_mean_it() -> None:
    # NAMESPACE from Courier, Dovecot and a server that shares folders too.
    assert parse_namespace([b'(("INBOX." ".")) NIL NIL']) == ("INBOX.", ".")
    assert parse_namespace([b'(("" "/")) NIL NIL']) == ("", "/")
    assert parse_namespace([b'(("" "/")("Archive/" "/")) (("~" "/")) NIL']) == ("", "/")
    # LIST: quoted names, names sent as literals, modified UTF-7, NIL delimiters.
    listed = parse_list(
        [
            b'(\\HasNoChildren \\Trash) "/" "[Gmail]/Trash"',
            (b'(\\HasNoChildren) "." {15}', b'INBOX."quoted"'),
            b'() "." INBOX.K&APY-ln',
            b"(\\Noselect) NIL Flat",
        ]
    )
    assert listed == [
        ("[Gmail]/Trash", "/", ("\\hasnochildren", "\\trash")),
        ('INBOX."quoted"', ".", ("\\hasnochildren",)),
        ("INBOX.Köln", ".", ()),
        ("Flat", "", ("\\noselect",)),
    ]


def test_the_folder_a_name_means_on_each_kind_of_server() -> None:
    gmail = Layout("", "/", {"INBOX": (), "[Gmail]/Trash": ("\\trash",), "Done": ()})
    assert choose("Trash", gmail) == Target("[Gmail]/Trash", "the folder marked \\Trash", True)
    assert choose("Done", gmail) == Target("Done", "as named", True)
    courier = Layout("INBOX.", ".", {"INBOX": (), "INBOX.Archive": (), "INBOX.Old.2024": ()})
    assert choose("Archive", courier).name == "INBOX.Archive"
    assert choose("Old/2024", courier).name == "INBOX.Old.2024"
    assert choose("INBOX.Archive", courier) == Target("INBOX.Archive", "as named", True)
    assert choose("New", courier) == Target("INBOX.New", "'New' in the server's naming", False)
