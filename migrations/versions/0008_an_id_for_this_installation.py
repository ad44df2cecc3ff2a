"""Settings, and the id that tells this installation's loop header from another deskctl's.

A downgrade drops the id; upgrading again makes a new one, and our mail sent
before then is recognised as ours only by its Message-ID and its From.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    settings = op.create_table(
        "settings",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_settings")),
    )
    op.bulk_insert(settings, [{"key": "instance_id", "value": secrets.token_hex(8)}])


def downgrade() -> None:
    op.drop_table("settings")
