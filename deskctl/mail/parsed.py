"""The value types the mail layer hands to the rest of deskctl.

Frozen and slotted so a parsed mail can be shared between threads, cached and
compared without anyone mutating it behind the ingest service's back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: what a ticket's customer is made of."""

    name: str  # decoded display name, "" when none
    email: str  # lower-cased addr-spec, "" when none usable


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    """A file kept on the ticket; ``filename`` is already safe to write to disk."""

    filename: str
    content_type: str
    content_id: str | None
    inline: bool
    data: bytes

    @property
    def size(self) -> int:
        """Byte size, so callers need not keep ``data`` around to show it."""
        return len(self.data)

    @property
    def sha256(self) -> str:
        """Hex digest; attachments are stored once per hash."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """Everything deskctl needs from one RFC 5322 message, decoded and normalised."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    original_recipients: tuple[str, ...]
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[ParsedAttachment, ...]
    flags: tuple[str, ...]
    flag_reasons: tuple[str, ...]
    bounced_message_ids: tuple[str, ...]
    auto_submitted: str | None
    #: The content fingerprint (fingerprint.py): with the Message-ID, what makes a duplicate.
    fingerprint: str
    loop_token: str | None = None  # our own X-Deskctl-Loop header: this is mail we sent
    thread_topic: str = ""  # Outlook's Thread-Topic: the conversation's subject, no prefixes
    # Where the customer was found: "from", or "sender", "reply-to", "envelope"
    # when From was missing or unusable ("none" when nothing was).
    sender_source: str = "from"
    # Recipients a bounce reports as failed for good (flufl.bounce's reading).
    bounced_recipients: tuple[str, ...] = ()

    @property
    def is_automatic(self) -> bool:
        """True for auto-replies and bounces: deskctl must never answer these (promise 5)."""
        return "auto_reply" in self.flags or "bounce" in self.flags
