"""Where a sent reply's copy was filed, or why it was not.

An IMAP channel may name a Sent folder (``--sent-folder``); after the server
accepted a reply, send-outbox appends a copy there. ``sent_copy`` is NULL when
no copy is wanted, ``due`` until it is filed (a failure leaves it due, with
``sent_copy_error``, for the next run), ``filed`` once the server has it (in
``sent_copy_folder``), and ``failed`` when deskctl gave up. ``sent_copy_raw``
holds the bytes that went out only where they differ from the stored reply (a
Cc dropped by the filter, 8-bit text re-encoded for a server without 8BITMIME),
so a later run files exactly what was sent; it is cleared once filed.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COLUMNS = ("sent_copy", "sent_copy_folder", "sent_copy_error", "sent_copy_raw")


def upgrade() -> None:
    with op.batch_alter_table("outbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_copy", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_folder", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_raw", sa.LargeBinary(), nullable=True))
    # Every send-outbox run looks for the copies still due; sent items are most rows.
    op.create_index("ix_outbox_items_sent_copy", "outbox_items", ["sent_copy", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_items_sent_copy", table_name="outbox_items")
    with op.batch_alter_table("outbox_items", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
