"""Attachments out: a customer's screenshot saved byte for byte, opened, or listed inside TNEF."""

from __future__ import annotations

import stat
import struct
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from conftest import Run
from mailfactory import make_mail

SCREENSHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40 + b"\x00\r\n\x1a"


def attachments_of(desk: Run, number: int = 1) -> list[dict]:
    shown = desk("--json", "ticket", "show", str(number)).json()
    return [a for m in shown["messages"] for a in m["attachments"]]


def test_a_screenshot_is_saved_byte_for_byte_and_never_overwritten(
    desk: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_mail(attachments=[("../../screen shot.png", "image/png", SCREENSHOT)])
    assert desk("ingest", "-", stdin=raw).exit_code == 0
    (att,) = attachments_of(desk)
    human = desk("ticket", "show", "1").stdout
    assert f"attachment {att['id']}: screen shot.png (image/png, 10 KB)" in human
    monkeypatch.chdir(tmp_path)
    saved = desk("attachment", "save", str(att["id"]))
    assert saved.exit_code == 0, saved.stderr
    target = tmp_path / "screen shot.png"
    assert target.read_bytes() == SCREENSHOT
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.write_bytes(b"mine")
    again = desk("attachment", "save", str(att["id"]))
    assert again.exit_code == 4 and "--force" in again.stderr
    assert target.read_bytes() == b"mine"
    assert desk("attachment", "save", str(att["id"]), "--force").exit_code == 0
    assert target.read_bytes() == SCREENSHOT
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "link.png").symlink_to(victim)
    linked = desk("attachment", "save", str(att["id"]), "-o", "link.png", "--force")
    assert linked.exit_code == 2 and victim.read_bytes() == b"keep"
    folder = tmp_path / "out"
    folder.mkdir()
    as_json = desk("attachment", "save", str(att["id"]), "-o", str(folder), "--json").json()
    assert as_json["path"] == str(folder / "screen shot.png") and as_json["size"] == len(SCREENSHOT)
    assert (folder / "screen shot.png").read_bytes() == SCREENSHOT


def test_save_to_stdout_writes_the_exact_bytes(desk: Run, tmp_path: Path) -> None:
    import subprocess

    raw = make_mail(attachments=[("shot.png", "image/png", SCREENSHOT)])
    assert desk("ingest", "-", stdin=raw).exit_code == 0
    (att,) = attachments_of(desk)
    done = subprocess.run(
        [sys.executable, "-m", "deskctl", "attachment", "save", str(att["id"]), "-o", "-"],
        capture_output=True,
        check=True,
    )
    assert done.stdout == SCREENSHOT


def test_an_unknown_attachment_is_exit_3(desk: Run) -> None:
    result = desk("attachment", "save", "999")
    assert result.exit_code == 3 and "no attachment 999" in result.stderr


def test_an_inline_image_has_an_id_and_saves_too(desk: Run, tmp_path: Path) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.org", "support@example.test", "Look"
    msg["Message-ID"] = "<inline@example.org>"
    msg.set_content("see below")
    msg.add_alternative('<p>see <img src="cid:shot@x"></p>', subtype="html")
    msg.get_payload()[1].add_related(SCREENSHOT, "image", "png", cid="<shot@x>")
    assert desk("ingest", "-", stdin=msg.as_bytes()).exit_code == 0
    (att,) = attachments_of(desk)
    assert att["inline"] is True
    assert f"inline {att['id']}:" in desk("ticket", "show", "1").stdout
    out = tmp_path / "inline.png"
    assert desk("attachment", "save", str(att["id"]), "-o", str(out)).exit_code == 0
    assert out.read_bytes() == SCREENSHOT


def test_open_hands_the_file_to_the_desktop_opener(
    desk: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    raw = make_mail(attachments=[("shot.png", "image/png", SCREENSHOT)])
    assert desk("ingest", "-", stdin=raw).exit_code == 0
    (att,) = attachments_of(desk)
    seen = tmp_path / "opened"
    opener = tmp_path / "opener"
    opener.write_text(f'#!/bin/sh\ncp "$1" {seen}\necho "$1" > {seen}.path\n')
    opener.chmod(0o755)
    monkeypatch.setenv("DESKCTL_OPENER", str(opener))
    result = desk("attachment", "open", str(att["id"]))
    assert result.exit_code == 0, result.stderr
    assert seen.read_bytes() == SCREENSHOT
    path = Path(seen.with_suffix(".path").read_text().strip())
    assert path.parent.parent == isolated_home / "attachments"
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    monkeypatch.setenv("DESKCTL_OPENER", "false")
    assert desk("attachment", "open", str(att["id"])).exit_code == 5


def test_text_opens_as_text_when_piped(desk: Run) -> None:
    raw = make_mail(attachments=[("log.txt", "text/plain", b"line one\nERROR \x1b[2J two\n")])
    assert desk("ingest", "-", stdin=raw).exit_code == 0
    (att,) = attachments_of(desk)
    shown = desk("attachment", "open", str(att["id"]))
    assert shown.exit_code == 0 and "ERROR" in shown.stdout and "\x1b" not in shown.stdout


def tnef(files: list[tuple[str, bytes]]) -> bytes:
    """A minimal winmail.dat: the signature, then per file its rendering, title and data."""

    def attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
        head = struct.pack("<BHHI", level, name, kind, len(data))
        return head + data + struct.pack("<H", sum(data) & 0xFFFF)

    out = struct.pack("<IH", 0x223E9F78, 0x0001)
    out += attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))  # TNEF version
    for name, data in files:
        out += attribute(2, 0x9002, 0x0006, b"\x01\x00" + b"\xff" * 12)  # rendering: a new file
        out += attribute(2, 0x8010, 0x0001, name.encode() + b"\x00")  # its title
        out += attribute(2, 0x800F, 0x0006, data)  # its bytes
    return out


def test_a_winmail_dat_lists_the_files_inside(desk: Run) -> None:
    """What Outlook wrapped is visible: listed under the winmail.dat, or (where ingest
    unpacks TNEF) as attachments of their own."""
    blob = tnef([("invoice.pdf", b"%PDF-1.4 " * 100), ("../evil.sh", b"rm -rf /")])
    raw = make_mail(attachments=[("winmail.dat", "application/ms-tnef", blob)])
    assert desk("ingest", "-", stdin=raw).exit_code == 0
    atts = attachments_of(desk)
    inside = [c for a in atts for c in a.get("contents", [])] or atts
    assert [(f["filename"], f["size"]) for f in inside] == [("invoice.pdf", 900), ("evil.sh", 8)]
    human = desk("ticket", "show", "1").stdout
    lines = human.splitlines()
    for name, size in (("invoice.pdf", "900 bytes"), ("evil.sh", "8 bytes")):
        assert any(f"{name} (" in line and f"{size})" in line for line in lines), human


def test_a_damaged_winmail_dat_lists_nothing_and_shows_the_ticket(desk: Run) -> None:
    raw = make_mail(attachments=[("winmail.dat", "application/ms-tnef", b"not tnef at all")])
    assert desk("ingest", "-", stdin=raw).exit_code == 0
    (att,) = attachments_of(desk)
    assert att["contents"] == []
    assert "winmail.dat" in desk("ticket", "show", "1").stdout
