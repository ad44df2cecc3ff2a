"""``deskctl doctor``: configuration that would make mail loop, found before any mail moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.services.filters import load_patterns, matching_pattern
from deskctl.store.models import Agent, IncomingChannel, OutgoingChannel, Queue

STALE_AFTER = timedelta(days=1)


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
    if not found:
        found.append(Finding("ok", "all", "no loop risks or stale channels found"))
    return found
