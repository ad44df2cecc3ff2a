"""Agents list and read tickets; what mail says never reaches their terminal raw."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from conftest import Run
from mailfactory import make_mail


def ingest(desk: Run, tmp_path: Path, name: str, raw: bytes) -> dict:
    path = tmp_path / name
    path.write_bytes(raw)
    result = desk("--json", "ingest", str(path))
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_ticket_list_json_has_exactly_the_documented_fields(desk: Run, tmp_path: Path) -> None:
    ingest(desk, tmp_path, "a.eml", make_mail(sender="Ada <ada@example.org>"))
    (row,) = desk("--json", "ticket", "list").json()["tickets"]
    assert set(row) == {
        "id", "number", "title", "status", "queue", "customer", "assignee", "updated_at", "messages",
        "last_message_at",
    }  # fmt: skip
    assert row["customer"] == {"name": "Ada", "email": "ada@example.org"}
    assert row["messages"] == 1 and row["assignee"] is None
    assert datetime.fromisoformat(row["updated_at"]).utcoffset() is not None


def test_ticket_show_json_has_exactly_the_documented_fields(desk: Run, tmp_path: Path) -> None:
    doc = ingest(desk, tmp_path, "a.eml", make_mail(attachments=[("a.txt", "text/plain", b"hi")]))
    shown = desk("--json", "ticket", "show", str(doc["ticket"])).json()
    assert set(shown) == {
        "id", "number", "title", "status", "queue", "channel", "customer", "assignee",
        "created_at", "updated_at", "messages", "reply_recipients",
    }  # fmt: skip
    assert set(shown["reply_recipients"]) == {"to", "cc", "notes"}
    (msg,) = shown["messages"]
    assert set(msg) == {
        "id", "direction", "from", "to", "cc", "subject", "date", "message_id", "body", "flags",
        "flag_reasons", "author", "attachments", "new_text_end",
    }  # fmt: skip
    assert set(msg["attachments"][0]) == {
        "id", "filename", "content_type", "size", "sha256", "inline",
    }  # fmt: skip
    assert msg["direction"] == "in" and msg["to"] == [{"name": "", "email": "support@example.test"}]


def test_list_is_newest_activity_first_and_filters(desk: Run, tmp_path: Path) -> None:
    a = ingest(
        desk,
        tmp_path,
        "a.eml",
        make_mail(subject="Alpha", sender="a@one.example", message_id="<a@x>"),
    )
    b = ingest(desk, tmp_path, "b.eml", make_mail(subject="Beta", sender="b@two.example"))
    ingest(
        desk,
        tmp_path,
        "c.eml",
        make_mail(subject="Re: Alpha", sender="a@one.example", in_reply_to="<a@x>"),
    )
    numbers = [t["number"] for t in desk("--json", "ticket", "list").json()["tickets"]]
    assert numbers == [a["ticket"], b["ticket"]]

    def titles(*args: str) -> list[str]:
        return [t["title"] for t in desk("--json", "ticket", "list", *args).json()["tickets"]]

    assert titles("--customer", "B@two.example") == ["Beta"]
    assert titles("--search", "alph") == ["Alpha"]
    assert titles("--status", "new", "--queue", "general") == ["Alpha", "Beta"]
    assert titles("--limit", "1") == ["Alpha"]
    assert desk("ticket", "list", "--status", "bogus").exit_code == 2


def test_escape_sequences_from_mail_never_reach_the_terminal(desk: Run, tmp_path: Path) -> None:
    evil = "Invoice \x1b]0;pwned\x07\x1b[31mRED\x1b[0m \x9b2J [bold]x[/bold]"
    raw = make_mail(subject=evil, sender="Eve \x1b[5m <eve@example.org>", body="hi \x1b[2J there\n")
    doc = ingest(desk, tmp_path, "evil.eml", raw)
    for args in (
        ("ticket", "list"),
        ("ticket", "show", str(doc["ticket"])),
        ("--json", "ticket", "show", str(doc["ticket"])),
        ("--json", "ticket", "list"),
    ):
        out = desk(*args).stdout
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out, args
    human = desk("ticket", "show", str(doc["ticket"])).stdout
    assert "RED" in human and "[bold]x[/bold]" in human  # text kept, markup not interpreted


def test_raw_shows_the_stored_source_exactly(desk: Run, tmp_path: Path) -> None:
    raw = make_mail(message_id="<exact@example.org>")
    doc = ingest(desk, tmp_path, "a.eml", raw)
    by_id = desk("ticket", "show", str(doc["ticket"]), "--raw", str(doc["message"]))
    by_header = desk("ticket", "show", str(doc["ticket"]), "--raw", "<exact@example.org>")
    assert by_id.stdout.encode() == raw == by_header.stdout.encode()


def test_an_unknown_ticket_is_not_found(desk: Run) -> None:
    result = desk("--json", "ticket", "show", "999")
    assert result.exit_code == 3
    assert result.json() == {
        "error": {"code": "not_found", "message": "no ticket 999 (see `deskctl ticket list`)"}
    }
    assert result.stderr.strip() == "deskctl: error: no ticket 999 (see `deskctl ticket list`)"


def test_queues_have_colours_and_a_default(desk: Run) -> None:
    assert desk("queue", "add", "billing", "--color", "yellow").exit_code == 0
    queues = {q["name"]: q for q in desk("--json", "queue", "list").json()["queues"]}
    assert queues["general"]["default"] is True
    assert queues["billing"]["color"] == "yellow"
    assert desk("queue", "add", "billing").exit_code == 4
    bad = desk("queue", "add", "x", "--color", "chartreuse-ish")
    assert bad.exit_code == 2 and "unknown colour" in bad.stderr


def test_wrong_options_exit_2(desk: Run) -> None:
    assert desk("ticket", "list", "--no-such-option").exit_code == 2
    assert desk("ticket", "show", "not-a-number").exit_code == 2


def test_search_finds_words_in_titles_bodies_and_addresses_through_the_index(
    desk: Run, tmp_path: Path
) -> None:
    ingest(
        desk,
        tmp_path,
        "a.eml",
        make_mail(
            subject="Réseau lent au bureau",
            sender="noor@clinic.example",
            body="Le wifi coupe toutes les heures.\n",
        ),
    )
    ingest(
        desk,
        tmp_path,
        "b.eml",
        make_mail(
            subject="Invoice question", sender="sam@shop.example", body="Where is invoice 2026-7?\n"
        ),
    )

    def titles(query: str) -> list[str]:
        result = desk("--json", "ticket", "list", "--search", query)
        assert result.exit_code == 0, result.stderr
        return [t["title"] for t in result.json()["tickets"]]

    assert titles("wifi heures") == ["Réseau lent au bureau"]
    assert titles("reseau") == ["Réseau lent au bureau"] or titles("réseau") == [
        "Réseau lent au bureau"
    ]
    assert titles("invoice") == ["Invoice question"]
    assert titles("shop.example") == ["Invoice question"]
    # query syntax is never interpreted, only the words count
    assert titles('"wifi" (coupe* -') == ["Réseau lent au bureau"]
    assert titles("nothing-like-this") == []
    assert desk("ticket", "list", "--search", "   ").exit_code == 2


def test_json_keys_come_in_the_order_cli_md_lists_them(desk: Run, tmp_path: Path) -> None:
    """Scripts may diff the text; the key order is part of what they see."""
    doc = ingest(desk, tmp_path, "a.eml", make_mail())
    listed = desk("--json", "ticket", "list").json()["tickets"][0]
    assert list(listed) == [
        "id", "number", "title", "status", "queue", "customer", "assignee", "updated_at",
        "messages", "last_message_at",
    ]  # fmt: skip
    shown = desk("--json", "ticket", "show", str(doc["ticket"])).json()
    assert list(shown) == [
        "id", "number", "title", "status", "queue", "channel", "customer", "assignee",
        "created_at", "updated_at", "messages", "reply_recipients",
    ]  # fmt: skip


def test_an_attachments_content_type_and_an_open_escape_in_a_body_reach_no_terminal(
    desk: Run, tmp_path: Path
) -> None:
    raw = (
        b"From: Eve <eve@example.org>\r\nTo: support@example.test\r\nSubject: logs\r\n"
        b"Message-ID: <ctype@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hello,\xc2\x9d the log \x1b]0;retitled is attached.\r\nPlease look.\r\n"
        b"--b\r\nContent-Type: application/x-\x1b[31mred\x1b]2\x07\x1b[2Jlog\r\n"
        b'Content-Disposition: attachment; filename="app.log"\r\n\r\nlog lines\r\n--b--\r\n'
    )
    doc = ingest(desk, tmp_path, "ctype.eml", raw)
    shown = desk("ticket", "show", str(doc["ticket"])).stdout
    assert "\x1b" not in shown and "\x07" not in shown and "\x9d" not in shown
    assert "attachment 1: app.log (application/x-redlog, 9 bytes)" in shown
    # Only the open sequence's introducer went: the rest of the body is there.
    assert "Hello, the log 0;retitled is attached.\nPlease look." in shown
    for args in (("explain",), ("--json", "explain"), ("--json", "ticket", "show")):
        target = str(doc["ticket"]) if "show" in args else str(tmp_path / "ctype.eml")
        out = desk(*args, target).stdout
        assert "\x1b" not in out and "\x07" not in out and "\x9d" not in out, args


def test_a_search_too_long_for_the_index_is_a_usage_error_naming_the_limit(
    desk: Run, tmp_path: Path
) -> None:
    ingest(desk, tmp_path, "a.eml", make_mail(subject="Drucker kaputt"))
    # Each of these failed in the database before (exit 6), on one backend or the other.
    for text in ("x" * 60_000, " ".join(["drucker"] * 30_000), "ü" * 1024):
        result = desk("ticket", "list", "--search", text)
        assert result.exit_code == 2, result.stderr
        assert "--search is too long for the index: at most 2047 bytes" in result.stderr
    for text in ("drucker " + "x" * 2039, " ".join(["d"] * 1024)):
        at_limit = desk("--json", "ticket", "list", "--search", text)
        assert at_limit.exit_code == 0, at_limit.stderr
