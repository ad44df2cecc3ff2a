"""A content fingerprint per incoming mail: a reused Message-ID no longer makes a duplicate.

Every stored incoming message gets the fingerprint of its raw source
(deskctl/mail/fingerprint.py) and the dedupe key ingest now writes: the
Message-ID's key (ids over 900 characters keep a prefix and a hash of the
whole id, so two long ids never share a key) and the fingerprint. Messages
without a Message-ID keep their raw-bytes key. Rows are read and written in
batches, so a large database is upgraded in bounded memory.

A row whose raw source is missing or unreadable keeps a NULL fingerprint:
mail that reuses its Message-ID is then stored as a message of its own, which
loses nothing.

Downgrading drops the column and leaves the keys as they are: the older code
finds duplicates by Message-ID and writes keys that cannot clash with these.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deskctl.mail.fingerprint import duplicate_key, raw_fingerprint

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 500

messages = sa.table(
    "messages",
    sa.column("id", sa.Integer),
    sa.column("direction", sa.String),
    sa.column("message_id", sa.String),
    sa.column("raw", sa.LargeBinary),
    sa.column("fingerprint", sa.String),
    sa.column("dedupe_key", sa.String),
)


def upgrade() -> None:
    op.add_column("messages", sa.Column("fingerprint", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.message_id, messages.c.raw)
            .where(messages.c.direction == "in", messages.c.id > last)
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        changes = []
        for row in rows:
            fingerprint = raw_fingerprint(bytes(row.raw)) if row.raw is not None else None
            if fingerprint is None:
                continue
            change = {"row_id": row.id, "fingerprint": fingerprint}
            if row.message_id:
                change["key"] = duplicate_key(row.message_id, fingerprint)
            changes.append(change)
        for keyed in (True, False):
            batch = [c for c in changes if ("key" in c) is keyed]
            if not batch:
                continue
            values: dict[str, sa.BindParameter[str]] = {"fingerprint": sa.bindparam("fingerprint")}
            if keyed:
                values["dedupe_key"] = sa.bindparam("key")
            conn.execute(
                messages.update().where(messages.c.id == sa.bindparam("row_id")).values(**values),
                batch,
            )


def downgrade() -> None:
    # Not batch mode: rebuilding the table on SQLite would drop the search triggers
    # of 0005. SQLite (3.35 and later) and PostgreSQL both drop a column in place.
    op.execute("ALTER TABLE messages DROP COLUMN fingerprint")
