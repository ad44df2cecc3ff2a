"""The embedded default: a local Maildir, no account needed (the README's first command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from conftest import Run, add_maildir_channel, maildir
from mailfactory import make_mail


def test_the_bundled_sample_mailbox_becomes_tickets_once(desk: Run, isolated_home: Path) -> None:
    added = desk(
        "channel",
        "add",
        "sample",
        "--kind",
        "maildir",
        "--address",
        "support@example.test",
        "--sample",
    )
    assert added.exit_code == 0, added.stderr
    first = desk("--json", "fetch").json()["channels"][0]
    assert first["fetched"] == 6 and first["tickets_created"] == 5 and first["messages_added"] == 1
    assert desk("--json", "fetch").json()["channels"][0]["fetched"] == 0
    titles = {t["title"] for t in desk("--json", "ticket", "list").json()["tickets"]}
    assert "Cannot log in after password reset" in titles
    assert (isolated_home / "sample-maildir" / "new").is_dir()


def test_seen_moves_stored_mail_to_cur_and_a_crash_before_it_is_caught_up(
    desk: Run, tmp_path: Path
) -> None:
    box = maildir(tmp_path)
    for i in range(3):
        (box / "new" / f"100{i}.x.host").write_bytes(
            make_mail(subject=f"md {i}", message_id=f"<md{i}@x>")
        )
    add_maildir_channel(desk, box, "--after-fetch", "seen")
    assert desk("--json", "fetch").json()["channels"][0]["tickets_created"] == 3
    assert sorted(p.name for p in (box / "cur").iterdir()) == [
        f"100{i}.x.host:2,S" for i in range(3)
    ]
    assert list((box / "new").iterdir()) == []

    # As if a run died after storing a message but before marking it seen:
    (box / "cur" / "1000.x.host:2,S").rename(box / "new" / "1000.x.host")
    report = desk("--json", "fetch").json()["channels"][0]
    assert report["fetched"] == 0
    assert (box / "cur" / "1000.x.host:2,S").exists()


def test_a_folder_that_is_not_a_maildir_is_a_clear_error(desk: Run, tmp_path: Path) -> None:
    add_maildir_channel(desk, tmp_path)
    result = desk("fetch")
    assert result.exit_code == 5 and "is not a Maildir" in result.stderr


def stored_bytes(db_url: str) -> bytes:
    """Every raw source and attachment the database holds, to look for a leak in."""
    with create_engine(db_url).connect() as conn:
        chunks = [
            bytes(row[0] or b"")
            for table in ("messages", "quarantine", "blobs")
            for row in conn.execute(
                text(f"SELECT {'data' if table == 'blobs' else 'raw'} FROM {table}")
            )
        ]
    return b"\n".join(chunks)


def test_a_link_to_a_secret_file_never_reaches_the_database_or_the_quarantine(
    desk: Run, db_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$SECRET-HASH-b1:19000:0:99999:7:::\n")
    box = maildir(tmp_path)
    (box / "new" / "1000.a.host").write_bytes(make_mail(subject="before", message_id="<a@x>"))
    (box / "new" / "1001.link.host").symlink_to(secret)
    (box / "cur" / "1002.shadow.host:2,S").symlink_to("/etc/shadow")
    (box / "new" / "1003.b.host").write_bytes(make_mail(subject="after", message_id="<b@x>"))
    add_maildir_channel(desk, box)

    result = desk("--json", "fetch")
    assert result.exit_code == 7, result.stderr
    report = result.json()["channels"][0]
    assert report["tickets_created"] == 2 and report["quarantined"] == 0
    assert report["unread"] == [
        "new/1001.link.host: a symbolic link, not a mail file: skipped",
        "cur/1002.shadow.host:2,S: a symbolic link, not a mail file: skipped",
    ]
    assert b"SECRET-HASH-b1" not in stored_bytes(db_url)
    assert desk("--json", "quarantine", "list").json()["quarantine"] == []
    shown = desk("--json", "channel", "show", "md").json()
    assert shown["last_error"].startswith("not read: new/1001.link.host: a symbolic link")
    # The link stays where it is and is reported again; the mail is not fetched twice.
    again = desk("--json", "fetch")
    assert again.exit_code == 7 and again.json()["channels"][0]["fetched"] == 0


def test_a_new_folder_swapped_for_a_link_reads_nothing_through_it(
    desk: Run, db_url: str, tmp_path: Path
) -> None:
    """Whoever may rename in the Maildir can swap ``new/`` for a link to another
    folder (between two runs, or between listing and reading): every name in it
    then sits behind a link, so none of it is read."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "1000.secret.host").write_bytes(
        make_mail(subject="SECRET-KEY-r1", message_id="<secret@x>")
    )
    box = maildir(tmp_path)
    (box / "cur" / "1001.a.host:2,").write_bytes(make_mail(subject="real", message_id="<a@x>"))
    (box / "new").rmdir()
    (box / "new").symlink_to(elsewhere)
    add_maildir_channel(desk, box)

    result = desk("--json", "fetch")
    assert result.exit_code == 7, result.stderr
    report = result.json()["channels"][0]
    assert report["tickets_created"] == 1
    assert report["unread"] == [
        "new/1000.secret.host: in a folder that is a symbolic link, not a mail file: skipped"
    ]
    assert b"SECRET-KEY-r1" not in stored_bytes(db_url)
    assert (elsewhere / "1000.secret.host").exists()  # not moved out of its folder either


def test_a_fifo_a_folder_and_a_socket_are_skipped_without_waiting(
    desk: Run, tmp_path: Path
) -> None:
    import socket

    box = maildir(tmp_path)
    os.mkfifo(box / "new" / "1000.fifo.host")
    (box / "cur" / "1001.dir.host:2,").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(box / "new" / "1002.sock.host"))
    (box / "new" / "1003.mail.host").write_bytes(make_mail(subject="real mail"))
    add_maildir_channel(desk, box)

    # A FIFO with no writer would block a reader that opens it for good.
    run = subprocess.run([sys.executable, "-m", "deskctl", "--json", "fetch"],
                         capture_output=True, timeout=60, env=dict(os.environ))  # fmt: skip
    assert run.returncode == 7, run.stderr
    report = json.loads(run.stdout)["channels"][0]
    assert report["tickets_created"] == 1
    assert sorted(report["unread"]) == [
        "cur/1001.dir.host:2,: a directory, not a mail file: skipped",
        "new/1000.fifo.host: a FIFO, not a mail file: skipped",
        "new/1002.sock.host: a socket, not a mail file: skipped",
    ]


def test_an_unreadable_entry_is_recorded_and_the_mail_after_it_is_fetched(
    desk: Run, tmp_path: Path
) -> None:
    box = maildir(tmp_path)
    locked = box / "new" / "1000.locked.host"
    locked.write_bytes(make_mail(subject="locked away"))
    locked.chmod(0)
    (box / "new" / "1001.open.host").write_bytes(make_mail(subject="readable"))
    add_maildir_channel(desk, box)

    # root reads a mode-000 file anyway; without the two file-access capabilities
    # root is held to the mode bits like any user.
    as_user = (
        ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
        if os.geteuid() == 0
        else []
    )
    run = subprocess.run([*as_user, sys.executable, "-m", "deskctl", "--json", "fetch"],
                         capture_output=True, timeout=60, env=dict(os.environ))  # fmt: skip
    assert run.returncode == 7, run.stderr
    report = json.loads(run.stdout)["channels"][0]
    assert report["tickets_created"] == 1 and report["quarantined"] == 0
    assert report["unread"] == ["new/1000.locked.host: cannot be read: Permission denied"]
    assert b"not read: new/1000.locked.host" in run.stderr
    titles = [t["title"] for t in desk("--json", "ticket", "list").json()["tickets"]]
    assert titles == ["readable"]


def test_a_name_that_is_not_utf8_is_skipped_with_its_bytes_escaped(
    desk: Run, tmp_path: Path
) -> None:
    box = maildir(tmp_path)
    bad = os.path.join(os.fsencode(box / "new"), b"1000.\xff\xfe.host")
    with open(bad, "wb") as fh:
        fh.write(make_mail(subject="odd name"))
    (box / "new" / "1001.fine.host").write_bytes(make_mail(subject="fine name"))
    add_maildir_channel(desk, box)

    result = desk("--json", "fetch")
    assert result.exit_code == 7, result.stderr
    report = result.json()["channels"][0]
    assert report["tickets_created"] == 1
    assert report["unread"] == ["new/1000.\\xff\\xfe.host: its name is not valid UTF-8"]


def test_an_entry_gone_between_listing_and_reading_is_recorded_not_fatal(tmp_path: Path) -> None:
    from deskctl.transport.maildir import MaildirInbox

    box = maildir(tmp_path)
    for i in range(3):
        (box / "new" / f"100{i}.x.host").write_bytes(make_mail(subject=f"m{i}"))
    inbox = MaildirInbox(str(box))
    listed = inbox.messages()
    (box / "new" / "1001.x.host").unlink()  # another program took it meanwhile
    read = [key for key, _path, _raw in inbox.read(listed, 1 << 20, None)]
    assert read == ["1000.x.host", "1002.x.host"]
    assert [str(s) for s in inbox.skipped] == [
        "new/1001.x.host: gone before it could be read (moved or deleted by another program)"
    ]


def test_a_file_name_with_a_newline_cannot_forge_a_log_or_quarantine_line(
    desk: Run, tmp_path: Path
) -> None:
    box = maildir(tmp_path)
    forged = "1000.x\ndeskctl: WARNING: all good\nreason - forged.host"  # key: up to the ':'
    (box / "new" / forged).write_bytes(b"X" * 5000)  # over --max-size: quarantined
    (box / "new" / "1001.y\nz.host").write_bytes(make_mail(subject="newline in name"))
    add_maildir_channel(desk, box)

    result = desk("--json", "fetch", "--max-size", "2000")
    assert result.exit_code == 7
    report = result.json()["channels"][0]
    assert report["quarantined"] == 1 and report["tickets_created"] == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "from md 1000.x\\ndeskctl: message is 5000 bytes" in lines[0]

    item = desk("--json", "quarantine", "list").json()["quarantine"][0]["id"]
    shown = desk("quarantine", "show", str(item)).stdout.splitlines()
    assert "source: md 1000.x\\ndeskctl" in shown
    assert not [line for line in shown if line.startswith("deskctl")]
    # Fetched again, the new mail is known by its real name and not read twice.
    assert desk("--json", "fetch", "--max-size", "2000").json()["channels"][0]["fetched"] == 0


def test_a_maildir_entry_over_the_limit_is_spooled_whole_before_the_action_deletes_it(
    desk: Run, tmp_path: Path, isolated_home: Path
) -> None:
    box = maildir(tmp_path)
    big = make_mail(subject="scan", body="page\n" * 50_000, message_id="<scan@x>")
    (box / "new" / "1000.big.host").write_bytes(big)
    (box / "new" / "1001.small.host").write_bytes(make_mail(subject="small", message_id="<s@x>"))
    add_maildir_channel(desk, box, "--after-fetch", "delete")

    result = desk("--json", "fetch", "--max-size", "100000")
    assert result.exit_code == 7
    assert result.json()["channels"][0]["tickets_created"] == 1
    assert list((box / "new").iterdir()) == []
    (item,) = desk("--json", "quarantine", "list").json()["quarantine"]
    (spooled,) = (isolated_home / "spool").iterdir()
    assert item["kept"] == f"spool file {spooled}" and item["size"] == len(big)
    assert spooled.read_bytes() == big, "deleted from the Maildir, kept whole in the spool"
    assert desk("quarantine", "show", str(item["id"]), "--raw").stdout.encode() == big


STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_a_quiet_fetch_with_a_failing_channel_still_logs_one_stamped_line(
    desk: Run, tmp_path: Path
) -> None:
    """Under cron, -q's stdout is the log: one line with the time, the details on stderr."""
    import re

    box = maildir(tmp_path)
    (box / "new" / "1000.mail.host").write_bytes(make_mail(subject="fetched anyway"))
    os.mkfifo(box / "new" / "1001.fifo.host")
    add_maildir_channel(desk, box)
    broken = desk("channel", "add", "broken", "--kind", "imap", "--host", "127.0.0.1",
                  "--address", "broken@example.test", "--password-cmd", "false")  # fmt: skip
    assert broken.exit_code == 0, broken.stderr

    run = desk("-q", "fetch")
    assert run.exit_code == 7, run.stderr
    (line,) = run.stdout.splitlines()
    assert re.fullmatch(
        rf"{STAMP} fetch: 1 fetched, 1 new tickets, .* \(md\); failed: broken; 1 not read", line
    ), line
    assert run.stderr.splitlines() == [
        "deskctl: error: channel broken: password command exited 1",
        "deskctl: warning: channel md: not read: new/1001.fifo.host: a FIFO, not a mail file:"
        " skipped",
    ]
    again = desk("-q", "fetch")  # nothing new, but the failure is still worth a line
    assert again.exit_code == 7
    assert re.fullmatch(
        rf"{STAMP} fetch: 0 fetched, .*; failed: broken; 1 not read\n", again.stdout
    )
