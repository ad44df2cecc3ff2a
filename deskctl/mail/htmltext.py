"""HTML to readable text for HTML-only mail.

inscriptis (and lxml under it) is imported on first use only: most mail has a
text/plain part, and the fetch job should not pay the import for every run.

Lists keep their bullets and numbers (inscriptis lays them out), and a link
keeps where it points: ``see your order <https://shop.example/42>``. An agent
answering from the terminal needs the address the customer clicked, and
"click here" alone tells nothing.

Only the first :data:`HTML_LIMIT` characters are converted: the converter's
tree costs many times the HTML's size, so a hostile 20 MB HTML part would
otherwise cost hundreds of MB; the text says where it stopped, and the whole
part stays in the stored raw message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lxml.html import HtmlElement

_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
#: How much HTML is turned into text (2 MB); the rest is noted, not converted.
HTML_LIMIT = 2 * 1000 * 1000
_XML_DECLARATION = re.compile(r"^<\?xml [^>]+?\?>")
_SHOWN_SCHEMES = ("http://", "https://", "mailto:", "ftp://", "tel:")


def html_to_text(html: str) -> str:
    """Text an agent can read in a terminal, with the layout of lists and tables kept."""
    if not html.strip():
        return ""
    from inscriptis import Inscriptis
    from lxml.etree import LxmlError

    kept = html
    if len(html) > HTML_LIMIT:
        # Cut before a tag rather than inside one, unless that loses too much.
        cut = html.rfind("<", 0, HTML_LIMIT)
        kept = html[: cut if cut > HTML_LIMIT // 2 else HTML_LIMIT]
    try:
        tree = _html_tree(kept)
        _show_link_targets(tree)
        text = Inscriptis(tree).get_text()
    except (ValueError, TypeError, LxmlError):  # lxml refuses some documents outright
        text = re.sub(r"<[^>]*>", " ", kept)
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    text = _BLANK_RUNS.sub("\n\n", lines).strip("\n")
    if kept is not html:
        text += (
            f"\n\n[deskctl: only the first {len(kept)} of {len(html)} characters of this "
            "HTML were turned into text; the rest is in the raw message]"
        )
    return text


def _html_tree(html: str) -> HtmlElement:
    """The document tree; a fragment of bare text is wrapped so lxml takes it."""
    from lxml.etree import ParserError
    from lxml.html import document_fromstring

    html = _XML_DECLARATION.sub("", html.strip(), count=1)  # lxml refuses str with one
    try:
        return document_fromstring(html)
    except ParserError:  # only text, no element at all
        return document_fromstring("<pre>" + html + "</pre>")


def link_target(href: str, text: str) -> str | None:
    """What to write after a link's text, or None when it would add nothing.

    In-page anchors and scripts go nowhere a reader can follow; a link whose
    text already is its address (``https://x.example`` or ``bob@x.example``
    for ``mailto:bob@x.example``) is not repeated; a link with no text (an
    image or a tracking pixel) is left out rather than filling the text with
    bare addresses.
    """
    href = href.strip()
    if not text.strip() or not href.lower().startswith(_SHOWN_SCHEMES):
        return None
    shown = href[len("mailto:") :] if href.lower().startswith("mailto:") else href
    plain = text.strip().strip("<>").rstrip("/").lower()
    if plain in (shown.rstrip("/").lower(), re.sub(r"^[a-z]+://", "", shown.rstrip("/").lower())):
        return None
    return shown


def _show_link_targets(tree: HtmlElement) -> None:
    """Write ``<target>`` after the text of every link that goes somewhere."""
    for anchor in tree.iter("a"):
        target = link_target(anchor.get("href") or "", anchor.text_content())
        if target is not None:
            anchor.tail = f" <{target}>" + (anchor.tail or "")
