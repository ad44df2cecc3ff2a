"""Attachments: the bytes once per SHA-256, a row per message that carries them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from deskctl.mail.parsed import ParsedAttachment
from deskctl.store.fit import fit
from deskctl.store.models import Attachment, Blob, Message


def store_attachment(session: Session, message: Message, part: ParsedAttachment) -> Attachment:
    digest = part.sha256
    pending: set[str] = session.info.setdefault("new_blobs", set())
    if digest not in pending:
        # No autoflush here: it would write the message (raw bytes and all)
        # early, only to ask whether these bytes are stored already.
        with session.no_autoflush:
            stored = session.get(Blob, digest) is not None
        if not stored:
            session.add(Blob(sha256=digest, size=part.size, data=part.data))
            pending.add(digest)
    attachment = Attachment(
        blob_sha256=digest,
        filename=part.filename,
        content_type=fit(Attachment.content_type, part.content_type),
        size=part.size,
        content_id=fit(Attachment.content_id, part.content_id) if part.content_id else None,
        inline=part.inline,
    )
    message.attachments.append(attachment)
    return attachment
