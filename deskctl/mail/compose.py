"""Building the mail an agent's reply becomes. Pure: no database, no network.

A reply must thread in every mail program: it carries a Message-ID we make,
In-Reply-To and References to the message answered, and the ticket token in
the subject, so the customer's answer finds its ticket again whichever rule
their mail program honours.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from deskctl.mail.addresses import wire_address
from deskctl.mail.parsed import Address
from deskctl.mail.sanitize import safe_header_value

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
    extra_headers: dict[str, str] = field(default_factory=dict)


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


def _header_address(addr: Address) -> HeaderAddress:
    local, _, domain = wire_address(addr.email).rpartition("@")
    return HeaderAddress(display_name=safe_header_value(addr.name), username=local, domain=domain)


def compose(reply: Reply) -> EmailMessage:
    """The reply as a MIME message; header values with line breaks are refused."""
    msg = EmailMessage()
    msg["From"] = _header_address(reply.sender)
    msg["To"] = [_header_address(a) for a in reply.to]
    if reply.cc:
        msg["Cc"] = [_header_address(a) for a in reply.cc]
    msg["Subject"] = safe_header_value(reply.subject)
    if reply.date is not None:
        msg["Date"] = format_datetime(reply.date)
    msg["Message-ID"] = f"<{reply.message_id}>"
    # An id with a non-ASCII domain (RFC 6532 mail) cannot go in these headers
    # without SMTPUTF8; the [#N] subject token still carries the thread.
    if reply.in_reply_to and reply.in_reply_to.isascii():
        msg["In-Reply-To"] = f"<{safe_header_value(reply.in_reply_to)}>"
    refs = [r for r in reply.references if r and r.isascii()]
    if refs:
        msg["References"] = " ".join(f"<{safe_header_value(r)}>" for r in refs)
    msg[LOOP_HEADER] = safe_header_value(reply.loop_token)
    if reply.auto_submitted:
        msg["Auto-Submitted"] = reply.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    for name, value in reply.extra_headers.items():
        msg[name] = safe_header_value(value)
    msg.set_content(text_part(reply))
    msg.add_alternative(html_part(reply), subtype="html")
    for att in reply.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.data, maintype=maintype, subtype=subtype or "octet-stream", filename=att.filename
        )
    return msg


def to_wire(msg: EmailMessage) -> bytes:
    """The bytes as they go on the wire: CRLF line ends, as SMTP requires."""
    from email import policy

    return msg.as_bytes(policy=policy.SMTP)


def without_recipients(raw: bytes, drop: set[str]) -> bytes:
    """The same message with some Cc addresses removed; everything else unchanged."""
    from email import message_from_bytes, policy
    from email.utils import getaddresses

    msg = message_from_bytes(raw, policy=policy.SMTP)
    cc = [a for a in getaddresses(msg.get_all("Cc", [])) if a[1].lower() not in drop]
    del msg["Cc"]
    if cc:
        msg["Cc"] = ", ".join(str(HeaderAddress(display_name=n, addr_spec=e)) for n, e in cc)
    return msg.as_bytes()
