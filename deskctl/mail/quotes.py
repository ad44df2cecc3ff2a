"""Where a mail's own text ends and the history it quotes begins.

A customer's fifth answer carries the four before it: below "On ... wrote:"
(every mail program, in the customer's language), below Outlook's
"From: ... Sent: ..." block with no ``>`` marks, or as ``>`` lines. ``ticket
show`` folds that history into one line; the stored body stays whole.

The reply headers come from mail-parser-reply, a maintained parser that knows
them in 13 languages; it is imported, and its patterns compiled, only for a
body that has a line a header could start (most first mails have none).
``>`` blocks are ours: they are simple, and an answer written between quoted
lines (interleaved) keeps its own text unfolded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from re import Pattern

#: A line that could start a reply header: one ending in a colon ("... wrote:"),
#: a "-----Original Message-----" rule, or a "Name: value" line (Outlook).
_MAYBE_HEADER = re.compile(r"[:：]\s*$|^\s*-{5,}|^[ *>]*[^\s:][^:\n]{0,24}:", re.MULTILINE)
_QUOTED = re.compile(r"^[ \t]*>")
_FORWARD = re.compile(r"^\W*(?:-+ ?Forwarded message ?-+|Begin forwarded message:)", re.I)
#: Outlook's rule of underscores above its header block.
_RULE = re.compile(r"^[ \t]*[_-]{10,}[ \t]*$")
#: An Outlook-style header block needs two of its lines (Polish's pattern takes one:
#: "Data: ..." in a customer's own text would fold everything below it).
_HEADER_LINE = re.compile(r"^[ *>]*[^\s:][^:\n]{0,24}\s?:", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Fold:
    """Lines ``first`` to ``last`` (inclusive) of the body, folded in ``ticket show``."""

    first: int
    last: int
    kind: Literal["history", "quote"]

    @property
    def lines(self) -> int:
        return self.last - self.first + 1


@cache
def _markers() -> dict[str, frozenset[str]]:
    """Per language, the words its reply-header patterns contain ("schrieb", "Gesendet").

    Compiling every language's patterns takes about 20 ms, one language's
    under 1 ms; a body is matched only against the languages whose words it
    contains (English always, as the parser itself does). The words are read
    from the parser's own patterns, so a language it adds needs nothing here.
    """
    from mailparser_reply.constants import MAIL_LANGUAGES

    found = {}
    for language, patterns in MAIL_LANGUAGES.items():
        text = " ".join(str(patterns.get(key, "")) for key in ("wrote_header", "from_header"))
        words = re.findall(r"[^\W\d_]+", re.sub(r"\\.", " ", text))  # escapes are no words
        found[language] = frozenset(w.lower() for w in words if len(w) >= 3 or not w.isascii())
    english = found.get("en", frozenset())
    # Japanese reuses English's header names: its own words alone say it is there.
    return {k: v if k == "en" else v - english for k, v in found.items()}


@cache
def _reply_headers(languages: frozenset[str]) -> Pattern[str]:
    from mailparser_reply.parser import EmailMessage

    return EmailMessage(text="", languages=sorted(languages)).HEADER_REGEX


def _headers_for(text: str) -> Pattern[str]:
    """The reply headers of English and of the languages whose words ``text`` has.

    A three-letter word ("den", "mar") must stand alone; longer ones and
    non-Latin ones may be part of a word ("Gesendet:", "2026年").
    """
    lowered = text.lower()
    words = set(re.findall(r"[^\W\d_]+", lowered))
    languages = {
        language
        for language, markers in _markers().items()
        if any(m in words if len(m) == 3 and m.isascii() else m in lowered for m in markers)
    }
    return _reply_headers(frozenset(languages | {"en"}))


def _above(lines: list[str], index: int) -> int:
    """The nearest non-blank line above ``index``; -1 for none."""
    return next((i for i in range(index - 1, -1, -1) if lines[i].strip()), -1)


def _history_start(lines: list[str]) -> int | None:
    """The line where quoted history below a reply header starts, if any."""
    normal = "\n".join(line.strip() for line in lines)  # as the parser reads mail
    if not _MAYBE_HEADER.search(normal):
        return None
    for match in _headers_for(normal).finditer(normal):
        text = match.group(0).strip("\n")
        if not text.strip():
            continue
        one_line = "\n" not in text.strip()
        if not one_line and len(_HEADER_LINE.findall(text)) < 2 and "-----" not in text:
            continue
        start = match.start() + (len(match.group(0)) - len(match.group(0).lstrip("\n")))
        first = normal.count("\n", 0, start)
        below = next((x for x in lines[first + 1 :] if x.strip()), "")
        if one_line and (not below or _QUOTED.match(below)):
            # "... wrote:" over ">" lines: the quote block is folded on its own, and
            # an answer below it (bottom-posting) stays in view.
            continue
        above = _above(lines, first)
        if above >= 0 and _FORWARD.match(lines[above]):
            continue  # a forwarded mail is the substance, not history
        return above if above >= 0 and _RULE.match(lines[above]) else first
    return None


def folds(body: str) -> list[Fold]:
    """The quoted parts of ``body``, top to bottom, by line (``body.split("\\n")``)."""
    lines = body.split("\n")
    history = _history_start(lines)
    end = len(lines) if history is None else history
    found: list[Fold] = []
    i = 0
    while i < end:
        if not _QUOTED.match(lines[i]):
            i += 1
            continue
        first = i
        while i < end and (_QUOTED.match(lines[i]) or not lines[i].strip()):
            i += 1
        last = i - 1
        while not lines[last].strip():
            last -= 1
        # "X skrev:" over a block, in a language the parser does not know, goes with it.
        if first > 0 and lines[first - 1].rstrip().endswith((":", "：")):
            first -= 1
        found.append(Fold(first, last, "quote"))
    if history is not None:
        last = len(lines) - 1
        while last > history and not lines[last].strip():
            last -= 1
        found.append(Fold(history, last, "history"))
    return found


def new_text_end(body: str, found: list[Fold] | None = None) -> int:
    """Where the mail's own text ends: the offset in ``body`` where the trailing
    quoted history starts, or ``len(body)`` when nothing trails.

    An interleaved answer's quote blocks are not its end; only a fold that
    nothing but blank lines follows is.
    """
    found = folds(body) if found is None else found
    if not found:
        return len(body)
    lines = body.split("\n")
    tail = found[-1]
    if any(line.strip() for line in lines[tail.last + 1 :]):
        return len(body)
    offset = sum(len(line) + 1 for line in lines[: tail.first])
    # The blank lines just above the history belong to neither side; the new text ends before.
    while offset > 0 and body[offset - 1] in "\n \t":
        offset -= 1
    return offset
