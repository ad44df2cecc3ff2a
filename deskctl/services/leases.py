"""Leases: which worker is fetching a channel right now.

A conditional UPDATE is the claim: it succeeds for exactly one worker on
SQLite and on PostgreSQL alike, across hosts, with no file locks. A lease
expires, so a worker that died does not hold its channel forever; a worker
on the same host may also take over a lease whose process is gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from deskctl.errors import Conflict
from deskctl.store.models import IncomingChannel


class LeaseLost(Conflict):
    """Our claim on a channel expired and another worker holds it now."""


LEASE = timedelta(minutes=5)


def claim_channel(
    session: Session, channel_id: int, owner: str, now: datetime, *, steal_from: str | None = None
) -> bool:
    condition = (
        IncomingChannel.lease_owner == steal_from
        if steal_from is not None
        else or_(
            IncomingChannel.lease_owner.is_(None),
            IncomingChannel.lease_until < now,
            IncomingChannel.lease_owner == owner,
        )
    )
    result = session.execute(
        update(IncomingChannel)
        .where(IncomingChannel.id == channel_id, condition)
        .values(lease_owner=owner, lease_until=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def lease_holder(session: Session, channel_id: int) -> str | None:
    return session.scalar(
        select(IncomingChannel.lease_owner).where(IncomingChannel.id == channel_id)
    )


def release_channel(session: Session, channel_id: int, owner: str) -> None:
    session.execute(
        update(IncomingChannel)
        .where(IncomingChannel.id == channel_id, IncomingChannel.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def renew_channel(session: Session, channel_id: int, owner: str, now: datetime) -> bool:
    result = session.execute(
        update(IncomingChannel)
        .where(IncomingChannel.id == channel_id, IncomingChannel.lease_owner == owner)
        .values(lease_until=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
