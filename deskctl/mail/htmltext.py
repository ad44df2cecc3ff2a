"""HTML to readable text for HTML-only mail.

inscriptis (and lxml under it) is imported on first use only: most mail has a
text/plain part, and the fetch job should not pay the import for every run.

Only the first :data:`HTML_LIMIT` characters are converted: the converter's
tree costs many times the HTML's size, so a hostile 20 MB HTML part would
otherwise cost hundreds of MB; the text says where it stopped, and the whole
part stays in the stored raw message.
"""

from __future__ import annotations

import re

_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
#: How much HTML is turned into text (2 MB); the rest is noted, not converted.
HTML_LIMIT = 2 * 1000 * 1000
_XML_DECLARATION = re.compile(r"^<\?xml [^>]+?\?>")


def html_to_text(html: str) -> str:
    """Text an agent can read in a terminal, with the layout of lists and tables kept.

    A link keeps its target, as ``text <url>``: "click here" alone would lose
    the one thing the customer sent (a download, a screenshot on a share).
    """
    if not html.strip():
        return ""
    kept = html
    if len(html) > HTML_LIMIT:
        # Cut before a tag rather than inside one, unless that loses too much.
        cut = html.rfind("<", 0, HTML_LIMIT)
        kept = html[: cut if cut > HTML_LIMIT // 2 else HTML_LIMIT]
    try:
        text = _text_with_links(kept)
    except (ValueError, TypeError):  # lxml refuses some documents outright
        text = re.sub(r"<[^>]*>", " ", kept)
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    text = _BLANK_RUNS.sub("\n\n", lines).strip("\n")
    if kept is not html:
        text += (
            f"\n\n[deskctl: only the first {len(kept)} of {len(html)} characters of this "
            "HTML were turned into text; the rest is in the raw message]"
        )
    return text


def _text_with_links(html: str) -> str:
    from inscriptis.html_engine import Inscriptis
    from lxml.etree import ParserError
    from lxml.html import document_fromstring

    html = _XML_DECLARATION.sub("", html.strip(), count=1)
    try:  # as inscriptis' get_text parses, so the layout is the same
        tree = document_fromstring(html)
    except ParserError:
        tree = document_fromstring("<pre>" + html + "</pre>")
    for anchor in tree.iter("a"):
        target = (anchor.get("href") or "").strip()
        shown = anchor.text_content().strip()
        if not target or target.startswith("#") or target.lower().startswith("javascript:"):
            continue
        bare = target.removeprefix("mailto:")
        if shown in (target, bare):  # the text is the address already
            continue
        anchor.tail = f" <{bare}>" + (anchor.tail or "")
    return str(Inscriptis(tree).get_text())
