"""Values cut to what their column holds.

Mail says what it likes: a From address of 2,000 characters, a media type of
400. SQLite stores any length, PostgreSQL refuses a value longer than its
VARCHAR(n), so the same mail was a ticket on one backend and quarantined on
the other. The copy in the column is cut instead; the raw source is stored
whole, so nothing the sender wrote is lost.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import QueryableAttribute


def fit(column: QueryableAttribute[Any], value: str) -> str:
    """``value``, at most as many characters as ``column`` (a VARCHAR(n)) holds."""
    length = getattr(column.expression.type, "length", None)
    return value if length is None or len(value) <= length else value[:length]
