"""Who is acting, and what they have seen: the baseline of the collision check.

Plain SQL over :class:`~deskctl.store.dbapi.Database`, so ``ticket show``
records its view without loading the ORM, and the ORM paths (reply, note,
assign) run the very same statements on their session's connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deskctl.store.dbapi import Database


def acting_agent_id(db: Database, name: str) -> int:
    """The agent acting now, recorded on first use so every action has an author.

    Looked up first, so PostgreSQL spends no sequence value on an agent it
    knows; ``ON CONFLICT DO NOTHING`` lets two first actions at once both win.
    """
    find = "SELECT id FROM agents WHERE name = :name"
    found = db.scalar(find, name=name)
    if found is None:
        db.execute(
            "INSERT INTO agents (name, created_at) VALUES (:name, :now)"
            " ON CONFLICT (name) DO NOTHING",
            name=name,
            now=datetime.now(UTC),
        )
        found = db.scalar(find, name=name)
    return int(found)


def record_view(db: Database, ticket_id: int, agent_id: int, newest_message_id: int) -> None:
    """Remember that the agent has now seen the ticket up to ``newest_message_id``."""
    values = {
        "agent_id": agent_id,
        "ticket_id": ticket_id,
        "newest": newest_message_id,
        "now": datetime.now(UTC),
    }
    updated = db.execute(
        """UPDATE ticket_views SET last_message_id = :newest, seen_at = :now
           WHERE agent_id = :agent_id AND ticket_id = :ticket_id""",
        **values,
    )
    if not updated:  # the first look; two at once both land through the upsert
        db.execute(
            """INSERT INTO ticket_views (agent_id, ticket_id, last_message_id, seen_at)
               VALUES (:agent_id, :ticket_id, :newest, :now)
               ON CONFLICT (agent_id, ticket_id) DO UPDATE
               SET last_message_id = excluded.last_message_id, seen_at = excluded.seen_at""",
            **values,
        )


def record_shown(db: Database, agent_name: str, detail: dict[str, Any]) -> None:
    """``ticket show`` printed ``detail``: that is what the agent has now seen.

    The newest message printed, not the newest stored: mail that arrived
    after the read is still news at the next collision check.
    """
    newest = max((m["id"] for m in detail["messages"]), default=0)
    record_view(db, detail["id"], acting_agent_id(db, agent_name), newest)
