"""Promise 7: what a mail says cannot attack the agent reading it."""

from __future__ import annotations

import pytest

from deskctl.mail.sanitize import fallback_filename, safe_filename, safe_text


def test_a_subject_cannot_recolour_or_retitle_the_agents_terminal() -> None:
    hostile = "Invoice \x1b[31mOVERDUE\x1b[0m \x1b]0;pwned\x07paid\x1b]8;;http://evil\x1b\\link"
    assert safe_text(hostile) == "Invoice OVERDUE paidlink"


def test_c1_escape_forms_and_lone_escapes_are_removed_too() -> None:
    assert safe_text("a\x9b2Jb\x1bcc\x1b(Bd") == "abcd"


def test_control_characters_go_but_newlines_and_tabs_stay() -> None:
    assert safe_text("line 1\r\nline\x002\tx\x07\x7f\x85") == "line 1\nline2\tx"


def test_bidi_overrides_cannot_disguise_a_file_extension() -> None:
    assert safe_text("invoice\u202egpj.exe") == "invoicegpj.exe"


def test_plain_text_passes_through_unchanged() -> None:
    text = "Grüße aus Köln — 你好"
    assert safe_text(text) == text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/absolute/path/report.pdf", "report.pdf"),
        ("..", "attachment-1.bin"),
        (".bashrc", "bashrc"),
        ("", "attachment-1.bin"),
        (None, "attachment-1.bin"),
        ("evil\x1b[2Jname\x00.txt", "evilname.txt"),
        ("Rechnung März.pdf", "Rechnung März.pdf"),
    ],
)
def test_attachment_names_cannot_leave_their_folder(name: str | None, expected: str) -> None:
    assert safe_filename(name, "attachment-1.bin") == expected


def test_an_overlong_name_is_cut_but_keeps_its_extension() -> None:
    name = safe_filename("x" * 500 + ".pdf", "attachment-1.bin")
    assert len(name) == 200
    assert name.endswith("x.pdf")


def test_nameless_attachments_get_a_numbered_name_with_a_fitting_extension() -> None:
    assert fallback_filename(2, "application/pdf") == "attachment-2.pdf"
    assert fallback_filename(1, "message/rfc822") == "attachment-1.eml"
    assert fallback_filename(3, "application/x-unheard-of") == "attachment-3.bin"
