"""Mail over the size limit waits in the quarantine with its sender, and comes back whole."""

from __future__ import annotations

import random
from pathlib import Path

from peakrss import run_deskctl_measured

from conftest import Run
from mailfactory import make_mail


def big_mail(size: int, **kwargs: str) -> bytes:
    """A mail with an attachment of ``size`` random bytes (base64 on the wire)."""
    noise = random.Random(size).randbytes(size)
    return make_mail(attachments=[("dump.bin", "application/octet-stream", noise)], **kwargs)


def spool_files(home: Path) -> list[Path]:
    spool = home / "spool"
    return sorted(spool.iterdir()) if spool.exists() else []


def test_mail_over_the_limit_is_listed_with_its_sender_and_retried_under_a_higher_limit(
    desk: Run, isolated_home: Path
) -> None:
    raw = big_mail(300_000, sender="Grace Hopper <grace@example.org>", subject="Core dump")
    first = desk("--json", "ingest", "--max-size", "100000", stdin=raw)
    assert first.exit_code == 7 and "over the limit of 100000" in first.json()["reason"]
    item_id = first.json()["quarantined"]
    again = desk("--json", "ingest", "--max-size", "100000", stdin=raw)
    assert again.json()["quarantined"] == item_id, "the same mail twice is listed once"
    (spooled,) = spool_files(isolated_home)
    assert spooled.read_bytes() == raw

    (row,) = desk("--json", "quarantine", "list").json()["quarantine"]
    assert (row["size"], row["sender"], row["subject"]) == (
        len(raw),
        "grace@example.org",
        "Core dump",
    )
    assert "grace@example.org" in desk("quarantine", "list").stdout
    shown = desk("quarantine", "show", str(item_id), "--raw")
    assert shown.exit_code == 0 and shown.stdout.encode() == raw

    still = desk("--json", "quarantine", "retry", str(item_id), "--max-size", "100000")
    assert still.exit_code == 7 and "over the limit" in still.json()["reason"]
    assert spool_files(isolated_home) == [spooled]
    stored = desk("--json", "quarantine", "retry", str(item_id))  # the default limit, 25 MiB
    assert stored.exit_code == 0, stored.stderr
    assert stored.json()["title"] == "Core dump" and stored.json()["attachments"] == ["dump.bin"]
    assert desk("--json", "quarantine", "list").json()["quarantine"] == []
    assert spool_files(isolated_home) == [], "the spool file goes with its quarantine entry"


def test_a_dry_run_spools_nothing_and_drop_deletes_the_spooled_copy(
    desk: Run, isolated_home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "big.eml"
    path.write_bytes(big_mail(50_000))
    dry = desk("--json", "ingest", "--dry-run", "--max-size", "10000", str(path))
    assert "over the limit" in dry.json()["reason"] and spool_files(isolated_home) == []

    kept = desk("--json", "ingest", "--max-size", "10000", str(path)).json()
    assert len(spool_files(isolated_home)) == 1
    assert desk("quarantine", "drop", str(kept["quarantined"])).exit_code == 0
    assert spool_files(isolated_home) == []


def test_explain_measures_a_huge_file_without_reading_it_in_and_stores_nothing(
    desk: Run, isolated_home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "big.eml"
    raw = big_mail(80_000)
    path.write_bytes(raw)
    result = desk("explain", "--max-size", "20000", str(path))
    assert result.exit_code == 0, result.stderr
    assert f"quarantine: message is {len(raw)} bytes, over the limit of 20000" in result.stdout
    assert spool_files(isolated_home) == []
    assert desk("--json", "quarantine", "list").json()["quarantine"] == []
    assert "ticket: a new ticket" in desk("explain", str(path)).stdout

    huge = tmp_path / "huge.eml"
    with huge.open("wb") as fh:
        fh.write(make_mail(subject="sparse"))
        fh.truncate(200 * 1000 * 1000)  # a sparse file: 200 MB to read, nothing on disk
    run = run_deskctl_measured("explain", str(huge))
    assert run.exit_code == 0 and b"over the limit of 26214400" in run.stdout
    assert run.peak_mib < 120, f"explain: peak RSS {run.peak_mib:.0f} MiB for a 200 MB file"


def test_show_raw_streams_a_large_stored_source_slice_by_slice_unchanged(desk: Run) -> None:
    junk = b"\x00\x01 not a mail " + bytes(random.Random(3).choices(range(32, 127), k=2_600_000))
    bad = desk("--json", "ingest", stdin=junk).json()
    assert "cannot parse" in bad["reason"]
    shown = desk("quarantine", "show", str(bad["quarantined"]), "--raw")
    assert shown.stdout.encode() == junk, "every 1 MiB slice, in order, nothing lost at the seams"
    info = desk("--json", "quarantine", "show", str(bad["quarantined"])).json()
    assert info["kept"] == "database" and info["size"] == len(junk)
