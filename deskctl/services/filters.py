"""The outgoing filter: addresses deskctl never sends to.

Patterns are an exact address, ``@domain``, or a shell-style wildcard
(``*-noreply@*``), all case-insensitive. Each row remembers who added it
(``manual`` or ``channel:NAME``), so removing a channel removes only what that
channel added.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from deskctl.store.models import OutgoingFilter


def add_filter(
    session: Session, pattern: str, *, source: str = "manual", reason: str | None = None
) -> OutgoingFilter:
    value = pattern.strip().lower()
    row = session.scalar(
        select(OutgoingFilter).where(
            OutgoingFilter.pattern == value, OutgoingFilter.source == source
        )
    )
    if row is None:
        row = OutgoingFilter(pattern=value, source=source, reason=reason)
        session.add(row)
        session.flush()
    return row


def remove_source(session: Session, source: str) -> None:
    session.execute(delete(OutgoingFilter).where(OutgoingFilter.source == source))
