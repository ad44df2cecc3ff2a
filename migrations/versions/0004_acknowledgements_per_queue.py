"""Optional acknowledgement of new tickets, per queue, with a per-sender hourly limit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ack_template", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("ack_limit", sa.Integer(), server_default="3", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.drop_column("ack_limit")
        batch_op.drop_column("ack_template")
