"""Finding and describing tickets; the ``to_dict`` shapes are the JSON contract."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    union,
)
from sqlalchemy.orm import Session, joinedload, selectinload

from deskctl.errors import NotFound, UsageError
from deskctl.store.models import Agent, Customer, Message, Queue, Ticket

STATUSES = ("new", "open", "pending", "solved", "closed")


def check_status(status: str) -> str:
    value = status.strip().lower()
    if value not in STATUSES:
        raise UsageError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    return value


@dataclass(frozen=True, slots=True)
class TicketFilter:
    status: str | None = None
    queue: str | None = None
    assignee: str | None = None
    customer: str | None = None
    search: str | None = None
    limit: int = 50


def _filtered(query: Select[Ticket], flt: TicketFilter, dialect: str) -> Select[Ticket]:
    if flt.status:
        query = query.where(Ticket.status == check_status(flt.status))
    if flt.queue:
        query = query.where(
            Ticket.queue_id == select(Queue.id).where(Queue.name == flt.queue).scalar_subquery()
        )
    if flt.assignee:
        query = query.where(
            Ticket.assignee_id
            == select(Agent.id).where(Agent.name == flt.assignee).scalar_subquery()
        )
    if flt.customer:
        query = query.where(
            Ticket.customer_id
            == select(Customer.id)
            .where(Customer.email == flt.customer.strip().lower())
            .scalar_subquery()
        )
    if flt.search:
        query = query.where(search_condition(dialect, flt.search))
    return query


def search_words(text: str) -> list[str]:
    """The words of a search, stripped of every character a query syntax could use."""
    return [w for w in re.findall(r"\w+", text.lower()) if w]


def search_condition(dialect: str, text: str) -> ColumnElement[bool]:
    """Tickets whose title, messages or customer address contain every word (as prefixes).

    Uses the full-text indexes the migrations create: FTS5 on SQLite, a
    tsvector GIN index on PostgreSQL; elsewhere a plain (slow) LIKE.
    """
    words = search_words(text)
    if not words:
        raise UsageError("--search needs at least one word")
    by_address = Ticket.customer_id.in_(
        select(Customer.id).where(Customer.email.like(f"%{text.strip().lower()}%"))
    )
    if dialect == "sqlite":
        match = " ".join(f'"{w}"*' for w in words)
        in_messages = Ticket.id.in_(
            select(Message.ticket_id).where(
                Message.id.in_(
                    select(literal_column("rowid"))
                    .select_from(table("messages_fts"))
                    .where(literal_column("messages_fts").op("MATCH")(match))
                )
            )
        )
        in_title = Ticket.id.in_(
            select(literal_column("rowid"))
            .select_from(table("tickets_fts"))
            .where(literal_column("tickets_fts").op("MATCH")(match))
        )
        return or_(in_title, in_messages, by_address)
    if dialect == "postgresql":
        tsquery = func.to_tsquery("simple", " & ".join(f"{w}:*" for w in words))
        # One id list from the three indexes (not a per-row OR), so a rare word
        # costs index probes, not a walk over every ticket.
        ids = union(
            select(Ticket.id).where(func.to_tsvector("simple", Ticket.title).op("@@")(tsquery)),
            select(Message.ticket_id).where(literal_column("messages.search").op("@@")(tsquery)),
            select(Ticket.id).where(by_address),
        )
        return Ticket.id.in_(select(ids.subquery().c[0]))
    pattern = f"%{text}%"
    return or_(
        Ticket.title.ilike(pattern),
        by_address,
        exists().where(Message.ticket_id == Ticket.id, Message.body_text.ilike(pattern)),
    )


def list_tickets(session: Session, flt: TicketFilter) -> list[Ticket]:
    """Newest activity first: what an agent works on next is at the top."""
    if flt.limit < 1:
        raise UsageError("--limit must be at least 1")
    query = select(Ticket).options(
        joinedload(Ticket.queue), joinedload(Ticket.customer), joinedload(Ticket.assignee)
    )
    dialect = session.get_bind().dialect.name
    query = _filtered(query, flt, dialect).order_by(Ticket.updated_at.desc(), Ticket.id.desc())
    return list(session.scalars(query.limit(flt.limit)))


def get_ticket(session: Session, number: int) -> Ticket:
    ticket = session.scalar(
        select(Ticket)
        .where(Ticket.number == number)
        .options(
            joinedload(Ticket.queue),
            joinedload(Ticket.customer),
            joinedload(Ticket.assignee),
            joinedload(Ticket.channel),
            selectinload(Ticket.messages).selectinload(Message.attachments),
            selectinload(Ticket.messages).joinedload(Message.author),
        )
    )
    if ticket is None:
        raise NotFound(f"no ticket {number} (see `deskctl ticket list`)")
    return ticket


def get_raw(session: Session, ticket: Ticket, message_ref: str) -> bytes:
    """The stored source of one message of ``ticket``, by our id or its Message-ID."""
    ref = message_ref.strip().strip("<>")
    query = select(Message).where(Message.ticket_id == ticket.id)
    query = (
        query.where(Message.id == int(ref))
        if ref.isdigit()
        else query.where(Message.message_id == ref)
    )
    message = session.scalar(query)
    if message is None or message.raw is None:
        raise NotFound(f"ticket {ticket.number} has no message {message_ref} with a stored source")
    return message.raw


def _customer(customer: Customer | None) -> dict[str, str | None]:
    if customer is None:
        return {"name": None, "email": None}
    return {"name": customer.name, "email": customer.email}


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "number": ticket.number,
        "title": ticket.title,
        "status": ticket.status,
        "queue": ticket.queue.name,
        "customer": _customer(ticket.customer),
        "assignee": ticket.assignee.name if ticket.assignee else None,
        "updated_at": ticket.updated_at,
        "messages": ticket.message_count,
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "from": {"name": message.from_name, "email": message.from_email},
        "to": list(message.to or []),
        "cc": list(message.cc or []),
        "subject": message.subject,
        "date": message.date or message.created_at,
        "message_id": message.message_id,
        "body": message.body_text,
        "flags": list(message.flags or []),
        "flag_reasons": list(message.flag_reasons or []),
        "author": message.author.name if message.author else None,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.blob_sha256,
            }
            for a in message.attachments
        ],
    }


def delivery_states(session: Session, ticket: Ticket) -> dict[int, str]:
    """The outbox state of each of the ticket's replies, by message id."""
    from deskctl.store.models import OutboxItem

    ids = [m.id for m in ticket.messages if m.direction == "out"]
    if not ids:
        return {}
    rows = session.execute(
        select(OutboxItem.message_id, OutboxItem.state).where(OutboxItem.message_id.in_(ids))
    ).all()
    return {message_id: state for message_id, state in rows}


def ticket_detail(ticket: Ticket, delivery: dict[int, str] | None = None) -> dict[str, Any]:
    messages = []
    for m in ticket.messages:
        data = message_to_dict(m)
        if m.direction == "out":
            data["delivery"] = (delivery or {}).get(m.id)
        messages.append(data)
    return {
        "id": ticket.id,
        "number": ticket.number,
        "title": ticket.title,
        "status": ticket.status,
        "queue": ticket.queue.name,
        "channel": ticket.channel.name if ticket.channel else None,
        "customer": _customer(ticket.customer),
        "assignee": ticket.assignee.name if ticket.assignee else None,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "messages": messages,
    }
