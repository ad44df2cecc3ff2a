"""``deskctl doctor``: configuration that would make mail loop, found before any mail moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.errors import channel_reason
from deskctl.services.filters import load_patterns, matching_pattern
from deskctl.store.models import Agent, IncomingChannel, OutboxItem, OutgoingChannel, Queue

STALE_AFTER = timedelta(days=1)
#: A reply due longer than this and still not sent: send-outbox is not running.
STUCK_AFTER = timedelta(hours=1)
#: Findings about mail that is not moving (exit 6), not about the configuration (exit 5).
OPERATIONS = frozenset({"fetch-failed", "outbox-failed", "outbox-stuck", "outbox-retrying"})


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "warning" or "ok"
    check: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "check": self.check, "message": self.message}


def check_configuration(session: Session, now: datetime) -> list[Finding]:
    incoming = list(session.scalars(select(IncomingChannel).order_by(IncomingChannel.name)))
    outgoing = list(session.scalars(select(OutgoingChannel).order_by(OutgoingChannel.name)))
    agents = {a.email: a.name for a in session.scalars(select(Agent)) if a.email}
    patterns = load_patterns(session)
    found: list[Finding] = []

    def warn(check: str, message: str) -> None:
        found.append(Finding("warning", check, message))

    read_by = {c.address: c.name for c in incoming}
    for channel in incoming:
        if channel.address in agents:
            warn(
                "agent-address",
                f"channel {channel.name} reads {channel.address}, the address "
                f"of agent {agents[channel.address]}: their own mail would become tickets",
            )
        if not matching_pattern(channel.address, patterns):
            warn(
                "filter",
                f"{channel.address} (channel {channel.name}) is not on the outgoing "
                f"filter: run `deskctl filter add {channel.address}`",
            )
    for out in outgoing:
        if out.from_address in read_by and not matching_pattern(out.from_address, patterns):
            warn(
                "reply-via",
                f"outgoing channel {out.name} sends as {out.from_address}, which "
                f"channel {read_by[out.from_address]} reads, and the filter lacks it",
            )
    senders = {o.from_address: o for o in outgoing if o.from_address}
    for queue in session.scalars(select(Queue).where(Queue.ack_template.is_not(None))):
        for channel in (c for c in incoming if c.queue_id == queue.id):
            sender = senders.get(channel.address)
            if sender is not None and sender is not channel.reply_via:
                warn(
                    "ack-loop",
                    f"queue {queue.name} acknowledges new tickets, and its channel "
                    f"{channel.name} receives what outgoing channel {sender.name} sends",
                )
    for channel in incoming:
        if not channel.enabled or channel.kind == "pipe":
            continue
        last = channel.last_success_at
        if (last is None and now - channel.created_at > STALE_AFTER) or (
            last is not None and now - last > STALE_AFTER
        ):
            when = last.isoformat() if last else "never"
            warn(
                "stale",
                f"channel {channel.name} has not fetched successfully for a day "
                f"(last success: {when}; last error: {channel.last_error or 'none'})",
            )
    found += check_operations(session, now, incoming)
    if not found:
        found.append(Finding("ok", "all", "no loop risks, failing channels or stuck replies found"))
    return found


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def check_operations(
    session: Session, now: datetime, incoming: list[IncomingChannel]
) -> list[Finding]:
    """Mail that is not moving: a channel whose last fetch failed, replies failing or stuck.

    "Since when" for a channel is its last success (or, never having
    fetched, its creation): the failures began after that.
    """
    found = []
    for ch in incoming:
        if not ch.enabled or not ch.last_error:
            continue
        if ch.last_success_at is not None and (ch.last_fetch_at or now) <= ch.last_success_at:
            continue
        since = (
            f"failing since its last success at {_when(ch.last_success_at)}"
            if ch.last_success_at
            else f"never fetched successfully since it was added at {_when(ch.created_at)}"
        )
        found.append(
            Finding(
                "warning",
                "fetch-failed",
                f"channel {ch.name}: the last fetch failed at {_when(ch.last_fetch_at)}, {since}:"
                f" {channel_reason(ch.name, ch.last_error)}; try `deskctl channel test {ch.name}`",
            )
        )
    items = list(
        session.scalars(
            select(OutboxItem)
            .where(OutboxItem.state.in_(("failed", "queued", "sending")))
            .order_by(OutboxItem.id)
        )
    )
    failed = [i for i in items if i.state == "failed"]
    if failed:
        ids = ", ".join(str(i.id) for i in failed[:5]) + (" ..." if len(failed) > 5 else "")
        found.append(
            Finding(
                "warning",
                "outbox-failed",
                f"{len(failed)} repl{'y' if len(failed) == 1 else 'ies'} failed (outbox {ids}),"
                f" the last: {failed[-1].last_error}; "
                "see `deskctl outbox list --state failed`, then `deskctl outbox retry ID`",
            )
        )
    for item in items:
        if item.state == "queued" and item.attempts and item.last_error:
            found.append(
                Finding(
                    "warning",
                    "outbox-retrying",
                    f"outbox item {item.id} is retried (attempt {item.attempts}, next at "
                    f"{_when(item.next_attempt_at)}): {item.last_error}",
                )
            )
        elif (item.state == "queued" and now - item.next_attempt_at > STUCK_AFTER) or (
            item.state == "sending" and item.lease_until and now - item.lease_until > STUCK_AFTER
        ):
            found.append(
                Finding(
                    "warning",
                    "outbox-stuck",
                    f"outbox item {item.id} has been due since {_when(item.next_attempt_at)} and "
                    "is not sent: is `deskctl send-outbox` in cron?",
                )
            )
    return found
