"""Building the mail an agent's reply becomes. Pure: no database, no network.

A reply must thread in every mail program: it carries a Message-ID we make,
In-Reply-To and References to the message answered, and the ticket token in
the subject, so the customer's answer finds its ticket again whichever rule
their mail program honours.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import BaseHeader, HeaderRegistry, UniqueAddressHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, make_msgid
from typing import Any, cast

from deskctl.mail.addresses import split_address, wire_address
from deskctl.mail.headers import header_text, message_ids
from deskctl.mail.parsed import Address

#: deskctl marks everything it sends with this header, naming the installation
#: (``deskctl <instance> ticket <N>``): seeing our own instance on incoming mail
#: means our mail came back (a loop); another instance is another company's
#: help desk writing to us, which is a customer like any other.
LOOP_HEADER = "X-Deskctl-Loop"
_INSTANCE = re.compile(r"^deskctl ([0-9a-f]{16})(?: |$)")


def loop_token(instance: str, ticket_number: int) -> str:
    return f"deskctl {instance} ticket {ticket_number}"


def loop_instance(token: str) -> str | None:
    """The installation that sent mail with loop header ``token``.

    None for the header deskctl wrote before it named its installation
    (``deskctl ticket N``), and for anything else a sender put there.
    """
    found = _INSTANCE.match(token)
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Quoted:
    """The message being answered, quoted below the reply."""

    sender: Address
    date: datetime | None
    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    body: str
    message_id: str  # without <>
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    signature: str | None = None
    quoted: Quoted | None = None
    attachments: tuple[OutgoingAttachment, ...] = ()
    date: datetime | None = None
    loop_token: str = "deskctl"
    auto_submitted: str | None = None  # e.g. "auto-replied" for acknowledgements


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain or "deskctl.invalid").strip("<>")


def quote_text(quoted: Quoted) -> str:
    who = quoted.sender.name or quoted.sender.email
    when = quoted.date.strftime("%a, %d %b %Y %H:%M") if quoted.date else "earlier"
    lines = quoted.text.rstrip().splitlines() or [""]
    return f"On {when}, {who} wrote:\n" + "\n".join(f"> {line}".rstrip() for line in lines)


def text_part(reply: Reply) -> str:
    parts = [reply.body.rstrip()]
    if reply.signature:
        parts.append("-- \n" + reply.signature.rstrip())
    if reply.quoted is not None:
        parts.append(quote_text(reply.quoted))
    return "\n\n".join(parts) + "\n"


def _paragraphs(text: str) -> str:
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return "".join(f"<p>{html.escape(b).replace(chr(10), '<br>')}</p>" for b in blocks)


def html_part(reply: Reply) -> str:
    """A plain HTML rendering of the text, for mail programs that prefer HTML."""
    out = [_paragraphs(reply.body)]
    if reply.signature:
        signature = html.escape(reply.signature.rstrip()).replace("\n", "<br>")
        out.append(f'<p class="signature">-- <br>{signature}</p>')
    if reply.quoted is not None:
        q = reply.quoted
        who = html.escape(q.sender.name or q.sender.email)
        out.append(f"<p>{who} wrote:</p><blockquote>{_paragraphs(q.text)}</blockquote>")
    return "<!DOCTYPE html><html><body>" + "".join(out) + "</body></html>"


#: The longest msg-id we write: with ``In-Reply-To: <...>`` it still fits the
#: 998 characters SMTP allows on a line. A longer one is left out; the
#: subject token threads instead.
MAX_MSG_ID = 980
_MSG_ID_TEXT = re.compile(r"[!-;=?-~]+")  # printable ASCII, no blank and no angle bracket


def usable_msg_id(ident: str) -> bool:
    """True for an id we can write as ``<id>``: printable ASCII, bounded.

    An id with a non-ASCII domain (RFC 6532 mail) cannot go in these headers
    without SMTPUTF8, and one with a blank or a control would not be a msg-id.
    """
    return len(ident) <= MAX_MSG_ID and _MSG_ID_TEXT.fullmatch(ident) is not None


#: The most msg-ids our References names. Mail programs append every id they
#: are given, and a sender can write thousands: past this the list keeps the
#: thread's first mail and the newest ones, as RFC 5537 3.4.4 trims, which is
#: all threading needs (the newest id is the mail answered).
MAX_REFERENCES = 20


def thread_references(ids: Iterable[str]) -> tuple[str, ...]:
    """The usable ids of ``ids``, each once, trimmed to :data:`MAX_REFERENCES`."""
    refs = tuple(dict.fromkeys(r for r in ids if r and usable_msg_id(r)))
    if len(refs) <= MAX_REFERENCES:
        return refs
    return (refs[0], *refs[len(refs) - MAX_REFERENCES + 1 :])


def _fold_words(name: str, words: list[str], policy: Policy) -> str:
    """``Name: w1 w2 ...`` folded only between words, never inside one.

    The first word stays on the field's line however long it is; a word that
    does not fit the line it would end starts a line of its own, unbroken.
    """
    width = policy.max_line_length or 0
    lines = [f"{name}:"]
    for number, word in enumerate(words):
        if number == 0 or not width or len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(" " + word)
    return policy.linesep.join(lines) + policy.linesep


class MessageIdsHeader:
    """In-Reply-To and References written as RFC 5322 3.6.4 says: msg-ids, as they are.

    The email package treats these fields as unstructured text, so an id of
    78 characters or more (the usual Microsoft 365 shape) came out as an
    ``=?utf-8?q?...?=`` word, which no mail program matches. Here the value
    is the ids themselves, folded only between two ids (:func:`_fold_words`).
    Mixed into the email package's header class by :data:`REPLY_POLICY`.
    """

    max_count = 1
    _name: str
    ids: tuple[str, ...]

    @classmethod
    def parse(cls, value: str | Iterable[str], kwds: dict[str, Any]) -> None:
        ids = message_ids(value) if isinstance(value, str) else tuple(value)
        kwds["ids"] = tuple(ident for ident in ids if usable_msg_id(ident))
        kwds["decoded"] = " ".join(f"<{ident}>" for ident in kwds["ids"])

    def init(self, name: str, *, ids: tuple[str, ...], defects: list[Any]) -> None:
        self._name = name
        self._defects = defects
        self.ids = ids

    def fold(self, *, policy: Policy) -> str:
        return _fold_words(self._name, [f"<{ident}>" for ident in self.ids], policy)


# A display name of these characters goes out as it is: atoms, no "=" or "?"
# that could start an encoded word.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]+")
_EW_BYTES = 45  # base64 of 45 bytes: a 72-character encoded word (RFC 2047 allows 75)


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 UTF-8 encoded words, each whole and short enough for a line."""
    chunks = [""]
    for ch in text:
        if len((chunks[-1] + ch).encode()) > _EW_BYTES:
            chunks.append("")
        chunks[-1] += ch
    return [f"=?utf-8?b?{base64.b64encode(c.encode()).decode()}?=" for c in chunks]


def _mixed_words(text: str, plain: Callable[[str], bool]) -> list[str]:
    """``text`` word by word: ``plain`` words as they are, the others encoded.

    A decoder drops the blank between two encoded words (RFC 2047 6.2), so
    the blank goes inside the first of them.
    """
    parts = text.split(" ") if text else []
    keep = [plain(part) for part in parts]
    words: list[str] = []
    for i, part in enumerate(parts):
        if keep[i]:
            words.append(part)
        else:
            joined = i + 1 < len(parts) and not keep[i + 1]
            words += _encoded_words(part + " " if joined else part)
    return words


def _display_words(name: str) -> list[str]:
    """A display name as words that fold cleanly and keep their meaning.

    Plain atoms as they are; other ASCII as one quoted-string, never split
    (the email package, 3.11, folds a long quoted name by dropping its
    quotes, which turns ``"Invoice Bcc: victim@example.com ..."`` into a
    group of recipients for whoever answers to all); anything else word by
    word, encoded where needed.
    """
    if _PLAIN_NAME.fullmatch(name):
        return name.split()
    if name.isascii():
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _mixed_words(name, lambda part: _PLAIN_NAME.fullmatch(part) is not None)


#: An ASCII word of a subject longer than this is encoded, in pieces, so no
#: line comes near SMTP's 998 characters.
_LONGEST_WORD = 200


class TextHeader:
    """The Subject, written from its text by us; the email package never re-reads it.

    Handed to the email package as a string, the subject would be parsed
    again, and its parser decodes any encoded word it finds, wherever it is.
    Here the value goes through :func:`~deskctl.mail.headers.header_text`
    (every round decoded, no line break, no control, no ``=?``) and is
    written word by word: ASCII as it is, anything else as encoded words.
    """

    max_count = 1
    _name: str

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["decoded"] = header_text(value)

    def init(self, name: str, *, defects: list[Any]) -> None:
        self._name = name
        self._defects = defects

    def fold(self, *, policy: Policy) -> str:
        words = _mixed_words(str(self), lambda w: w.isascii() and len(w) <= _LONGEST_WORD)
        return _fold_words(self._name, words, policy)


class AddressListHeader(UniqueAddressHeader):
    """From, To and Cc written from their Address objects by us, folded between words only.

    A local part that is not ASCII is written as it is, in UTF-8 (RFC 6532;
    :func:`to_wire` gives such a mail UTF-8 headers): an encoded word is no
    address (RFC 2047, section 5), and the email package's own fold would
    write one. Such mail can travel only with SMTPUTF8: Postfix's sendmail
    asks for it by itself on UTF-8 in the envelope or a header
    (``smtputf8_autodetect_classes = sendmail``), and our SMTP client, which
    does not speak it, refuses the address for good with the reason.
    """

    def fold(self, *, policy: Policy) -> str:
        addresses = self.addresses
        words: list[str] = []
        for number, addr in enumerate(addresses):
            mailbox = (
                [*_display_words(addr.display_name), f"<{addr.addr_spec}>"]
                if addr.display_name
                else [addr.addr_spec]
            )
            if number < len(addresses) - 1:
                mailbox[-1] += ","
            words += mailbox
        return _fold_words(cast(BaseHeader, self).name, words, policy)


_REGISTRY = HeaderRegistry()
for _field in ("in-reply-to", "references"):
    _REGISTRY.map_to_type(_field, MessageIdsHeader)  # type: ignore[arg-type]  # BaseHeader is mixed in
for _field in ("from", "to", "cc"):
    _REGISTRY.map_to_type(_field, AddressListHeader)  # type: ignore[arg-type]
_REGISTRY.map_to_type("subject", TextHeader)  # type: ignore[arg-type]
#: The policy our mail is built and re-read with: the email package's own,
#: but with Subject, In-Reply-To, References, From, To and Cc written by the classes above.
REPLY_POLICY = email_policy.default.clone(header_factory=_REGISTRY)
WIRE_POLICY = REPLY_POLICY.clone(linesep="\r\n")  # SMTP's line ends
#: For mail to or from an address with a UTF-8 local part (RFC 6532).
WIRE_UTF8_POLICY = WIRE_POLICY.clone(utf8=True)

#: Display names are cut here: a name is for people, and the line it is on
#: must stay under SMTP's 998 characters.
MAX_DISPLAY_NAME = 200


def _header_address(addr: Address) -> HeaderAddress:
    """A structured address: the display name made inert, the local part quoted once."""
    local, domain = split_address(wire_address(addr.email))
    name = header_text(addr.name)[:MAX_DISPLAY_NAME].rstrip()
    return HeaderAddress(display_name=name, username=local, domain=domain)


def compose(reply: Reply) -> EmailMessage:
    """The reply as a MIME message, every header built from a value no decoder can open.

    Addresses are :class:`~email.headerregistry.Address` objects, the ids
    :class:`MessageIdsHeader` values, and every text from mail or from the
    agent (subject, names, file names) has gone through
    :func:`~deskctl.mail.headers.header_text`: fully decoded, no line break,
    no control, no ``=?`` left for the email package or a reader to decode.
    """
    msg = EmailMessage(policy=REPLY_POLICY)
    msg["From"] = _header_address(reply.sender)
    msg["To"] = [_header_address(a) for a in reply.to]
    if reply.cc:
        msg["Cc"] = [_header_address(a) for a in reply.cc]
    msg["Subject"] = reply.subject  # made inert by TextHeader
    if reply.date is not None:
        msg["Date"] = format_datetime(reply.date)
    msg["Message-ID"] = f"<{reply.message_id}>"
    # The [#N] subject token still carries the thread when no id is usable.
    if reply.in_reply_to and usable_msg_id(reply.in_reply_to):
        msg["In-Reply-To"] = (reply.in_reply_to,)
    refs = thread_references(reply.references)
    if refs:
        msg["References"] = refs
    msg[LOOP_HEADER] = header_text(reply.loop_token)
    if reply.auto_submitted:
        msg["Auto-Submitted"] = reply.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text_part(reply))
    msg.add_alternative(html_part(reply), subtype="html")
    for att in reply.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=header_text(att.filename) or "attachment",
        )
    return msg


def to_wire(msg: EmailMessage) -> bytes:
    """The bytes as they go on the wire: CRLF line ends, as SMTP requires.

    Headers are ASCII unless an address has a UTF-8 local part: that mail is
    RFC 6532 mail whatever else it says, so its headers are UTF-8.
    """
    utf8 = any(
        not address.addr_spec.isascii()
        for field in ("From", "To", "Cc")
        if (header := msg[field]) is not None
        for address in header.addresses
    )
    return msg.as_bytes(policy=WIRE_UTF8_POLICY if utf8 else WIRE_POLICY)


def without_recipients(raw: bytes, drop: set[str]) -> bytes:
    """The same message with some Cc addresses removed; everything else unchanged.

    The kept addresses go back as the parsed Address objects, and the message
    is re-read with :data:`WIRE_POLICY`, so a long References line is folded
    between its ids again rather than encoded.
    """
    from email import message_from_bytes

    msg = message_from_bytes(raw, _class=EmailMessage, policy=WIRE_POLICY)
    cc = msg["Cc"]
    kept = [a for a in cc.addresses if a.addr_spec.lower() not in drop] if cc else []
    del msg["Cc"]
    if kept:
        msg["Cc"] = kept
    return msg.as_bytes()
