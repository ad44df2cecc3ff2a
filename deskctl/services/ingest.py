"""Turn one parsed mail into a ticket, or into a message on the ticket it answers.

Idempotent by construction: the dedupe key (the Message-ID, or a hash of the
raw bytes when there is none) is unique per reading channel, so a rerun, an
overlapping run or a crash between commit and flag finds the stored message
instead of adding a second one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from deskctl.mail.bounces import bounce_diagnostic
from deskctl.mail.parsed import ParsedMail
from deskctl.mail.subjects import ticket_title
from deskctl.services.acks import acknowledge
from deskctl.services.attachments import store_attachment
from deskctl.services.customers import find_or_create_customer
from deskctl.services.loops import (
    OwnMailReturned,
    bounced_reply,
    instance_id,
    other_desk_reason,
    own_addresses,
    own_mail_reason,
)
from deskctl.services.queues import default_queue
from deskctl.services.threading import ThreadMatch, find_thread, recently_written_ticket
from deskctl.services.tickets import FILED
from deskctl.store.fit import fit
from deskctl.store.models import Customer, IncomingChannel, Message, Queue, Ticket, TicketEvent

NO_SUBJECT = "(no subject)"
#: Flags that mean "a machine wrote this": such mail never reopens a ticket.
AUTOMATIC_FLAGS = frozenset({"auto_reply", "bounce", "own"})


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    id: int
    name: str
    address: str
    queue_id: int


@dataclass(frozen=True, slots=True)
class IngestCache:
    """What every message of a run needs to know, read once per run.

    Channels, queues and our own addresses change rarely; looking them up for
    each message cost more than storing the message (bench/fetch.py).
    """

    channels: dict[int, ChannelInfo]
    by_address: dict[str, ChannelInfo]
    queue_names: dict[int, str]
    acking_queues: frozenset[int]
    default_queue_id: int
    own_addresses: dict[str, str]
    instance: str

    def route(self, reader: int | None, recipients: tuple[str, ...]) -> ChannelInfo | None:
        """The channel a message belongs to: the first support address it was sent to.

        A mailbox that receives mail forwarded from several support addresses
        thus files each message under the channel (and queue) it was meant for.
        """
        if reader is None:
            return None
        for address in recipients:
            if address in self.by_address:
                return self.by_address[address]
        return self.channels.get(reader)


def load_ingest_cache(session: Session) -> IngestCache:
    channels = {
        c.id: ChannelInfo(c.id, c.name, c.address, c.queue_id)
        for c in session.scalars(select(IncomingChannel))
    }
    queues = list(session.scalars(select(Queue)))
    return IngestCache(
        channels=channels,
        by_address={c.address: c for c in channels.values()},
        queue_names={q.id: q.name for q in queues},
        acking_queues=frozenset(q.id for q in queues if q.ack_template),
        default_queue_id=default_queue(session).id,
        own_addresses=own_addresses(session),
        instance=instance_id(session),
    )


@dataclass(frozen=True, slots=True)
class IngestResult:
    ticket: Ticket
    message: Message
    created: bool
    duplicate: bool
    rule: str
    ack: str | None = None
    queue: str = ""
    channel: str | None = None


def dedupe_key(mail: ParsedMail, raw: bytes) -> str:
    if mail.message_id:
        return mail.message_id[:900]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def find_duplicate(session: Session, scope: int, key: str, mail: ParsedMail) -> Message | None:
    """The stored copy of this mail: same key in this channel, or same Message-ID from another.

    One mail sent to two support addresses arrives in two inboxes; it is one
    conversation, so the second copy finds the first and opens no second ticket.
    """
    if mail.message_id:
        # The key is the Message-ID itself, so this one indexed lookup finds a rerun
        # in this channel and the same mail read from another inbox alike.
        condition = and_(Message.message_id == mail.message_id, Message.direction == "in")
    else:
        condition = and_(Message.dedupe_scope == scope, Message.dedupe_key == key)
    return session.scalar(select(Message).where(condition).order_by(Message.id).limit(1))


def _addresses(mail_addresses: tuple[object, ...]) -> list[dict[str, str]]:
    return [{"name": a.name, "email": a.email} for a in mail_addresses]  # type: ignore[attr-defined]


def ingest_mail(
    session: Session,
    raw: bytes,
    mail: ParsedMail,
    *,
    reader: int | None = None,
    cache: IngestCache | None = None,
) -> IngestResult:
    """Store ``mail`` (parsed from ``raw``) and return where it went.

    ``reader`` is the id of the channel that read the message (None for mail
    given on the command line); the message is routed to the channel whose
    address it was sent to, which decides the queue of a new ticket.
    """
    cache = cache or load_ingest_cache(session)
    scope = reader or 0
    key = dedupe_key(mail, raw)
    existing = find_duplicate(session, scope, key, mail)
    if existing is not None:
        ticket = existing.ticket
        return IngestResult(
            ticket,
            existing,
            False,
            True,
            "duplicate",
            None,
            cache.queue_names.get(ticket.queue_id, ""),
            _channel_name(cache, ticket.channel_id),
        )
    channel = cache.route(reader, mail.original_recipients)

    own = own_mail_reason(session, mail, cache.own_addresses, cache.instance)
    bounced = bounced_reply(session, mail)
    match = (
        ThreadMatch(bounced.message.ticket, "bounce")
        if bounced is not None
        else find_thread(session, mail)
    )
    if own is not None and match.ticket is None:
        raise OwnMailReturned(own)
    desk = other_desk_reason(mail, cache.instance)
    flags = [*mail.flags, *(["own"] if own else []), *(["help_desk"] if desk else [])]
    reasons = [*mail.flag_reasons, *(r for r in (own, desk) if r)]
    customer = (
        find_or_create_customer(session, mail.sender)
        if mail.sender is not None and mail.sender.email
        else None
    )
    now = datetime.now(UTC)
    filed = None
    if match.ticket is None and "auto_reply" in flags:
        match, filed = _auto_reply_home(session, customer, now)
    created = match.ticket is None
    if match.ticket is None:
        ticket = Ticket(
            title=ticket_title(mail.subject, mail.thread_topic, list_mail="bulk" in flags)
            or NO_SUBJECT,
            status="closed" if filed else "new",
            queue_id=channel.queue_id if channel is not None else cache.default_queue_id,
            channel_id=channel.id if channel is not None else None,
            customer=customer,
            created_at=now,
            updated_at=now,
            message_count=0,
        )
        session.add(ticket)
        session.flush()
        ticket.number = ticket.id
        if filed:
            session.add(TicketEvent(ticket_id=ticket.id, kind=FILED, new=filed))
    else:
        ticket = match.ticket
        automatic = AUTOMATIC_FLAGS.intersection(flags)
        if not automatic and ticket.status in ("pending", "solved", "closed"):
            ticket.status = "open"
    message = Message(
        ticket=ticket,
        channel_id=channel.id if channel is not None else None,
        direction="in",
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to[0] if mail.in_reply_to else None,
        references=list(mail.references),
        subject=mail.subject,
        from_name=fit(Message.from_name, mail.sender.name) if mail.sender else "",
        from_email=fit(Message.from_email, mail.sender.email) if mail.sender else "",
        to=_addresses(mail.to),
        cc=_addresses(mail.cc),
        date=mail.date,
        body_text=mail.text,
        body_html=mail.html,
        raw=raw,
        flags=flags,
        flag_reasons=reasons,
        thread_rule=match.rule,
        dedupe_scope=scope,
        dedupe_key=key,
        created_at=now,
    )
    session.add(message)
    for part in mail.attachments:
        store_attachment(session, message, part)
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.updated_at = now
    if bounced is not None:
        bounced.state = "bounced"
        # The remote server's words ("550 5.1.1 ... User Unknown"), shown with the reply.
        bounced.last_error = bounce_diagnostic(mail) or "; ".join(mail.flag_reasons) or "bounced"
    session.flush()
    ack = None
    if created:
        ack = (
            acknowledge(session, ticket, mail, flags)
            if ticket.queue_id in cache.acking_queues
            else f"no acknowledgement configured for queue {cache.queue_names[ticket.queue_id]}"
        )
    return IngestResult(
        ticket,
        message,
        created,
        False,
        match.rule,
        ack,
        cache.queue_names.get(ticket.queue_id, ""),
        _channel_name(cache, ticket.channel_id),
    )


def _auto_reply_home(
    session: Session, customer: Customer | None, now: datetime
) -> tuple[ThreadMatch, str | None]:
    """Where an automatic reply that answers none of our mail goes, and why it is filed.

    It is kept, but it is no one's work: it joins the ticket we last wrote to
    the sender on, if that was lately; otherwise it opens a ticket filed away
    (closed, with a ``filed`` event) that the default ``ticket list`` leaves out.
    """
    recent = recently_written_ticket(session, customer.id, now) if customer else None
    if recent is not None:
        return ThreadMatch(recent, "auto-reply"), None
    return ThreadMatch(None, "auto-reply-filed"), "auto_reply: answers none of our mail"


def _channel_name(cache: IngestCache, channel_id: int | None) -> str | None:
    channel = cache.channels.get(channel_id) if channel_id is not None else None
    return channel.name if channel is not None else None
