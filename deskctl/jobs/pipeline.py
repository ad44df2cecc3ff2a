"""Store one raw message, or quarantine it: the unit every intake path shares.

``deskctl ingest``, ``deskctl fetch`` and ``quarantine retry`` all hand raw
bytes to :func:`store_raw`, which owns one transaction per message. A
checkpoint callback runs inside that same transaction, so a fetch job's sync
state commits together with the message it describes (STYLE.md, habit 8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from deskctl.context import AppContext
from deskctl.errors import DeskError
from deskctl.jobs.parsing import parse_or_error
from deskctl.mail.errors import MalformedMail
from deskctl.mail.parsed import ParsedMail
from deskctl.services.ingest import AUTOMATIC_FLAGS, IngestCache, IngestResult, ingest_mail
from deskctl.services.loops import OwnMailReturned
from deskctl.services.quarantine import quarantine_oversize, quarantine_raw
from deskctl.transport.spool import Oversize, read_bounded, remove_spooled

log = logging.getLogger(__name__)

#: How often a message is tried again after losing a race on a unique key
#: (another run stored the same message, customer or attachment first).
RACE_RETRIES = 3

Checkpoint = Callable[[Session], None]


@dataclass
class Outcome:
    """What happened to one message; ``to_dict`` is ingest's JSON shape."""

    ticket: int | None = None
    message: int | None = None
    created: bool = False
    duplicate: bool = False
    rule: str | None = None
    flags: list[str] = field(default_factory=list)
    quarantined: int | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: IngestResult, mail: ParsedMail) -> Outcome:
        msg = result.message
        # A new message's attachments are the parsed ones; reading them back
        # from the session would cost a query per message.
        attachments = (
            [a.filename for a in msg.attachments]
            if result.duplicate
            else [a.filename for a in mail.attachments]
        )
        return cls(
            ticket=result.ticket.number,
            message=msg.id,
            created=result.created,
            duplicate=result.duplicate,
            rule=result.rule,
            flags=list(msg.flags),
            details={
                "title": result.ticket.title,
                "subject": msg.subject,
                "from": {"name": msg.from_name, "email": msg.from_email},
                # where the customer was found when From was missing or unusable
                "from_source": mail.sender_source,
                "attachments": attachments,
                "is_auto_reply": bool(AUTOMATIC_FLAGS.intersection(msg.flags)),
                "flag_reasons": list(msg.flag_reasons),
                "queue": result.queue,
                "channel": result.channel,
                "ack": result.ack,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        if self.quarantined is not None:
            return {"quarantined": self.quarantined, "reason": self.reason}
        return {
            "ticket": self.ticket,
            "message": self.message,
            "created": self.created,
            "duplicate": self.duplicate,
            "rule": self.rule,
            "flags": self.flags,
            **self.details,
        }


class _DryRun(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def quarantine(
    context: AppContext,
    raw: bytes,
    reason: str,
    *,
    channel_id: int | None,
    source: str | None,
    checkpoint: Checkpoint | None = None,
    dry_run: bool = False,
) -> Outcome:
    if dry_run:
        return Outcome(quarantined=0, reason=reason)
    with context.transaction() as session:
        item = quarantine_raw(session, raw, reason, channel_id=channel_id, source=source)
        if checkpoint is not None:
            checkpoint(session)
        item_id = item.id
    log.warning("quarantined message %s from %s: %s", item_id, source or "input", reason)
    return Outcome(quarantined=item_id, reason=reason)


def quarantine_oversize_mail(
    context: AppContext,
    over: Oversize,
    *,
    channel_id: int | None,
    source: str | None,
    checkpoint: Checkpoint | None = None,
    dry_run: bool = False,
) -> Outcome:
    """List mail over the size limit with its size and sender; its bytes stay where they are.

    The sender and subject come from the first bytes of the header only. A spool
    file that ends up unused (the same mail was listed before, or the
    transaction failed and the mail server will deliver again) is removed.
    """
    where = (
        f"; left on the server as UIDL {over.remote_key}"
        if over.remote_key is not None
        else f"; left on the server as UID {over.uid}"
        if over.uid is not None
        else "; its bytes are kept in the spool"
        if over.spool is not None
        else ""
    )
    reason = f"message is {over.size} bytes, over the limit of {over.limit}{where}"
    if dry_run:
        return Outcome(quarantined=0, reason=reason)
    head = parse_or_error(over.head)
    sender = head.sender if isinstance(head, ParsedMail) else None
    try:
        with context.transaction() as session:
            item, created = quarantine_oversize(
                session,
                over,
                reason,
                channel_id=channel_id,
                source=source,
                sender=sender.email[:998] if sender is not None else None,
                subject=head.subject[:998] if isinstance(head, ParsedMail) else None,
            )
            if checkpoint is not None:
                checkpoint(session)
            item_id = item.id
    except BaseException:
        remove_spooled(over.spool)
        raise
    if not created:
        remove_spooled(over.spool)
    log.warning("quarantined message %s from %s: %s", item_id, source or "input", reason)
    return Outcome(quarantined=item_id, reason=reason)


def store_raw(
    context: AppContext,
    raw: bytes | Oversize,
    *,
    channel_id: int | None = None,
    source: str | None = None,
    max_size: int | None = None,
    dry_run: bool = False,
    checkpoint: Checkpoint | None = None,
    cache: IngestCache | None = None,
    mail: ParsedMail | MalformedMail | None = None,
) -> Outcome:
    """Parse and store ``raw`` in its own transaction, or quarantine it.

    Database outages raise (the message stays on the server for the next
    run); everything that is wrong with the message itself ends in quarantine.
    ``dry_run`` runs the same code and rolls back, so it shows what would happen.
    ``mail`` is the parse result when the caller parsed ahead (jobs/parsing.py).
    """

    if isinstance(raw, Oversize):
        return quarantine_oversize_mail(
            context,
            raw,
            channel_id=channel_id,
            source=source,
            checkpoint=checkpoint,
            dry_run=dry_run,
        )

    def fail(reason: str) -> Outcome:
        return quarantine(
            context,
            raw,
            reason,
            channel_id=channel_id,
            source=source,
            checkpoint=checkpoint,
            dry_run=dry_run,
        )

    if max_size is not None and len(raw) > max_size:
        return fail(f"message is {len(raw)} bytes, over the limit of {max_size}")
    if mail is None:
        mail = parse_or_error(raw)
    if isinstance(mail, MalformedMail):
        return fail(f"cannot parse: {mail.reason}")
    for attempt in range(1, RACE_RETRIES + 1):
        try:
            with context.transaction() as session:
                result = ingest_mail(session, raw, mail, reader=channel_id, cache=cache)
                outcome = Outcome.from_result(result, mail)
                if dry_run:
                    raise _DryRun(outcome)
                if checkpoint is not None:
                    checkpoint(session)
            return outcome
        except _DryRun as stop:
            return stop.outcome
        except OwnMailReturned as own:
            return fail(own.reason)
        except IntegrityError:
            log.info("lost a race storing %s (attempt %d), looking again", source, attempt)
        except DeskError:
            raise
        except Exception as exc:  # a bug or odd data must not lose the message
            log.debug("storing %s failed", source, exc_info=True)
            return fail(f"cannot store: {type(exc).__name__}: {exc}")
    return fail("cannot store: unique key conflicts persisted")


def ingest_many(
    context: AppContext,
    messages: Iterable[tuple[str, bytes | Oversize]],
    count: int,
    *,
    channel_id: int | None,
    max_size: int | None,
    dry_run: bool,
) -> list[Outcome]:
    """Store (source, raw) messages in order, parsing ahead on the second core when many."""
    from deskctl.jobs.parsing import parse_stream

    cache = ingest_cache(context)
    return [
        store_raw(
            context,
            raw,
            channel_id=channel_id,
            source=source,
            max_size=max_size,
            dry_run=dry_run,
            cache=cache,
            mail=parsed,
        )
        for source, raw, parsed in parse_stream(messages, expected=count, max_size=max_size)
    ]


def ingest_cache(context: AppContext) -> IngestCache:
    """Channels, queues and own addresses, read once for a whole run."""
    from deskctl.services.ingest import load_ingest_cache

    with context.transaction(write=False) as session:
        return load_ingest_cache(session)


def still_over(size: int, max_size: int) -> str:
    return f"still {size} bytes, over the limit of {max_size} (see --max-size)"


def retry_quarantined(
    context: AppContext, item_id: int, replacement: bytes | None, max_size: int
) -> Outcome:
    """Try a quarantined message again (optionally with repaired bytes).

    The quarantine entry is removed only when the message is now stored, in
    the transaction after the store committed, so a crash in between leaves
    at worst an entry whose retry reports a duplicate. Spooled mail is read
    back, and mail left on the IMAP or POP3 server downloaded, within ``max_size``.
    """
    from deskctl.errors import NotFound
    from deskctl.services.quarantine import drop_quarantined, get_quarantined

    with context.transaction(write=False) as session:
        item = get_quarantined(session, item_id)
        channel_id, source = item.channel_id, item.source
        spool, uid, uidl = item.spool_path, item.remote_uid, item.remote_key
        raw = replacement
        if raw is None and spool is None and uid is None and uidl is None:
            raw = item.raw or b""
    if raw is None and uidl is not None:
        from deskctl.jobs.fetch_pop3 import retry_left_on_pop3

        return retry_left_on_pop3(context, item_id, max_size)
    if raw is None and uid is not None:
        from deskctl.jobs.fetch import retry_left_on_server  # fetch builds on this module

        return retry_left_on_server(context, item_id, max_size)
    if raw is None and spool is not None:
        try:
            with open(spool, "rb") as fh:
                read = read_bounded(fh, max_size, None)
        except OSError as exc:
            raise NotFound(
                f"the spool file of quarantined message {item_id} cannot be read: {exc.strerror}"
            ) from exc
        if isinstance(read, Oversize):
            return Outcome(quarantined=item_id, reason=still_over(read.size, max_size))
        raw = read
    assert raw is not None
    outcome = store_raw(context, raw, channel_id=channel_id, source=source, max_size=max_size)
    if outcome.quarantined is None:
        with context.transaction() as session:
            spooled = drop_quarantined(session, item_id)
        remove_spooled(Path(spooled) if spooled is not None else None)
    return outcome
