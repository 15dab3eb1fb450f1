"""Counter snapshots: a version per user raised by every change that moves their counters,
and the last counters read with the moment until which the clock cannot change them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SNAPSHOT_COUNTS = (
    "snap_incoming",
    "snap_planned",
    "snap_today",
    "snap_team_incoming",
    "snap_team_planned",
)


def upgrade() -> None:
    with op.batch_alter_table("user_counters") as batch_op:
        batch_op.add_column(
            sa.Column("version", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("snap_version", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("snap_mode", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("snap_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("snap_until", sa.DateTime(timezone=True), nullable=True))
        for name in SNAPSHOT_COUNTS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
    # Every user gets a row, so that every change can raise their version.
    op.execute(
        "INSERT INTO user_counters (user_id, incoming, incoming_items, version) "
        "SELECT u.id, 0, 0, 0 FROM users u "
        "WHERE NOT EXISTS (SELECT 1 FROM user_counters c WHERE c.user_id = u.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("user_counters") as batch_op:
        for name in ("version", "snap_version", "snap_mode", "snap_from", "snap_until"):
            batch_op.drop_column(name)
        for name in SNAPSHOT_COUNTS:
            batch_op.drop_column(name)
