"""Subjects: what a ticket is titled, what our reply's subject says, which tokens it carries.

Pure string rules, no database. Mail programs put reply and forward markers in
front of a subject in the language of their user (Outlook's ``AW:``, Swedish
``SV:``, Chinese ``回复：``), count them (``Re[2]:``, ``Re^2:``), and mailing
lists add their tag (``[users]``); a ticket title is the subject without all of
that and without any ticket token, so a conversation keeps one readable title
whoever forwarded it. Our own reply subject is built from that title, so it
never says ``Re: AW: ...`` and carries exactly one token, its ticket's.

A token is ``[#N]`` or ``[TAG #N]``, the shape of RT's ``[rtname #N]``; which
tokens are *ours* depends on the installation's tag and is decided in
:mod:`deskctl.services.threading`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Reply markers mail programs write, by language: English Re, German AW,
#: Scandinavian SV/VS, French RE/Réf., Portuguese and Spanish RES, Italian R/RIF,
#: Dutch Antw, Polish Odp, Turkish YNT, Chinese 回复/答复 (traditional 回覆), Japanese 返信.
REPLY_WORDS = (
    "re",
    "aw",
    "sv",
    "vs",
    "res",
    "réf.",
    "réf",
    "r",
    "rif",
    "odp",
    "antw",
    "ynt",
    "回复",
    "答复",
    "回覆",
    "返信",
)
#: Forward markers: English Fw/Fwd, German WG, Swedish VB, Finnish VL, French TR,
#: Portuguese ENC, Spanish RV, Italian I, Polish PD, Dutch Doorst, Chinese 转发
#: (traditional 轉寄), Japanese 転送.
FORWARD_WORDS = (
    "fw",
    "fwd",
    "wg",
    "vb",
    "vl",
    "tr",
    "enc",
    "rv",
    "i",
    "pd",
    "doorst",
    "转发",
    "轉寄",
    "転送",
)
PREFIX_WORDS = REPLY_WORDS + FORWARD_WORDS


def _marker(words: tuple[str, ...]) -> re.Pattern[str]:
    """A marker, an optional count (Re[2], Re(2), Re^2) and a colon, ASCII or full-width."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\s*(?:{alternatives})\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]", re.IGNORECASE)


_PREFIX = _marker(PREFIX_WORDS)
_REPLY = _marker(REPLY_WORDS)
_FORWARD = _marker(FORWARD_WORDS)
# A list tag: Mailman's [list-name], written in front of list mail's subjects.
_LIST_TAG = re.compile(r"\s*\[[^\[\]#]{1,64}\]")
#: ``[#12]`` or ``[ACME #12]``: deskctl's ticket token, and RT's, which has the same shape.
TOKEN = re.compile(r"\[\s*(?:(?P<tag>[^\W_][\w.-]{0,31})\s*)?#\s*(?P<number>\d{1,12})\s*\]")
_LEADING_TOKEN = re.compile(r"\s*" + TOKEN.pattern)
_TAG = re.compile(r"^[^\W_][\w.-]{0,31}$")

PLAIN_TAG = "#"

#: The longest title a ticket keeps, in characters (Jira caps a summary at 255 too):
#: room for any real subject, while a 100 KB one cannot fill ``ticket list`` or
#: make our reply's Subject a line no mail server takes. The raw source keeps it whole.
TITLE_MAX = 255
ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class SubjectToken:
    """One token found in a subject: its tag (None for plain ``[#N]``) and number."""

    tag: str | None
    number: int


def check_tag(tag: str) -> str:
    """``tag`` if it can stand in a token, else ValueError saying what may.

    Letters, digits, ``.``, ``-`` and ``_`` (up to 32, starting with a letter or
    digit), like RT's rtname; ``#`` alone is the plain ``[#N]`` token.
    """
    tag = tag.strip()
    if tag == PLAIN_TAG or _TAG.match(tag):
        return tag
    raise ValueError(
        f"token tag {tag!r} must be '#' or up to 32 letters, digits, '.', '-' or '_'"
        " starting with a letter or digit (e.g. ACME)"
    )


def format_token(number: int, tag: str = PLAIN_TAG) -> str:
    """``[#12]`` for the plain tag, ``[ACME #12]`` for tag ``ACME``."""
    return f"[#{number}]" if tag == PLAIN_TAG else f"[{tag} #{number}]"


def find_tokens(subject: str) -> list[SubjectToken]:
    """Every token in ``subject``, in the order they appear."""
    return [SubjectToken(m.group("tag"), int(m.group("number"))) for m in TOKEN.finditer(subject)]


def clean_title(subject: str, *, list_mail: bool = False) -> str:
    """``subject`` without leading reply/forward markers, list tags and any token.

    A bracket tag at the front is a list's tag when the mail came from a list
    (``list_mail``) or stands in a chain of markers (``Re: [users] ...``,
    ``[users] Re: ...``: list mail answered); a customer's own
    ``[URGENT] printer down`` keeps it.
    Tokens go wherever they stand: a ticket's title is no place for another
    ticket's number.
    """
    pos, marked = 0, False
    while True:
        if prefix := _PREFIX.match(subject, pos):
            pos, marked = prefix.end(), True
        elif token := _LEADING_TOKEN.match(subject, pos):
            pos = token.end()
        elif (tag := _LIST_TAG.match(subject, pos)) and (
            marked or list_mail or _PREFIX.match(subject, tag.end())
        ):
            pos = tag.end()
        else:
            break
    return " ".join(TOKEN.sub(" ", subject[pos:]).split())


def is_reply(subject: str) -> bool:
    """True when ``subject`` starts with a reply marker (``Re:``, ``AW:``, ``回复：``)."""
    return bool(_REPLY.match(subject))


def is_forward(subject: str) -> bool:
    """True when ``subject`` starts with a forward marker (``Fwd:``, ``WG:``, ``I:``)."""
    return bool(_FORWARD.match(subject))


def ticket_title(subject: str, thread_topic: str = "", *, list_mail: bool = False) -> str:
    """The title of a ticket a mail opens; "" when neither header has any words.

    Outlook sends an empty Subject with the conversation's ``Thread-Topic``
    still set (a reply whose subject the user cleared), so that names it then.
    """
    return _capped(clean_title(subject, list_mail=list_mail) or clean_title(thread_topic))


def _capped(title: str) -> str:
    """``title`` cut to TITLE_MAX characters, the last one an ellipsis.

    The cut never parts a letter from its combining accent or an emoji from the
    joiner and selectors that build it with the next one: the title ends on a
    whole character as a reader sees it.
    """
    if len(title) <= TITLE_MAX:
        return title
    cut = TITLE_MAX - len(ELLIPSIS)
    while cut > 0 and (_joins(title[cut]) or title[cut - 1] == "\u200d"):
        cut -= 1
    return title[:cut].rstrip() + ELLIPSIS


def _joins(char: str) -> bool:
    """True for what belongs to the character before it: a mark, a joiner, a selector."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char in "\u200d\ufe0e\ufe0f"


def reply_subject(title: str, token: str) -> str:
    """``Re: <title> <token>``: one marker, one token, whatever the title carried."""
    return " ".join(part for part in ("Re:", clean_title(title), token) if part)
