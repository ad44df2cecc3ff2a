"""A Microsoft Graph channel's delta link, and which stored messages had their after-fetch action.

Graph has no UIDs: a channel read over Graph keeps the ``@odata.deltaLink``
of its last complete round (saved only once every message of the round is
committed) and, per stored message, its Graph id in ``fetched_keys`` with
the time its after-fetch action (mark read, move) was applied. A run killed
between commit and action leaves ``acted_at`` empty, and the next run
applies the action then.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: both SQLite and PostgreSQL add a nullable column in place.
    op.add_column("incoming_channels", sa.Column("delta_link", sa.Text(), nullable=True))
    op.add_column("fetched_keys", sa.Column("acted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE fetched_keys DROP COLUMN acted_at")
    op.execute("ALTER TABLE incoming_channels DROP COLUMN delta_link")
