"""The outbox: replies waiting to leave, and what happened when they tried.

An item is claimed before it is sent (a conditional UPDATE that exactly one
worker wins, on SQLite and PostgreSQL, on one host or many), so two
``send-outbox`` runs never send one item twice. The claim is a lease: the
item of a worker that died becomes due again when the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, joinedload

from deskctl.errors import Conflict, NotFound, UsageError
from deskctl.store.models import Message, OutboxItem, OutgoingChannel

STATES = ("queued", "sending", "sent", "failed", "blocked", "cancelled", "bounced")
LEASE = timedelta(minutes=10)
GIVE_UP_AFTER = timedelta(days=4)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 ... minutes, at most 2 hours: quick for a blip, patient for an outage."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 120))


def _due(now: datetime) -> Any:
    return or_(
        and_(OutboxItem.state == "queued", OutboxItem.next_attempt_at <= now),
        and_(OutboxItem.state == "sending", OutboxItem.lease_until < now),
    )


def claim_due(session: Session, owner: str, now: datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` due items for ``owner``; returns the ids won.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` hands concurrent workers disjoint
    rows without waiting. SQLite: write transactions are serialised anyway,
    and the conditional UPDATE below decides each item.
    """
    if session.get_bind().dialect.name == "postgresql":
        ids = list(
            session.scalars(
                select(OutboxItem.id)
                .where(_due(now))
                .order_by(OutboxItem.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids))
                .values(state="sending", lease_owner=owner, lease_until=now + LEASE)
                .execution_options(synchronize_session=False)
            )
        return ids
    candidates = session.scalars(
        select(OutboxItem.id).where(_due(now)).order_by(OutboxItem.id).limit(limit * 2)
    ).all()
    won: list[int] = []
    for item_id in candidates:
        if len(won) >= limit:
            break
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, _due(now))
            .values(state="sending", lease_owner=owner, lease_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            won.append(item_id)
    return won


def sending_owners(session: Session) -> list[str]:
    return [
        o
        for o in session.scalars(
            select(OutboxItem.lease_owner).where(OutboxItem.state == "sending").distinct()
        )
        if o
    ]


def release_owner(session: Session, owner: str) -> None:
    """Make the items a dead worker had claimed due again."""
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.state == "sending", OutboxItem.lease_owner == owner)
        .values(state="queued", lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """Everything the send job needs for one item, detached from the session."""

    item_id: int
    channel_id: int
    raw: bytes
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]


def envelopes(session: Session, ids: list[int]) -> list[Envelope]:
    items = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.id.in_(ids))
        .options(joinedload(OutboxItem.message).undefer(Message.raw))
        .order_by(OutboxItem.id)
    ).all()
    return [
        Envelope(
            item.id,
            item.channel_id or 0,
            item.message.raw or b"",
            item.message.from_email,
            tuple(a["email"] for a in item.message.to),
            tuple(a["email"] for a in item.message.cc),
        )
        for item in items
    ]


def _finish(session: Session, item_id: int, owner: str, **values: Any) -> None:
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )


def still_claimed(session: Session, item_id: int, owner: str) -> bool:
    item = session.get(OutboxItem, item_id)
    return item is not None and item.state == "sending" and item.lease_owner == owner


def renew_claim(session: Session, item_id: int, owner: str, now: datetime) -> bool:
    """Extend our claim right before sending; False when another run has taken it over."""
    result = session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.id == item_id,
            OutboxItem.lease_owner == owner,
            OutboxItem.state == "sending",
        )
        .values(lease_until=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_sent(
    session: Session, item_id: int, owner: str, now: datetime, note: str | None = None
) -> None:
    item = session.get(OutboxItem, item_id)
    attempts = (item.attempts if item else 0) + 1
    _finish(session, item_id, owner, state="sent", sent_at=now, attempts=attempts, last_error=note)


def mark_failed(session: Session, item_id: int, owner: str, error: str) -> None:
    item = session.get(OutboxItem, item_id)
    attempts = (item.attempts if item else 0) + 1
    _finish(session, item_id, owner, state="failed", attempts=attempts, last_error=error[:2000])


def mark_blocked(session: Session, item_id: int, owner: str, reason: str) -> None:
    _finish(session, item_id, owner, state="blocked", last_error=reason)


def defer(session: Session, item_id: int, owner: str, error: str, now: datetime) -> bool:
    """Try again later; returns False when the item has waited too long and failed."""
    item = session.get(OutboxItem, item_id)
    if item is None:
        return False
    attempts = item.attempts + 1
    if now - item.created_at > GIVE_UP_AFTER:
        _finish(
            session,
            item_id,
            owner,
            state="failed",
            attempts=attempts,
            last_error=f"gave up after {attempts} attempts: {error}"[:2000],
        )
        return False
    _finish(
        session,
        item_id,
        owner,
        state="queued",
        attempts=attempts,
        next_attempt_at=now + backoff(attempts),
        last_error=error[:2000],
    )
    return True


def get_item(session: Session, item_id: int) -> OutboxItem:
    item = session.get(OutboxItem, item_id)
    if item is None:
        raise NotFound(f"no outbox item {item_id} (see `deskctl outbox list`)")
    return item


def _change_unless_busy(session: Session, item_id: int, verb: str, **values: Any) -> OutboxItem:
    """Change an item that is neither sent nor being sent, decided by the database itself."""
    get_item(session, item_id)
    result = session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.state.not_in(("sent", "sending")))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    item = get_item(session, item_id)
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict(f"outbox item {item_id} is {item.state} and cannot be {verb}")
    return item


def retry_item(session: Session, item_id: int) -> OutboxItem:
    """Queue the item again; for a sent reply whose Sent copy is not filed, file that instead."""
    item = get_item(session, item_id)
    if item.state == "sent" and item.sent_copy in ("due", "failed"):
        from deskctl.services.sent_copies import refile

        return refile(session, item, datetime.now(UTC))
    return _change_unless_busy(
        session, item_id, "retried", state="queued", next_attempt_at=datetime.now(UTC)
    )


def cancel_item(session: Session, item_id: int) -> OutboxItem:
    return _change_unless_busy(session, item_id, "cancelled", state="cancelled")


def list_items(session: Session, state: str | None, limit: int = 200) -> list[OutboxItem]:
    query = select(OutboxItem).options(
        joinedload(OutboxItem.message).joinedload(Message.ticket), joinedload(OutboxItem.channel)
    )
    if state:
        if state not in STATES:
            raise UsageError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
        query = query.where(OutboxItem.state == state)
    return list(session.scalars(query.order_by(OutboxItem.id.desc()).limit(limit)))


def item_to_dict(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "ticket": item.message.ticket.number,
        "message": item.message_id,
        "message_id": item.message.message_id,
        "to": [a["email"] for a in item.message.to],
        "channel": item.channel.name if item.channel else None,
        "state": item.state,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at,
        "last_error": item.last_error,
        "created_at": item.created_at,
        "sent_at": item.sent_at,
        # The copy in the mailbox's Sent folder (services/sent_copies.py).
        "sent_copy": item.sent_copy,
        "sent_copy_folder": item.sent_copy_folder,
        "sent_copy_error": item.sent_copy_error,
    }


def channel_of(session: Session, channel_id: int) -> OutgoingChannel | None:
    return session.get(OutgoingChannel, channel_id)
