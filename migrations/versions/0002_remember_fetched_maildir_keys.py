"""Remember which Maildir messages a channel has stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetched_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("remote_key", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["incoming_channels.id"],
            name=op.f("fk_fetched_keys_channel_id_incoming_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fetched_keys")),
        sa.UniqueConstraint("channel_id", "remote_key", name="uq_fetched_keys_key"),
    )


def downgrade() -> None:
    op.drop_table("fetched_keys")
