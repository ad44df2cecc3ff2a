"""Acknowledging new tickets, safely.

An acknowledgement is automatic mail, so it follows RFC 3834: it is never
sent to automatic, bulk, list or own mail, nor to another help desk, never to
a filtered address, is marked ``Auto-Submitted: auto-replied`` with our loop
header, and a sender gets at most a few an hour. Every suppression is recorded with its reason.

An acknowledgement never costs the mail: when it cannot be sent from anywhere
(no outgoing channel, no From to answer from) the decision says so before
anything is composed, it is recorded as not sent with the reason, and the
ticket is stored all the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from string import Template

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deskctl.errors import ConfigError
from deskctl.mail.parsed import ParsedMail
from deskctl.services.filters import load_patterns, matching_pattern
from deskctl.services.recipients import customer_problem
from deskctl.store.models import Message, Ticket, TicketEvent

SUPPRESSING_FLAGS = ("auto_reply", "bounce", "bulk", "own", "help_desk")


def render_ack(template: str, ticket: Ticket) -> str:
    """``$number`` / ``${number}`` and ``$title`` in the template; anything else stays as typed."""
    return Template(template).safe_substitute(number=ticket.number, title=ticket.title)


def acks_sent_recently(session: Session, customer_id: int, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Message)
            .join(Ticket, Message.ticket_id == Ticket.id)
            .where(
                Ticket.customer_id == customer_id,
                Message.direction == "out",
                Message.author_id.is_(None),
                Message.created_at >= since,
            )
        )
        or 0
    )


def ack_decision(session: Session, ticket: Ticket, mail: ParsedMail, flags: list[str]) -> str:
    """``send``, or why not: the reason is stored and shown by ``explain``."""
    queue = ticket.queue
    if not queue.ack_template:
        return f"no acknowledgement configured for queue {queue.name}"
    automatic = [f for f in SUPPRESSING_FLAGS if f in flags]
    if automatic:
        return f"suppressed: the message is {', '.join(automatic)}"
    problem = customer_problem(ticket.customer.email if ticket.customer else None)
    if problem or ticket.customer is None:
        return f"suppressed: {problem}"
    pattern = matching_pattern(ticket.customer.email, load_patterns(session))
    if pattern:
        return f"suppressed: {ticket.customer.email} is on the outgoing filter ({pattern})"
    since = datetime.now(UTC) - timedelta(hours=1)
    sent = acks_sent_recently(session, ticket.customer.id, since)
    if sent >= queue.ack_limit:
        return f"suppressed: {sent} automatic replies to {ticket.customer.email} in the last hour"
    from deskctl.services.replies import reply_sender

    try:
        reply_sender(session, ticket)
    except ConfigError as exc:
        return f"not sent: {exc.message}"
    return "send"


def acknowledge(session: Session, ticket: Ticket, mail: ParsedMail, flags: list[str]) -> str:
    """Queue the acknowledgement of a new ticket, or record why it was not sent."""
    from deskctl.services.replies import queue_mail

    decision = ack_decision(session, ticket, mail, flags)
    if decision == "send":
        assert ticket.queue.ack_template is not None
        queue_mail(
            session,
            ticket,
            body=render_ack(ticket.queue.ack_template, ticket),
            author=None,
            keep_cc=False,
            auto_submitted="auto-replied",
            flags=("ack",),
        )
        decision = "sent"
    if ticket.queue.ack_template:
        session.add(TicketEvent(ticket_id=ticket.id, kind="ack", new=decision[:200]))
    return decision
