"""HTML to readable text for HTML-only mail.

inscriptis (and lxml under it) is imported on first use only: most mail has a
text/plain part, and the fetch job should not pay the import for every run.
"""

from __future__ import annotations

import re

_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")


def html_to_text(html: str) -> str:
    """Text an agent can read in a terminal, with the layout of lists and tables kept."""
    if not html.strip():
        return ""
    from inscriptis import get_text

    try:
        text = get_text(html)
    except (ValueError, TypeError):  # lxml refuses some documents outright
        text = re.sub(r"<[^>]*>", " ", html)
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", lines).strip("\n")
