"""The embedded default: a local Maildir, no account needed (the README's first command)."""

from __future__ import annotations

from pathlib import Path

from conftest import Run
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
    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    for i in range(3):
        (box / "new" / f"100{i}.x.host").write_bytes(
            make_mail(subject=f"md {i}", message_id=f"<md{i}@x>")
        )
    desk(
        "channel",
        "add",
        "md",
        "--kind",
        "maildir",
        "--address",
        "md@example.test",
        "--path",
        str(box),
        "--after-fetch",
        "seen",
    )
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
    desk(
        "channel",
        "add",
        "md",
        "--kind",
        "maildir",
        "--address",
        "md@example.test",
        "--path",
        str(tmp_path),
    )
    result = desk("fetch")
    assert result.exit_code == 5 and "is not a Maildir" in result.stderr


def test_a_maildir_entry_over_the_limit_is_spooled_whole_before_the_action_deletes_it(
    desk: Run, tmp_path: Path, isolated_home: Path
) -> None:
    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    big = make_mail(subject="scan", body="page\n" * 50_000, message_id="<scan@x>")
    (box / "new" / "1000.big.host").write_bytes(big)
    (box / "new" / "1001.small.host").write_bytes(make_mail(subject="small", message_id="<s@x>"))
    desk("channel", "add", "md", "--kind", "maildir", "--address", "md@example.test",
         "--path", str(box), "--after-fetch", "delete")  # fmt: skip

    result = desk("--json", "fetch", "--max-size", "100000")
    assert result.exit_code == 7
    assert result.json()["channels"][0]["tickets_created"] == 1
    assert list((box / "new").iterdir()) == []
    (item,) = desk("--json", "quarantine", "list").json()["quarantine"]
    (spooled,) = (isolated_home / "spool").iterdir()
    assert item["kept"] == f"spool file {spooled}" and item["size"] == len(big)
    assert spooled.read_bytes() == big, "deleted from the Maildir, kept whole in the spool"
    assert desk("quarantine", "show", str(item["id"]), "--raw").stdout.encode() == big
