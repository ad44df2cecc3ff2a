"""Which ticket an incoming message belongs to.

Order (DESIGN.md): a Message-ID we stored or sent named in In-Reply-To or
References; else the ticket token in the subject. A token alone is weak
evidence anyone can type, so it is trusted only from the ticket's customer or
someone already on the conversation; anyone else opens a new ticket instead
of writing into a stranger's ticket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.mail.addresses import address_key
from deskctl.mail.parsed import ParsedMail
from deskctl.store.models import Message, Ticket

#: The flag of a message stored although another mail held its Message-ID first.
REUSED_FLAG = "message_id_reused"
TOKEN_RE = re.compile(r"\[#(\d{1,12})\]")


def ticket_token(number: int) -> str:
    return f"[#{number}]"


def subject_token(subject: str) -> int | None:
    match = TOKEN_RE.search(subject)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class ThreadMatch:
    ticket: Ticket | None
    rule: str  # "references", "token", "token-untrusted", "new"


def participants(session: Session, ticket: Ticket) -> set[str]:
    """Every address that took part in the ticket's conversation, by :func:`address_key`."""
    found: set[str] = set()
    if ticket.customer is not None:
        found.add(ticket.customer.email)
    rows = session.execute(
        select(Message.from_email, Message.to, Message.cc).where(Message.ticket_id == ticket.id)
    ).all()
    for from_email, to, cc in rows:
        if from_email:
            found.add(from_email)
        for addr in (*(to or []), *(cc or [])):
            if addr.get("email"):
                found.add(addr["email"])
    return {address_key(a) for a in found}


def referenced_ticket(session: Session, mail: ParsedMail) -> int | None:
    """The ticket of the newest stored message that ``mail``'s In-Reply-To or References name.

    A mail's own Message-ID never counts (mail that reuses a stored id must not
    join that mail's ticket by it), and a message stored with a reused id is
    never a target: an answer naming that id belongs with the mail that had it first.
    """
    ids = [
        ident
        for ident in dict.fromkeys([*mail.in_reply_to, *reversed(mail.references)])
        if ident != mail.message_id
    ]
    if not ids:
        return None
    rows = session.execute(
        select(Message.ticket_id, Message.flags)
        .where(Message.message_id.in_(ids))
        .order_by(Message.id.desc())
    )
    return next((ticket for ticket, flags in rows if REUSED_FLAG not in (flags or ())), None)


def find_thread(session: Session, mail: ParsedMail) -> ThreadMatch:
    ticket_id = referenced_ticket(session, mail)
    if ticket_id is not None:
        return ThreadMatch(session.get(Ticket, ticket_id), "references")
    number = subject_token(mail.subject)
    if number is not None:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        if ticket is not None:
            sender = mail.sender.email if mail.sender else ""
            if sender and address_key(sender) in participants(session, ticket):
                return ThreadMatch(ticket, "token")
            return ThreadMatch(None, "token-untrusted")
    return ThreadMatch(None, "new")
