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


def html_to_text(html: str) -> str:
    """Text an agent can read in a terminal, with the layout of lists and tables kept."""
    if not html.strip():
        return ""
    from inscriptis import get_text

    kept = html
    if len(html) > HTML_LIMIT:
        # Cut before a tag rather than inside one, unless that loses too much.
        cut = html.rfind("<", 0, HTML_LIMIT)
        kept = html[: cut if cut > HTML_LIMIT // 2 else HTML_LIMIT]
    try:
        text = get_text(kept)
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
