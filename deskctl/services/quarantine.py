"""Quarantine: mail we could not parse or store, kept byte for byte.

Nothing is ever dropped (promise 1): the raw bytes and the reason wait here
until an agent retries (after a fix) or drops them on purpose. Mail over the
size limit is the exception that proves the rule: its row holds the size, the
sender and where the bytes are (a spool file, a UID left on the IMAP
server, or a UIDL on the POP3 one), never the bytes, so memory and the database stay bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deskctl.errors import NotFound
from deskctl.store.models import QuarantinedMessage
from deskctl.transport.spool import CHUNK, Oversize


def _already_kept(session: Session, key: str, channel_id: int | None) -> QuarantinedMessage | None:
    """The entry this channel already holds for ``key``: the same mail is listed once."""
    return session.scalar(
        select(QuarantinedMessage).where(
            QuarantinedMessage.dedupe_key == key,
            QuarantinedMessage.channel_id.is_(None)
            if channel_id is None
            else QuarantinedMessage.channel_id == channel_id,
        )
    )


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
    existing = _already_kept(session, key, channel_id)
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


def quarantine_oversize(
    session: Session,
    over: Oversize,
    reason: str,
    *,
    channel_id: int | None,
    source: str | None,
    sender: str | None,
    subject: str | None,
) -> tuple[QuarantinedMessage, bool]:
    """Record mail over the limit by where it is; (row, whether the row is new).

    An IMAP message is known by its UID within the folder's UIDVALIDITY, a POP3
    one by its UIDL; spooled bytes by their hash, so the same mail piped in
    twice is listed once (the caller then removes the second spool file).
    """
    if over.remote_key is not None:
        key = f"pop3:{over.remote_key}"
    elif over.uid is not None:
        key = f"imap:{over.uidvalidity}:{over.uid}"
    else:
        key = f"sha256:{over.sha256}"
    existing = _already_kept(session, key, channel_id)
    if existing is not None:
        existing.reason = reason[:2000]
        return existing, False
    item = QuarantinedMessage(
        channel_id=channel_id,
        source=source,
        reason=reason[:2000],
        raw=None,
        size=over.size,
        dedupe_key=key,
        spool_path=str(over.spool) if over.spool is not None else None,
        remote_uid=over.uid,
        remote_uidvalidity=over.uidvalidity,
        remote_key=over.remote_key,
        sender=sender,
        subject=subject,
    )
    session.add(item)
    session.flush()
    return item, True


def uids_left_on_server(session: Session, channel_id: int, uidvalidity: int) -> set[int]:
    """UIDs of this folder that were too large to download: no after-fetch action touches them."""
    return set(
        session.scalars(
            select(QuarantinedMessage.remote_uid).where(
                QuarantinedMessage.channel_id == channel_id,
                QuarantinedMessage.remote_uidvalidity == uidvalidity,
                QuarantinedMessage.remote_uid.is_not(None),
            )
        )
    )


def raw_chunks(session: Session, item_id: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The bytes kept in the database, a slice at a time, so printing them stays bounded."""
    column = QuarantinedMessage.raw
    where = QuarantinedMessage.id == item_id
    length = session.scalar(select(func.length(column)).where(where)) or 0
    for start in range(1, length + 1, chunk):
        part = session.scalar(select(func.substr(column, start, chunk)).where(where))
        yield bytes(part or b"")


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


def drop_quarantined(session: Session, item_id: int) -> str | None:
    """Delete the row; returns its spool file, which the caller removes after the commit."""
    item = get_quarantined(session, item_id)
    session.delete(item)
    return item.spool_path


def quarantined_to_dict(item: QuarantinedMessage) -> dict[str, object]:
    return {
        "id": item.id,
        "channel": item.channel.name if item.channel else None,
        "source": item.source,
        "reason": item.reason,
        "size": item.size,
        "sender": item.sender,
        "subject": item.subject,
        "kept": kept_where(item),
        "created_at": item.created_at,
    }


def kept_where(item: QuarantinedMessage) -> str:
    """Where the message's bytes are: in the database, in a spool file, or on the server."""
    if item.spool_path is not None:
        return f"spool file {item.spool_path}"
    if item.remote_key is not None:
        return f"on the server, UIDL {item.remote_key}"
    if item.remote_uid is not None:
        return f"on the server, UID {item.remote_uid} (UIDVALIDITY {item.remote_uidvalidity})"
    return "database"
