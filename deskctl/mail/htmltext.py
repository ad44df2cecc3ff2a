"""HTML to readable text for HTML-only mail.

inscriptis (and lxml under it) is imported on first use only: most mail has a
text/plain part, and the fetch job should not pay the import for every run.
"""

from __future__ import annotations

import re

_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_XML_DECLARATION = re.compile(r"^<\?xml [^>]+?\?>")


def html_to_text(html: str) -> str:
    """Text an agent can read in a terminal, with the layout of lists and tables kept.

    A link keeps its target, as ``text <url>``: "click here" alone would lose
    the one thing the customer sent (a download, a screenshot on a share).
    """
    if not html.strip():
        return ""
    try:
        text = _text_with_links(html)
    except (ValueError, TypeError):  # lxml refuses some documents outright
        text = re.sub(r"<[^>]*>", " ", html)
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", lines).strip("\n")


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
