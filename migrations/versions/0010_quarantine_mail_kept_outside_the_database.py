"""Quarantine rows for mail over the size limit, whose bytes are not in the database.

Over the limit, mail from stdin, a file or a Maildir is streamed to a spool
file under DESKCTL_HOME (``spool_path``); IMAP mail stays on the server and is
named by its UID (``remote_uid`` with the folder's ``remote_uidvalidity``).
``sender`` and ``subject`` come from the first bytes of the header only, so
`quarantine list` can say whose mail it is without reading the message.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("spool_path", "remote_uid", "remote_uidvalidity", "sender", "subject")


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spool_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("remote_uid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("remote_uidvalidity", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sender", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
