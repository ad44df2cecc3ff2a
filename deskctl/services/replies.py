"""What agents do to a ticket: reply, note, assign, change status.

A reply and its outbox item are stored in one transaction; the mail is
composed right then, so every retry sends the same bytes with the same
Message-ID. Before replying, the collision check compares what the agent
last saw (``ticket show``) with what has arrived since, so two agents cannot
send two different answers without knowing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from deskctl.config import DEFAULT_REPLY_MAX_CC
from deskctl.errors import ConfigError, Conflict, NotFound, UsageError
from deskctl.mail.addresses import recipient_problem, wire_address
from deskctl.mail.compose import (
    OutgoingAttachment,
    Quoted,
    Reply,
    compose,
    loop_token,
    new_message_id,
    thread_references,
    to_wire,
)
from deskctl.mail.headers import header_text
from deskctl.mail.parsed import Address, ParsedAttachment
from deskctl.mail.subjects import reply_subject
from deskctl.services.agents import acting_agent, get_agent
from deskctl.services.attachments import store_attachment
from deskctl.services.filters import load_patterns
from deskctl.services.loops import instance_id
from deskctl.services.recipients import answered_index, customer_problem, plan_recipients
from deskctl.services.seen import record_view
from deskctl.services.threading import token_scheme
from deskctl.services.tickets import check_status
from deskctl.store.dbapi import from_session
from deskctl.store.models import (
    Agent,
    Message,
    OutboxItem,
    OutgoingChannel,
    Ticket,
    TicketEvent,
    TicketView,
)


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    body: str
    cc: tuple[str, ...] = ()
    status: str = "pending"
    attachments: tuple[OutgoingAttachment, ...] = ()
    force: bool = False
    max_cc: int = DEFAULT_REPLY_MAX_CC


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


def check_collision(session: Session, ticket: Ticket, agent: Agent) -> None:
    """Refuse when the customer or another agent wrote since ``agent`` last looked."""
    seen = session.scalar(
        select(TicketView.last_message_id).where(
            TicketView.agent_id == agent.id, TicketView.ticket_id == ticket.id
        )
    )
    if seen is None:
        raise Conflict(
            f"you have not read ticket {ticket.number} yet: run `deskctl ticket show "
            f"{ticket.number}` first (or reply with --force)"
        )
    newer = session.scalars(
        select(Message).where(
            Message.ticket_id == ticket.id,
            Message.id > seen,
            Message.direction.in_(("in", "out")),
        )
    ).all()
    news = [
        f"{'the customer' if m.direction == 'in' else (m.author.name if m.author else 'someone')}"
        f" {'wrote' if m.direction == 'in' else 'replied'} (message {m.id})"
        for m in newer
        if m.direction == "in" or m.author_id != agent.id
    ]
    if news:
        raise Conflict(
            f"ticket {ticket.number} changed since you last read it: {'; '.join(news)}; "
            f"run `deskctl ticket show {ticket.number}`, or reply with --force"
        )


def _answered(ticket: Ticket) -> Message | None:
    """The customer message a reply answers: the newest human one, else the newest."""
    index = answered_index([(m.direction, m.flags or []) for m in ticket.messages])
    return ticket.messages[index] if index is not None else None


def reply_channel(session: Session, ticket: Ticket) -> OutgoingChannel:
    if ticket.channel is not None and ticket.channel.reply_via is not None:
        return ticket.channel.reply_via
    channel = session.scalar(
        select(OutgoingChannel)
        .where(OutgoingChannel.is_default.is_(True))
        .order_by(OutgoingChannel.id)
    )
    if channel is None:
        raise ConfigError("no outgoing channel: add one with `deskctl channel add-outgoing`")
    return channel


def reply_sender(session: Session, ticket: Ticket) -> tuple[OutgoingChannel, str]:
    """The channel a mail to the ticket's customer leaves through, and its From address.

    The channel's own From, else the address of the inbox the ticket came in
    on; the error names the command that gives the channel a From.
    """
    outgoing = reply_channel(session, ticket)
    from_email = outgoing.from_address or (ticket.channel.address if ticket.channel else "")
    if not from_email:
        raise ConfigError(
            f"outgoing channel {outgoing.name!r} has no From address and ticket {ticket.number} "
            "came in on no channel: set one with "
            f'`deskctl channel set-from {outgoing.name} "Support <support@example.com>"`'
        )
    return outgoing, from_email


def _parse_cc(values: tuple[str, ...]) -> list[Address]:
    """The agent's ``--cc`` addresses; one that cannot receive mail is a usage error."""
    from email.utils import getaddresses

    found = []
    for value in values:
        pairs = getaddresses([value])
        if len(pairs) != 1:
            raise UsageError(f"--cc {value!r}: give one address per --cc")
        name, email = pairs[0]
        email = email or value.strip()  # the parser gives up on "user@": say why
        problem = recipient_problem(email)
        if problem:
            raise UsageError(f"--cc {value!r} is refused: {problem}")
        found.append(Address(header_text(name), email.lower()))
    return found


def queue_mail(
    session: Session,
    ticket: Ticket,
    *,
    body: str,
    author: Agent | None,
    extra_cc: tuple[str, ...] = (),
    keep_cc: bool = True,
    max_cc: int = DEFAULT_REPLY_MAX_CC,
    attachments: tuple[OutgoingAttachment, ...] = (),
    auto_submitted: str | None = None,
    flags: tuple[str, ...] = (),
) -> tuple[Message, OutboxItem]:
    """Compose a mail to the ticket's customer and queue it, in the caller's transaction.

    Who it goes to is :func:`~deskctl.services.recipients.plan_recipients`
    (what ``ticket show`` prints); anyone left out is named in the reply's
    ``flag_reasons``, so ``ticket show`` tells it later too.
    """
    problem = customer_problem(ticket.customer.email if ticket.customer else None)
    if problem or ticket.customer is None:
        raise UsageError(f"cannot reply to ticket {ticket.number}: {problem}")
    outgoing, from_email = reply_sender(session, ticket)
    answered = _answered(ticket)
    customer = Address(ticket.customer.name, ticket.customer.email)
    conversation = (
        [*(answered.to or []), *(answered.cc or [])] if answered is not None and keep_cc else []
    )
    recipients = plan_recipients(
        customer,
        (Address(a.get("name") or "", a.get("email") or "") for a in conversation),
        own=(from_email, ticket.channel.address if ticket.channel else ""),
        patterns=load_patterns(session),
        max_cc=max_cc,
        extra=_parse_cc(extra_cc),
    )
    now = datetime.now(UTC)
    number = ticket.number or ticket.id
    message_id = new_message_id(wire_address(from_email).rpartition("@")[2])
    references = (
        thread_references((*(answered.references or []), answered.message_id))
        if answered is not None and answered.message_id
        else ()
    )
    reply = Reply(
        sender=Address(outgoing.from_name, from_email),
        to=(customer,),
        cc=recipients.cc,
        subject=header_text(reply_subject(ticket.title, token_scheme(session).token(number))),
        body=body,
        message_id=message_id,
        in_reply_to=answered.message_id if answered is not None else None,
        references=references,
        signature=(author.signature if author else None) or outgoing.signature,
        quoted=Quoted(
            Address(answered.from_name, answered.from_email), answered.date, answered.body_text
        )
        if answered is not None
        else None,
        attachments=attachments,
        date=now,
        loop_token=loop_token(instance_id(session), number),
        auto_submitted=auto_submitted,
    )
    try:
        raw = to_wire(compose(reply))
    except ValueError as exc:
        raise UsageError(f"cannot build the reply: {exc}") from exc
    message = Message(
        ticket=ticket,
        direction="out",
        message_id=message_id,
        in_reply_to=reply.in_reply_to,
        references=list(references),
        subject=reply.subject,
        from_name=outgoing.from_name,
        from_email=from_email,
        to=[{"name": customer.name, "email": customer.email}],
        cc=[{"name": a.name, "email": a.email} for a in recipients.cc],
        date=now,
        body_text=body,
        raw=raw,
        flags=[*flags, *(["cc_limited"] if recipients.cc_limited else [])],
        flag_reasons=list(recipients.notes),
        dedupe_scope=-1,
        dedupe_key=message_id,
        author=author,
        created_at=now,
    )
    session.add(message)
    for att in attachments:
        store_attachment(
            session,
            message,
            ParsedAttachment(att.filename, att.content_type, None, False, att.data),
        )
    item = OutboxItem(message=message, channel=outgoing, state="queued", next_attempt_at=now)
    session.add(item)
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.updated_at = now
    session.flush()
    return message, item


def reply_to_ticket(
    session: Session, number: int, agent_name: str, request: ReplyRequest
) -> tuple[Message, OutboxItem]:
    """An agent's answer: checked for collisions, queued, and the ticket's status set."""
    if not request.body.strip():
        raise UsageError("the reply is empty")
    ticket = get_ticket(session, number)
    # Two agents replying at once: the second waits here for the first to commit,
    # then sees its reply in the collision check (SQLite serialises writers anyway).
    session.execute(select(Ticket.id).where(Ticket.id == ticket.id).with_for_update())
    agent = acting_agent(session, agent_name)
    status = check_status(request.status)
    if not request.force:
        check_collision(session, ticket, agent)
    message, item = queue_mail(
        session,
        ticket,
        body=request.body,
        author=agent,
        extra_cc=request.cc,
        max_cc=request.max_cc,
        attachments=request.attachments,
    )
    _set_status(session, ticket, agent, status)
    record_view(from_session(session), ticket.id, agent.id, message.id)
    return message, item


def add_note(session: Session, number: int, agent_name: str, body: str) -> Message:
    if not body.strip():
        raise UsageError("the note is empty")
    ticket = get_ticket(session, number)
    agent = acting_agent(session, agent_name)
    now = datetime.now(UTC)
    note = Message(
        ticket=ticket,
        direction="note",
        body_text=body,
        author=agent,
        subject="",
        flags=[],
        flag_reasons=[],
        to=[],
        cc=[],
        references=[],
        date=now,
        created_at=now,
    )
    session.add(note)
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.updated_at = now
    session.flush()
    return note


def _last_actor(session: Session, ticket_id: int, kind: str) -> str:
    name = session.scalar(
        select(Agent.name)
        .join(TicketEvent, TicketEvent.agent_id == Agent.id)
        .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == kind)
        .order_by(TicketEvent.id.desc())
        .limit(1)
    )
    return name or "someone"


def _compare_and_set(
    session: Session, ticket: Ticket, column: str, old: object, new: object, kind: str
) -> None:
    """Change one ticket column only if it still holds what we read.

    Two agents at once: the database lets exactly one UPDATE match (the other
    waits for the row, then finds it changed), and the loser is told who won.
    """
    current = getattr(Ticket, column)
    condition = current.is_(None) if old is None else current == old
    result = session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, condition)
        .values({column: new, "updated_at": datetime.now(UTC)})
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict(
            f"ticket {ticket.number} was just changed by {_last_actor(session, ticket.id, kind)}; "
            f"run `deskctl ticket show {ticket.number}` and try again"
        )
    session.expire(ticket)


def _set_status(session: Session, ticket: Ticket, agent: Agent, status: str) -> None:
    old = ticket.status
    if old != status:
        _compare_and_set(session, ticket, "status", old, status, "status")
        session.add(
            TicketEvent(ticket_id=ticket.id, agent=agent, kind="status", old=old, new=status)
        )


def set_status(session: Session, number: int, agent_name: str, status: str) -> None:
    ticket = get_ticket(session, number)
    _set_status(session, ticket, acting_agent(session, agent_name), check_status(status))


def assign(
    session: Session, number: int, agent_name: str, assignee: str | None, *, force: bool = False
) -> None:
    """Assign to ``assignee`` (``me`` is the acting agent; None unassigns).

    Taking a ticket someone else holds needs ``force``, so two agents who both
    run ``assign ... me`` cannot both believe they own it.
    """
    ticket = get_ticket(session, number)
    actor = acting_agent(session, agent_name)
    if assignee is None:
        target = None
    elif assignee in ("me", agent_name):
        target = actor
    else:
        target = get_agent(session, assignee)
    holder = ticket.assignee
    if (
        holder is not None
        and target is not None
        and holder.id not in (target.id, actor.id)
        and not force
    ):
        raise Conflict(f"ticket {number} is assigned to {holder.name}; use --force to reassign it")
    old_id = holder.id if holder else None
    new_id = target.id if target else None
    if old_id != new_id:
        _compare_and_set(session, ticket, "assignee_id", old_id, new_id, "assign")
        session.add(
            TicketEvent(
                ticket_id=ticket.id,
                agent=actor,
                kind="assign",
                old=holder.name if holder else None,
                new=target.name if target else None,
            )
        )
