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


def find_thread(session: Session, mail: ParsedMail) -> ThreadMatch:
    ids = list(dict.fromkeys([*mail.in_reply_to, *reversed(mail.references)]))
    if ids:
        ticket_id = session.scalar(
            select(Message.ticket_id)
            .where(Message.message_id.in_(ids))
            .order_by(Message.id.desc())
            .limit(1)
        )
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
