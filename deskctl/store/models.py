"""The help desk's tables.

Timestamps are stored in UTC (``*_at``); addresses are stored lower-cased so one
customer is one row however their mail program spells them. Raw message bytes
and attachment contents are deferred columns: listing tickets never loads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in, UTC-aware datetimes out, on SQLite too.

    SQLite has no timezone type and hands back naive values; normalising here
    keeps every comparison and every ISO string in the JSON output correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: Search structures the migrations create by hand (FTS5 tables on SQLite, a
#: generated tsvector column on PostgreSQL); autogenerate must leave them be.
SEARCH_OBJECTS = (
    "messages_fts",
    "tickets_fts",
    "search",
    "ix_messages_search",
    "ix_tickets_title_search",
)


def managed_by_models(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic ``include_object`` hook: everything but the search structures."""
    return not (name and name.startswith(SEARCH_OBJECTS))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    signature: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Queue(Base):
    __tablename__ = "queues"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    color: Mapped[str] = mapped_column(String(32), default="white")
    description: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    ack_template: Mapped[str | None] = mapped_column(Text)
    ack_limit: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutgoingChannel(Base):
    __tablename__ = "outgoing_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    from_address: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    security: Mapped[str | None] = mapped_column(String(20))
    username: Mapped[str | None] = mapped_column(String(320))
    secret_source: Mapped[str | None] = mapped_column(String(10))
    secret_ref: Mapped[str | None] = mapped_column(Text)
    ca_file: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IncomingChannel(Base):
    __tablename__ = "incoming_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    reply_via_id: Mapped[int | None] = mapped_column(ForeignKey("outgoing_channels.id"))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    security: Mapped[str | None] = mapped_column(String(20))
    username: Mapped[str | None] = mapped_column(String(320))
    secret_source: Mapped[str | None] = mapped_column(String(10))
    secret_ref: Mapped[str | None] = mapped_column(Text)
    ca_file: Mapped[str | None] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(String(255), default="INBOX")
    path: Mapped[str | None] = mapped_column(Text)
    after_fetch: Mapped[str] = mapped_column(String(255), default="keep")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    uidvalidity: Mapped[int | None] = mapped_column(Integer)
    last_uid: Mapped[int] = mapped_column(Integer, default=0)
    acted_uid: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Graph: the @odata.deltaLink of the last complete round (the cursor).
    delta_link: Mapped[str | None] = mapped_column(Text)
    last_fetch_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    queue: Mapped[Queue] = relationship()
    reply_via: Mapped[OutgoingChannel | None] = relationship()


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_updated_at", "updated_at"),
        Index("ix_tickets_status_queue_updated", "status", "queue_id", "updated_at"),
        Index("ix_tickets_customer_id", "customer_id"),
        Index("ix_tickets_assignee_id", "assignee_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int | None] = mapped_column(Integer, unique=True)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="new")
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("incoming_channels.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    queue: Mapped[Queue] = relationship()
    channel: Mapped[IncomingChannel | None] = relationship()
    customer: Mapped[Customer | None] = relationship()
    assignee: Mapped[Agent | None] = relationship()
    messages: Mapped[list[Message]] = relationship(back_populates="ticket", order_by="Message.id")


class Blob(Base):
    """Attachment bytes, stored once per SHA-256 however often they are sent."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("dedupe_scope", "dedupe_key", name="uq_messages_dedupe"),
        Index("ix_messages_ticket_id", "ticket_id"),
        Index("ix_messages_message_id", "message_id"),
        # The few messages with flags, for `ticket list --flag` (migration 0009).
        Index(
            "ix_messages_flagged",
            "ticket_id",
            sqlite_where=text("flags <> '[]'"),
            postgresql_where=text("flags::text <> '[]'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("incoming_channels.id"))
    direction: Mapped[str] = mapped_column(String(10))
    message_id: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str] = mapped_column(String(320), default="")
    from_email: Mapped[str] = mapped_column(String(320), default="")
    to: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    cc: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    date: Mapped[datetime | None]
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = deferred(mapped_column(Text))
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    flag_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    thread_rule: Mapped[str | None] = mapped_column(String(40))
    dedupe_scope: Mapped[int] = mapped_column(Integer, default=0)
    dedupe_key: Mapped[str | None] = mapped_column(String(998))
    #: Incoming mail: mail/fingerprint.py; with the Message-ID, what makes a duplicate.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    author: Mapped[Agent | None] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_message_id", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)

    blob: Mapped[Blob] = relationship()


class OutboxItem(Base):
    __tablename__ = "outbox_items"
    __table_args__ = (
        Index("ix_outbox_items_state_next", "state", "next_attempt_at"),
        Index("ix_outbox_items_message_id", "message_id"),
        # The few copies still to file, found by every send-outbox run (migration 0012).
        Index("ix_outbox_items_sent_copy", "sent_copy", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("outgoing_channels.id"))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    #: The copy in an IMAP Sent folder (migration 0012): None, due, filed or failed.
    sent_copy: Mapped[str | None] = mapped_column(String(20))
    sent_copy_folder: Mapped[str | None] = mapped_column(String(255))
    sent_copy_error: Mapped[str | None] = mapped_column(Text)
    #: The bytes that went out, kept only while due and only when they differ from the reply's.
    sent_copy_raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    message: Mapped[Message] = relationship()
    channel: Mapped[OutgoingChannel | None] = relationship()


class OutgoingFilter(Base):
    """An address pattern deskctl never mails; one row per pattern and origin."""

    __tablename__ = "outgoing_filters"
    __table_args__ = (UniqueConstraint("pattern", "source", name="uq_outgoing_filters_pattern"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(120), default="manual")
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    """One value for the whole installation, e.g. ``instance_id``, made at ``db upgrade``."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class QuarantinedMessage(Base):
    """Mail that could not be parsed or stored, kept byte for byte with the reason."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("incoming_channels.id"))
    source: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    # None when the bytes are elsewhere: over the size limit, they wait in
    # ``spool_path`` (a file under DESKCTL_HOME), on the IMAP server as ``remote_uid``
    # or on the POP3 server as ``remote_key`` (its UIDL).
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    size: Mapped[int] = mapped_column(Integer)
    dedupe_key: Mapped[str | None] = mapped_column(String(998))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    spool_path: Mapped[str | None] = mapped_column(Text)
    remote_uid: Mapped[int | None] = mapped_column(Integer)
    remote_uidvalidity: Mapped[int | None] = mapped_column(Integer)
    remote_key: Mapped[str | None] = mapped_column(String(255))
    sender: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)

    channel: Mapped[IncomingChannel | None] = relationship()


class FetchedKey(Base):
    """What a channel without UIDs (a Maildir, a POP3 maildrop, Graph) has stored, by remote key.

    ``acted_at``: when Graph's after-fetch action ran on it (None: not yet).
    """

    __tablename__ = "fetched_keys"
    __table_args__ = (UniqueConstraint("channel_id", "remote_key", name="uq_fetched_keys_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("incoming_channels.id", ondelete="CASCADE"))
    remote_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acted_at: Mapped[datetime | None]


class TicketView(Base):
    """The last message an agent saw on a ticket: the baseline of the collision check."""

    __tablename__ = "ticket_views"
    __table_args__ = (UniqueConstraint("agent_id", "ticket_id", name="uq_ticket_views_agent"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    last_message_id: Mapped[int] = mapped_column(Integer, default=0)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketEvent(Base):
    """Who assigned a ticket or changed its status, and when."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_id", "ticket_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    kind: Mapped[str] = mapped_column(String(20))
    old: Mapped[str | None] = mapped_column(String(200))
    new: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    agent: Mapped[Agent | None] = relationship()
