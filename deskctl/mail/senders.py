"""From: who the customer is, read from the header as mail programs really write it.

Kept apart from the recipient parsing in ``headers.py`` and from the cheap
address helpers in ``addresses.py`` (which the read path imports): From
decides who a ticket belongs to and is written by every kind of program, so
it gets the forgiving treatment below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from deskctl.mail.headers import collapse, decode_fully, parse_addresses, raw_text
from deskctl.mail.parsed import Address

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*\?=")
_MASK = re.compile(r"=\?(\d+)\?=")
_NULL_SENDER = re.compile(r"<\s*>")
_USABLE = re.compile(r"[^@\s\ufffd]+@[^@\s\ufffd]+\.?[^@\s\ufffd]*")


@dataclass(frozen=True, slots=True)
class FromField:
    """The mailboxes of a From header and whether it is the null sender ``<>``."""

    mailboxes: tuple[Address, ...]
    null_sender: bool


def parse_from(values: Sequence[str], fallbacks: Sequence[str] = ()) -> FromField:
    """Every mailbox of From, with encoded words that hide specials read whole.

    ``=?utf-8?q?Smith,_John?=`` carries a raw comma that would split the list,
    and ``=?utf-8?q?Smith=2C_John?=`` decodes to one; both are one display
    name. The words are masked before the list is split and decoded after.
    """
    found: list[Address] = []
    null_sender = False
    for value in values:
        text = raw_text(value, fallbacks)
        if "=?" not in text:  # the common case: nothing to mask
            mailboxes = parse_addresses([text], fallbacks)
        else:
            mailboxes = _parse_masked(text, fallbacks)
        found += mailboxes
        if "<" in text and _NULL_SENDER.search(text) and not any(map(usable, mailboxes)):
            null_sender = True
    return FromField(tuple(found), null_sender)


def _parse_masked(text: str, fallbacks: Sequence[str]) -> list[Address]:
    """Mailboxes of ``text`` with each encoded word kept whole while the list is split."""
    words: list[str] = []

    def mask(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"=?{len(words) - 1}?="

    masked = _ENCODED_WORD.sub(mask, text)
    return [
        Address(
            name=collapse(decode_fully(_MASK.sub(partial(_unmask, words), m.name), fallbacks)),
            email=m.email,
        )
        for m in parse_addresses([masked], fallbacks)
    ]


def _unmask(words: list[str], match: re.Match[str]) -> str:
    return words[int(match.group(1))]


def usable(address: Address) -> bool:
    """An address a ticket can be answered at: ``local@domain``, no garbage in it."""
    return bool(_USABLE.fullmatch(address.email))


def choose_sender(
    from_: FromField, *others: tuple[str, Sequence[Address]]
) -> tuple[Address | None, str]:
    """The customer and where they were found: ``from``, or the header used instead.

    The first usable From mailbox is the customer (a From listing several
    people names the author first). The null sender ``Name <>`` is a mail
    system speaking, kept as it is. When From is missing or decodes to garbage,
    the ``others`` are tried in order (Sender, Reply-To, the envelope's
    Return-Path) and the source says which one was used, so the ticket can
    tell an agent the customer was not taken from From.
    """
    for address in from_.mailboxes:
        if usable(address):
            return address, "from"
    if from_.null_sender:
        name = next((a.name for a in from_.mailboxes if a.name), "")
        return Address(name=name, email=""), "from"
    name = next((a.name for a in from_.mailboxes if a.name and "\ufffd" not in a.name), "")
    for source, addresses in others:
        for address in addresses:
            if usable(address):
                return Address(name=address.name or name, email=address.email), source
    if from_.mailboxes:
        return from_.mailboxes[0], "from"
    return None, "none"
