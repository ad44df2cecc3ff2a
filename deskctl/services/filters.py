"""The outgoing filter: addresses deskctl never sends to.

Patterns are an exact address, ``@domain``, or a shell-style wildcard
(``*-noreply@*``), all case-insensitive. Each row remembers who added it
(``manual`` or ``channel:NAME``), so removing a channel removes only what that
channel added.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from deskctl.errors import Conflict, NotFound, UsageError

# Re-exported: the outbox and acknowledgements ask the filter module.
from deskctl.mail.addresses import matching_pattern as matching_pattern
from deskctl.store.models import OutgoingFilter


def add_filter(
    session: Session, pattern: str, *, source: str = "manual", reason: str | None = None
) -> OutgoingFilter:
    value = check_pattern(pattern)
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


def check_pattern(pattern: str) -> str:
    value = pattern.strip().lower()
    if not value or any(c.isspace() for c in value) or ("@" not in value and "*" not in value):
        raise UsageError(
            f"{pattern!r} is not a filter pattern: use an address, @domain, or a wildcard "
            "like *-noreply@*"
        )
    return value


def remove_filter(session: Session, pattern: str) -> None:
    """Remove a pattern added by hand; entries a channel added go with the channel."""
    value = pattern.strip().lower()
    rows = session.scalars(select(OutgoingFilter).where(OutgoingFilter.pattern == value)).all()
    manual = [r for r in rows if r.source == "manual"]
    if not manual:
        if rows:
            raise Conflict(
                f"{value} was added by {rows[0].source.replace(':', ' ')}; "
                "it goes when that channel is removed"
            )
        raise NotFound(f"{value} is not on the outgoing filter (see `deskctl filter list`)")
    for row in manual:
        session.delete(row)


def list_filters(session: Session) -> list[OutgoingFilter]:
    return list(
        session.scalars(
            select(OutgoingFilter).order_by(OutgoingFilter.pattern, OutgoingFilter.source)
        )
    )


def filter_to_dict(row: OutgoingFilter) -> dict[str, object]:
    return {
        "pattern": row.pattern,
        "source": row.source,
        "reason": row.reason,
        "created_at": row.created_at,
    }
