"""``format=flowed`` text (RFC 3676) joined back into the paragraphs it was written as.

Apple Mail, Thunderbird and many webmailers wrap long lines at 72 characters
and mark each soft break with a trailing space. Shown as is, a customer's
paragraph turns into a ragged column, and quoted history loses its shape;
joined back, a paragraph is one line again and the terminal wraps it.
"""

from __future__ import annotations

_SIGNATURE = "-- "


def _split_quote(line: str) -> tuple[int, str]:
    """Quote depth and the line without its quote marks and space-stuffing."""
    depth = len(line) - len(line.lstrip(">"))
    content = line[depth:]
    if content.startswith(" "):  # space-stuffing (RFC 3676 4.4), also after quote marks
        content = content[1:]
    return depth, content


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join soft-broken lines; with ``DelSp=yes`` the space before a soft break goes too.

    A line is flowed when it ends in a space, is not the signature separator
    ``-- `` and the next line has the same quote depth (RFC 3676 4.2, 4.5).
    Quote marks are written back as ``> `` so quoted paragraphs stay quoted.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    depth_of_paragraph = 0
    for index, raw in enumerate(lines):
        depth, content = _split_quote(raw)
        if paragraph and depth != depth_of_paragraph:  # a flowed line before a depth change
            out.append(_quoted(depth_of_paragraph, "".join(paragraph)))
            paragraph = []
        flowed = content.endswith(" ") and content != _SIGNATURE and index < len(lines) - 1
        if flowed:
            paragraph.append(content[:-1] if delsp else content)
            depth_of_paragraph = depth
            continue
        paragraph.append(content)
        out.append(_quoted(depth, "".join(paragraph)))
        paragraph = []
    if paragraph:
        out.append(_quoted(depth_of_paragraph, "".join(paragraph)))
    return "\n".join(out)


def _quoted(depth: int, content: str) -> str:
    if not depth:
        return content
    return ">" * depth + (" " + content if content else "")
