"""Index the messages that carry flags: `ticket list --flag auto_reply` reads only those.

Almost every message has no flags (``[]``); a partial index over the others
lets the filter skip the rest of the table (and the raw sources stored in its
rows) instead of decoding every message's JSON.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_flagged",
        "messages",
        ["ticket_id"],
        unique=False,
        sqlite_where=sa.text("flags <> '[]'"),
        postgresql_where=sa.text("flags::text <> '[]'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_flagged", table_name="messages")
