"""Turn one parsed mail into a ticket, or into a message on the ticket it answers.

Idempotent by construction: the dedupe key (the Message-ID with the content
fingerprint, or a hash of the raw bytes when there is no Message-ID) is unique
per reading channel, so a rerun, an overlapping run or a crash between commit
and flag finds the stored message instead of adding a second one.

A Message-ID alone proves nothing (promise 2): a stored id with another
fingerprint is a different mail. It is stored as a message of its own, flagged
``message_id_reused``, and threads like any mail, never by that id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from deskctl.mail.addresses import address_key
from deskctl.mail.bounces import bounce_diagnostic
from deskctl.mail.fingerprint import duplicate_key, raw_fingerprint
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
from deskctl.services.threading import (
    REUSED_FLAG,
    ThreadMatch,
    find_thread,
    recently_written_ticket,
)
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

        Recipients are Delivered-To/X-Original-To, then To and Cc. A mailbox that
        receives mail forwarded from several support addresses thus files each
        message under the channel (and queue) it was meant for, and mail given
        to ``ingest`` without ``--channel`` finds its channel the same way (so
        replies and acknowledgements have a From); else the reading channel.
        """
        for address in recipients:
            channel = self.by_address.get(address_key(address))
            if channel is not None:
                return channel
        return self.channels.get(reader) if reader is not None else None


def load_ingest_cache(session: Session) -> IngestCache:
    channels = {
        c.id: ChannelInfo(c.id, c.name, c.address, c.queue_id)
        for c in session.scalars(select(IncomingChannel))
    }
    queues = list(session.scalars(select(Queue)))
    return IngestCache(
        channels=channels,
        by_address={address_key(c.address): c for c in channels.values()},
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
        return duplicate_key(mail.message_id, mail.fingerprint)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """What the database holds of a mail: its stored copy, or the first mail with its id."""

    duplicate: Message | None = None
    id_holder: Message | None = None


def find_duplicate(session: Session, scope: int, key: str, mail: ParsedMail) -> StoredCopy:
    """The stored copy of this mail: same Message-ID and fingerprint from any inbox.

    One mail sent to two support addresses arrives in two inboxes; it is one
    conversation, so the second copy finds the first and opens no second ticket.
    A stored id with another fingerprint is reported as ``id_holder``. Without a
    Message-ID the raw bytes' key within this channel decides.

    A reply deskctl sent is found too: the copy it filed in a Sent folder, read
    by a channel whose folder that is, or the reply coming back on a Bcc, is
    that reply (its id and content), never a new message or ticket.
    """
    if not mail.message_id:
        found = session.scalar(
            select(Message)
            .where(and_(Message.dedupe_scope == scope, Message.dedupe_key == key))
            .limit(1)
        )
        return StoredCopy(duplicate=found)
    # One indexed lookup finds a rerun in this channel and a copy from another inbox.
    with_id = session.scalars(
        select(Message)
        .where(Message.message_id == mail.message_id, Message.direction.in_(("in", "out")))
        .order_by(Message.id)
    ).all()
    holders = [m for m in with_id if m.direction == "in"]
    same = next((m for m in holders if m.fingerprint == mail.fingerprint), None)
    if same is None:
        # Outgoing mail has no stored fingerprint; our replies are few, read them when asked.
        same = next(
            (m for m in with_id if m.direction == "out" and _sent_as(m) == mail.fingerprint), None
        )
    return StoredCopy(duplicate=same, id_holder=None if same else next(iter(holders), None))


def _sent_as(message: Message) -> str | None:
    return raw_fingerprint(message.raw) if message.raw else None


def reused_id_reason(mail: ParsedMail, holder: Message) -> str:
    """Why a mail is flagged ``message_id_reused``: the agent sees which mail had the id first."""
    shown = mail.message_id or ""
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return (
        f"Message-ID reused: <{shown}> is already stored (message {holder.id}, ticket "
        f"#{holder.ticket.number}) with other content (From, Date, Subject or body differ)"
    )


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
    stored = find_duplicate(session, scope, key, mail)
    if stored.duplicate is not None:
        existing = stored.duplicate
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
    reused = reused_id_reason(mail, stored.id_holder) if stored.id_holder is not None else None
    flags = [
        *mail.flags,
        *(["own"] if own else []),
        *(["help_desk"] if desk else []),
        *([REUSED_FLAG] if reused else []),
    ]
    reasons = [*mail.flag_reasons, *(r for r in (own, desk, reused) if r)]
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
        fingerprint=mail.fingerprint,
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
