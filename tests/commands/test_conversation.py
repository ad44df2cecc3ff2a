"""Reading a conversation: quoted history folded, who wrote to whom, links kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Run
from corpus_manifest import CORPUS_DIR
from deskctl.mail.parse import parse_mail
from deskctl.mail.quotes import folds, new_text_end
from mailfactory import make_mail

ANSWERS = [
    "The printer on floor 2 is on fire.\n",
    "It is still smoking.\n\nOn Mon, 2 Nov 2026 at 09:30, Support <support@example.test> wrote:\n"
    "> Have you tried turning it off?\n>\n> Support\n",
    "Danke, jetzt geht es.\n\nAm 02.11.2026 um 10:00 schrieb Support <support@example.test>:\n"
    "> Please unplug it.\n",
    "Sorry, one more thing: the paper tray.\n\n________________________________\n"
    "From: Support <support@example.test>\nSent: Monday, 2 November 2026 11:00\n"
    "To: Ada Lovelace <ada@example.org>\nSubject: Re: Printer on fire [#1]\n\n"
    "Glad it works.\n\nFrom: Ada\nSent: Monday\nTo: Support\n\nolder text\n",
    "> Which tray?\nThe lower one.\n> Since when?\nSince Tuesday.\n",
]


@pytest.fixture
def conversation(desk: Run, tmp_path: Path) -> Run:
    """Five mails from Ada on one ticket (the pipe channel replies through the test relay)."""
    pipe = ("channel", "add", "support", "--kind", "pipe", "--address", "support@example.test")
    assert desk(*pipe).exit_code == 0
    out = ("channel", "add-outgoing", "out", "--kind", "smtp", "--host", "127.0.0.1")
    assert desk(*out, "--from", "Support <support@example.test>").exit_code == 0
    assert desk("channel", "map", "support", "--reply-via", "out").exit_code == 0
    for n, body in enumerate(ANSWERS):
        raw = make_mail(
            body=body,
            message_id=f"<a{n}@example.org>",
            in_reply_to=f"<a{n - 1}@example.org>" if n else None,
            cc="Bob <bob@example.org>" if n == 1 else None,
        )
        assert desk("ingest", "--channel", "support", "-", stdin=raw).exit_code == 0
    return desk


def test_five_mails_shown_folded_and_in_full(conversation: Run) -> None:
    folded = conversation("ticket", "show", "1").stdout
    for new in (
        "It is still smoking.",
        "Danke, jetzt geht es.",
        "the paper tray.",
        "Since Tuesday.",
    ):
        assert new in folded
    for old in ("Have you tried", "Please unplug", "Glad it works", "older text"):
        assert old not in folded
    assert "[… 4 lines quoted, folded; --full shows them]" in folded  # "On ... wrote:" + 3
    assert "lines of quoted history, folded" in folded  # Outlook's block without ">"
    # An interleaved answer keeps its own lines; only the quotes fold.
    assert "The lower one." in folded and "Which tray?" not in folded
    full = conversation("ticket", "show", "1", "--full").stdout
    for old in ("Have you tried", "Please unplug", "Glad it works", "older text", "Which tray?"):
        assert old in full
    assert "folded" not in full


def test_json_keeps_the_body_whole_and_says_where_the_new_text_ends(conversation: Run) -> None:
    messages = conversation("--json", "ticket", "show", "1").json()["messages"]
    cuts = [m["body"][: m["new_text_end"]] for m in messages]
    assert cuts[:4] == [
        "The printer on floor 2 is on fire.\n",
        "It is still smoking.",
        "Danke, jetzt geht es.",
        "Sorry, one more thing: the paper tray.",
    ]
    assert cuts[4] == messages[4]["body"]  # interleaved: the text runs to the end
    assert "Have you tried turning it off?" in messages[1]["body"]


def test_every_message_says_who_it_went_to_and_who_wrote_it(conversation: Run) -> None:
    assert conversation("ticket", "show", "1").exit_code == 0
    note = conversation("ticket", "note", "1", "--agent", "grace", "--body", "Called Ada.")
    assert note.exit_code == 0
    sent = conversation("ticket", "reply", "1", "--force", "--agent", "grace", "--body", "Go.")
    assert sent.exit_code == 0, sent.stderr
    shown = conversation("ticket", "show", "1").stdout
    assert "to: support@example.test  cc: Bob <bob@example.org>" in shown
    assert "to: Ada Lovelace <ada@example.org>" in shown  # our reply
    (noted,) = [line for line in shown.splitlines() if line.startswith("[6] note")]
    assert "by grace" in noted and "<>" not in noted
    (reply,) = [line for line in shown.splitlines() if line.startswith("[7] out")]
    assert "Support <support@example.test>" in reply and "by grace" in reply


def test_html_only_mail_keeps_its_link_targets(desk: Run) -> None:
    html = (
        b"From: Ada <ada@example.org>\r\nTo: support@example.test\r\nSubject: Screenshot\r\n"
        b"Message-ID: <h@example.org>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Here is <a href="https://share.example.org/shot.png">my screenshot</a>.</p>\r\n'
    )
    assert desk("ingest", "-", stdin=html).exit_code == 0
    body = desk("--json", "ticket", "show", "1").json()["messages"][0]["body"]
    assert body == "Here is my screenshot <https://share.example.org/shot.png>."


def test_reply_headers_in_the_corpus_fold_and_the_new_text_stays() -> None:
    """Real mail programs' answers: each folds, and what the customer wrote stays in view."""
    expected = {
        # file: (first words of the new text, first folded line)
        "replies-threading/zammad__mail003.eml": "Von: Fritz Bauer",
        "replies-threading/zammad__mail082.eml": "From: John Smith",
        "replies-threading/mailparser__mail_test_7.eml": "Da: export@agade.info",
        "plain/djhelpdesk__forwarded-message.eml": "-----Original Message-----",
    }
    for name, first_folded in expected.items():
        body = parse_mail((CORPUS_DIR / name).read_bytes()).text
        found = folds(body)
        assert found, name
        assert body.split("\n")[found[-1].first].strip().startswith(first_folded), name
        assert body[: new_text_end(body, found)].strip(), name
    # A bottom-posted answer under a quoted "Am ... schrieb": the quote folds, the answer stays.
    body = parse_mail((CORPUS_DIR / "replies-threading/zammad__mail005.eml").read_bytes()).text
    (quote,) = folds(body)
    assert quote.kind == "quote" and quote.first == 0
    assert "Grüße aus Bonn" in "\n".join(body.split("\n")[quote.last + 1 :])
    # A forwarded mail is the substance: it is not folded away.
    fwd = "replies-threading/mikel__attachment_emails__attachment_with_base64_encoded_name.eml"
    assert folds(parse_mail((CORPUS_DIR / fwd).read_bytes()).text) == []


def test_text_that_only_looks_like_a_header_is_not_folded() -> None:
    for body in (
        "Data: 2026-01-01\nThe error is here\n",
        "Hello\nNote: the printer is red.\nBye",
        "Subject: my invoice\nPlease resend it.\n",
    ):
        assert folds(body) == [] and new_text_end(body) == len(body), body
