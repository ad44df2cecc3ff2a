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


def test_an_unterminated_osc_loses_its_introducer_not_the_rest_of_the_body() -> None:
    body = "Hi,\x1b]0;gotcha\nthe printer is on fire.\nRegards, Ada"
    assert safe_text(body) == "Hi,0;gotcha\nthe printer is on fire.\nRegards, Ada"


def test_a_stray_c1_control_is_removed_alone() -> None:
    for c1 in ("\x90", "\x98", "\x9d", "\x9e", "\x9f", "\x85"):
        assert safe_text(f"first{c1} line\nsecond line") == "first line\nsecond line"


def test_an_osc_string_ends_at_its_terminator_or_at_the_end_of_its_line() -> None:
    assert safe_text("a\x9d0;title\x9cb") == "ab"
    assert safe_text("a\x1bP+q\x1b\\b") == "ab"
    # A BEL lines later does not turn everything in between into one sequence.
    assert safe_text("a\x1b]0;x\nkept\x07 too") == "a0;x\nkept too"


def test_many_open_introducers_on_one_line_are_removed_in_linear_time() -> None:
    import time

    hostile = "\x9d" * 200_000 + "\x1b]" * 200_000 + "end"
    started = time.perf_counter()
    assert safe_text(hostile) == "end"
    assert time.perf_counter() - started < 2
