"""A huge HTML-only mail costs the parser a bounded prefix, and the text says so."""

from __future__ import annotations

from email.message import EmailMessage

from deskctl.mail.htmltext import HTML_LIMIT, html_to_text
from deskctl.mail.parse import parse_mail


def test_only_the_first_2_mb_of_html_become_text_and_the_rest_is_noted() -> None:
    rows = "".join(f"<p>row {i} of the export</p>\n" for i in range(200_000))
    html = f"<html><body><h1>Export</h1>{rows}<p>THE LAST ROW</p></body></html>"
    assert len(html) > 2 * HTML_LIMIT
    msg = EmailMessage()
    msg["From"] = "reports@example.org"
    msg["Subject"] = "Nightly export"
    msg.set_content(html, subtype="html")

    mail = parse_mail(msg.as_bytes())
    assert mail.text.startswith("Export") and "row 1 of the export" in mail.text
    assert "THE LAST ROW" not in mail.text
    assert mail.text.endswith(
        "characters of this HTML were turned into text; the rest is in the raw message]"
    )
    assert mail.html is not None and "THE LAST ROW" in mail.html, "the HTML itself is kept whole"
    assert f"of {len(mail.html)} characters" in mail.text
    assert "<p" not in mail.text, "the cut falls before a tag, not inside one"


def test_html_under_the_bound_is_converted_whole_without_a_note() -> None:
    text = html_to_text("<p>first</p>" + "<p>filler</p>" * 1000 + "<p>last</p>")
    assert text.startswith("first") and text.endswith("last")
