"""Remember up to which UID the after-fetch action has run, so a crash cannot skip it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incoming_channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("acted_uid", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("incoming_channels", schema=None) as batch_op:
        batch_op.drop_column("acted_uid")
