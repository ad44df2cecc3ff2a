"""Which IMAP Sent folder a sent reply is filed in, and what became of the copy.

The copy goes to the mailbox the customer wrote to, so the colleagues who open
it in Outlook or Gmail see the team's answers: the ticket's incoming channel
when it names a Sent folder; else the one incoming channel with a Sent folder
that replies through the outgoing channel the reply left by (the one whose
address is the reply's From, when several do). Outgoing channels whose server
files what it sends (Gmail's SMTP, Exchange Online's SMTP AUTH, Graph's
sendMail) get no copy from deskctl: it would be there twice.

An item's ``sent_copy`` is None (no copy wanted), ``due``, ``filed`` or
``failed``. A copy that could not be filed stays due, with the reason, and a
later send-outbox run files it: the reply itself is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from deskctl.store.models import IncomingChannel, Message, OutboxItem, OutgoingChannel, Ticket

#: Servers that put a copy of what they send in the sender's Sent folder themselves.
FILES_ITSELF = {
    "gmail": "Gmail files the mail it sends in Sent itself",
    "o365": "Exchange Online files mail sent over SMTP AUTH in Sent Items itself",
}
#: Kinds whose mailbox deskctl reads over IMAP, and so may file into.
IMAP_KINDS = ("imap", "o365")
#: Held off by a run that is filing a copy, so an overlapping run does not file it too.
HOLD = timedelta(minutes=10)
GIVE_UP_AFTER = timedelta(days=4)


def files_itself(outgoing: OutgoingChannel) -> str | None:
    """Why replies through ``outgoing`` need no copy from deskctl, or None."""
    if (outgoing.settings or {}).get("transport") == "graph":
        return "Graph's sendMail files the mail it sends in Sent Items itself"
    return FILES_ITSELF.get(outgoing.kind)


def sent_folder_of(channel: IncomingChannel | None) -> str | None:
    if channel is None or channel.kind not in IMAP_KINDS:
        return None
    folder = (channel.settings or {}).get("sent_folder")
    return str(folder) if folder else None


@dataclass(frozen=True, slots=True)
class Filing:
    """One copy to file: where (an incoming channel and its ``--sent-folder``) and what."""

    item_id: int
    channel_id: int
    channel: str
    folder: str
    sent_at: datetime
    raw: bytes = b""  # for a later run's retry; the first try files the bytes just sent


def _with_sent_folder(session: Session, outgoing: OutgoingChannel) -> list[IncomingChannel]:
    """The IMAP channels with a Sent folder that reply via ``outgoing``."""
    mapped = session.scalars(
        select(IncomingChannel)
        .where(IncomingChannel.reply_via_id == outgoing.id)
        .order_by(IncomingChannel.id)
    )
    return [c for c in mapped if sent_folder_of(c)]


def filing_channel(
    ticket: Ticket,
    outgoing: OutgoingChannel | None,
    from_address: str,
    mapped: list[IncomingChannel],
) -> IncomingChannel | None:
    """The IMAP channel whose Sent folder a reply on ``ticket`` through ``outgoing`` goes to.

    ``mapped`` is :func:`_with_sent_folder` of ``outgoing``.
    """
    if outgoing is None or files_itself(outgoing):
        return None
    if sent_folder_of(ticket.channel):
        return ticket.channel
    if len(mapped) == 1:
        return mapped[0]
    return next((c for c in mapped if c.address == from_address.lower()), None)


def plan(session: Session, item_ids: list[int]) -> dict[int, Filing]:
    """The copy each of these items gets once it is sent (items without one are left out)."""
    items = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.id.in_(item_ids))
        .options(
            joinedload(OutboxItem.message).joinedload(Message.ticket).joinedload(Ticket.channel),
            joinedload(OutboxItem.channel),
        )
    ).all()
    mapped: dict[int, list[IncomingChannel]] = {}  # per outgoing channel, looked up once
    found: dict[int, Filing] = {}
    for item in items:
        outgoing = item.channel
        if outgoing is not None and outgoing.id not in mapped:
            mapped[outgoing.id] = _with_sent_folder(session, outgoing)
        channel = filing_channel(
            item.message.ticket,
            outgoing,
            item.message.from_email,
            mapped.get(outgoing.id, []) if outgoing is not None else [],
        )
        folder = sent_folder_of(channel)
        if channel is not None and folder:
            found[item.id] = Filing(
                item.id, channel.id, channel.name, folder, item.sent_at or item.created_at
            )
    return found


def _set(session: Session, item_id: int, **values: Any) -> None:
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def mark_due(session: Session, item_id: int, now: datetime, wire: bytes | None) -> None:
    """The reply went out and its copy is being filed; ``wire`` only when it differs from the reply.

    The copy is held off for other runs while this one files it; should this
    run die first, a later one files it once the hold is over.
    """
    _set(
        session,
        item_id,
        sent_copy="due",
        sent_copy_raw=wire,
        sent_copy_error=None,
        next_attempt_at=now + HOLD,
    )


def mark_filed(session: Session, item_id: int, folder: str) -> None:
    _set(
        session,
        item_id,
        sent_copy="filed",
        sent_copy_folder=folder,
        sent_copy_error=None,
        sent_copy_raw=None,
    )


def retry_delay(sent_at: datetime, now: datetime) -> timedelta:
    """About as long as the copy has waited, 30 s to 2 hours: the next cron run retries a blip."""
    return min(max(now - sent_at, timedelta(seconds=30)), timedelta(hours=2))


def mark_not_filed(session: Session, item_id: int, error: str, now: datetime) -> bool:
    """Record why the copy is not filed; True while a later run will try again."""
    item = session.get(OutboxItem, item_id)
    if item is None:
        return False
    sent_at = item.sent_at or now
    if now - sent_at > GIVE_UP_AFTER:
        _set(
            session,
            item_id,
            sent_copy="failed",
            sent_copy_error=f"gave up filing the copy after 4 days: {error}"[:2000],
        )
        return False
    _set(
        session,
        item_id,
        sent_copy_error=error[:2000],
        next_attempt_at=now + retry_delay(sent_at, now),
    )
    return True


def claim_due_copies(session: Session, now: datetime, limit: int) -> list[Filing]:
    """Copies an earlier run could not file, held for this run (one conditional UPDATE each).

    A copy whose channel no longer names a Sent folder, or that now goes out
    through a server that files it itself, is given up with that reason.
    """
    candidates = list(
        session.scalars(
            select(OutboxItem.id)
            .where(
                OutboxItem.state == "sent",
                OutboxItem.sent_copy == "due",
                OutboxItem.next_attempt_at <= now,
            )
            .order_by(OutboxItem.id)
            .limit(limit)
        )
    )
    won = []
    for item_id in candidates:
        result = session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == item_id,
                OutboxItem.sent_copy == "due",
                OutboxItem.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + HOLD)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            won.append(item_id)
    planned = plan(session, won)
    filings = []
    for item_id in won:
        if item_id not in planned:
            _set(
                session,
                item_id,
                sent_copy="failed",
                sent_copy_error="no Sent folder applies to this reply any more",
            )
            continue
        item = session.scalars(
            select(OutboxItem)
            .where(OutboxItem.id == item_id)
            .options(joinedload(OutboxItem.message).undefer(Message.raw))
        ).one()
        raw = item.sent_copy_raw or item.message.raw or b""
        filings.append(replace(planned[item_id], raw=raw))
    return filings


def refile(session: Session, item: OutboxItem, now: datetime) -> OutboxItem:
    """``outbox retry`` on a sent reply whose copy is not filed: the next run files it.

    The reply itself is not sent again; the bytes that went out were kept.
    """
    _set(session, item.id, sent_copy="due", next_attempt_at=now)
    session.expire(item)
    return item
