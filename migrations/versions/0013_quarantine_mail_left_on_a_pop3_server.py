"""Quarantine rows for POP3 mail over the size limit, named by UIDL.

A POP3 message too large to download stays on the server, like an IMAP one;
POP3 has no UID, so the row names it by its UIDL (``remote_key``, at most
70 characters by RFC 1939), which ``quarantine retry`` downloads by and
fetch's after-fetch delete leaves alone.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_key", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_column("remote_key")
