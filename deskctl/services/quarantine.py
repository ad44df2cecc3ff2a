"""Quarantine: mail we could not parse or store, kept byte for byte.

Nothing is ever dropped (promise 1): the raw bytes and the reason wait here
until an agent retries (after a fix) or drops them on purpose.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.errors import NotFound
from deskctl.store.models import QuarantinedMessage


def quarantine_raw(
    session: Session,
    raw: bytes,
    reason: str,
    *,
    channel_id: int | None = None,
    source: str | None = None,
) -> QuarantinedMessage:
    """Keep ``raw``; the same bytes from the same channel are kept only once."""
    key = "sha256:" + hashlib.sha256(raw).hexdigest()
    existing = session.scalar(
        select(QuarantinedMessage).where(
            QuarantinedMessage.dedupe_key == key,
            QuarantinedMessage.channel_id.is_(None)
            if channel_id is None
            else QuarantinedMessage.channel_id == channel_id,
        )
    )
    if existing is not None:
        existing.reason = reason
        return existing
    item = QuarantinedMessage(
        channel_id=channel_id,
        source=source,
        reason=reason[:2000],
        raw=raw,
        size=len(raw),
        dedupe_key=key,
    )
    session.add(item)
    session.flush()
    return item


def get_quarantined(session: Session, item_id: int) -> QuarantinedMessage:
    item = session.get(QuarantinedMessage, item_id)
    if item is None:
        raise NotFound(f"no quarantined message {item_id} (see `deskctl quarantine list`)")
    return item


def list_quarantined(session: Session, limit: int = 100) -> list[QuarantinedMessage]:
    return list(
        session.scalars(
            select(QuarantinedMessage).order_by(QuarantinedMessage.id.desc()).limit(limit)
        )
    )


def drop_quarantined(session: Session, item_id: int) -> None:
    session.delete(get_quarantined(session, item_id))


def quarantined_to_dict(item: QuarantinedMessage) -> dict[str, object]:
    return {
        "id": item.id,
        "channel": item.channel.name if item.channel else None,
        "source": item.source,
        "reason": item.reason,
        "size": item.size,
        "created_at": item.created_at,
    }
