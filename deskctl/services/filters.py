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


def load_patterns(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(OutgoingFilter.pattern))))


def matching_pattern(address: str, patterns: list[str]) -> str | None:
    """The filter pattern that forbids mailing ``address``, if any."""
    from fnmatch import fnmatchcase

    email = address.strip().lower()
    for pattern in patterns:
        if pattern.startswith("@"):
            if email.endswith(pattern):
                return pattern
        elif any(ch in pattern for ch in "*?["):
            if fnmatchcase(email, pattern):
                return pattern
        elif email == pattern:
            return pattern
    return None
